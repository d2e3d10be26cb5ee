"""Intermediate outputs: the images an invocation's output passed through while it was formed
(every k-th step of a CLIP-guided optimisation). They are written in the transaction that writes
their invocation (:meth:`TraceStore.add_invocations`), so an invocation is never stored without
them, and deleted with it. :class:`IntermediateTables` is mixed into
:class:`~tracer_pipeline.store.TraceStore`, so there is still one store API.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from tracer_pipeline.store.records import IntermediateRecord
from tracer_pipeline.store.schema import IntermediateOutputRow, InvocationRow
from tracer_pipeline.store.tables import StoreTables


class IntermediateTables(StoreTables):
    _tables: set[str]

    def intermediate_outputs(self, run_ids: Iterable[str]) -> list[IntermediateRecord]:
        """Every intermediate output of these runs' invocations, by run, sequence number and step.
        A store of an older schema opened read-only has none."""
        if IntermediateOutputRow.__tablename__ not in self._tables:
            return []
        with self.reading() as s:
            rows = s.execute(
                select(InvocationRow.run_id, InvocationRow.sequence_number, IntermediateOutputRow.invocation_id,
                       IntermediateOutputRow.step, IntermediateOutputRow.image)
                .join(InvocationRow, InvocationRow.id == IntermediateOutputRow.invocation_id)
                .where(InvocationRow.run_id.in_(list(run_ids)))
                .order_by(InvocationRow.run_id, InvocationRow.sequence_number, IntermediateOutputRow.step))
            return [IntermediateRecord(*row) for row in rows]
