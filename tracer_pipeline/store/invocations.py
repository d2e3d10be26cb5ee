"""Invocations: each step of a run, its output or the model's failure, with its lineage (the
invocation whose output was its input). :class:`InvocationTables` is mixed into
:class:`~tracer_pipeline.store.TraceStore`, so there is still one store API; it needs the store's
``session()``, ``reading()`` and ``_insert()``.

An invocation is identified by (run, sequence number): writing it twice keeps the first, so a
step computed twice (a retried task, two processes on one store) is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from PIL import Image
from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import defer

from tracer_pipeline.models.base import ModelFailure, Output, image_to_png, output_digest
from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.records import InvocationRecord
from tracer_pipeline.store.schema import (
    EmbeddingRow,
    IntermediateOutputRow,
    InvocationRow,
    PersistenceDiagramRow,
    RunRow,
)
from tracer_pipeline.store.tables import StoreTables


def _invocation(row: InvocationRow, image: bool = True) -> InvocationRecord:
    return InvocationRecord(
        row.id, row.run_id, row.sequence_number, row.model, row.model_version,
        row.input_invocation_id, row.seed, row.output_type, row.output_text, row.output_image if image else None,
        row.output_sha256, row.error, row.started_at, row.completed_at,
    )


@dataclass(frozen=True)
class NewInvocation:
    """An invocation to store: its output, or the model's failure on its input."""

    run_id: str
    sequence_number: int
    model: str
    model_version: str
    input_invocation_id: int | None
    seed: int
    output: Output | ModelFailure
    started_at: datetime
    completed_at: datetime
    intermediates: tuple[tuple[int, Image.Image], ...] = ()  # (step, image) the output passed through


def _invocation_values(inv: NewInvocation) -> dict:
    values: dict = dict(
        run_id=inv.run_id, sequence_number=inv.sequence_number, model=inv.model,
        model_version=inv.model_version, input_invocation_id=inv.input_invocation_id, seed=inv.seed,
        started_at=inv.started_at, completed_at=inv.completed_at, error=None, output_type=None,
        output_text=None, output_image=None, output_sha256=None,
    )
    if isinstance(inv.output, ModelFailure):
        values["error"] = str(inv.output)
    elif isinstance(inv.output, str):
        values.update(output_type="text", output_text=inv.output, output_sha256=output_digest(inv.output))
    else:
        values.update(output_type="image", output_image=image_to_png(inv.output),
                      output_sha256=output_digest(inv.output))
    return values


def _at(outputs: Sequence[tuple[str, int]]) -> list[ColumnElement[bool]]:
    """Conditions, one per query, that together select exactly these (run id, sequence number)
    outputs, each by the unique index on the pair: grouped by sequence number (a lockstep round's
    outputs share one) or by run, whichever makes fewer groups. A row-value ``IN`` of the pairs
    was a scan of the whole table on SQLite (3.3 ms against 0.2 ms for ten outputs of an
    8,000-invocation store, and growing with it)."""
    by_seq: dict[int, list[str]] = {}
    by_run: dict[str, list[int]] = {}
    for run_id, seq in outputs:
        by_seq.setdefault(seq, []).append(run_id)
        by_run.setdefault(run_id, []).append(seq)
    if len(by_seq) <= len(by_run):
        return [and_(InvocationRow.sequence_number == seq, InvocationRow.run_id.in_(list(chunk)))
                for seq, run_ids in by_seq.items() for chunk in chunks(run_ids)]
    return [and_(InvocationRow.run_id == run_id, InvocationRow.sequence_number.in_(list(chunk)))
            for run_id, seqs in by_run.items() for chunk in chunks(seqs)]


class InvocationTables(StoreTables):
    def invocations(self, run_id: str, limit: int | None = None) -> list[InvocationRecord]:
        """A run's invocations in order (the first ``limit`` of them, when given)."""
        return self.invocations_of([run_id], limit)[run_id]

    def invocations_of(self, run_ids: Sequence[str], limit: int | None = None,
                       images: bool = True) -> dict[str, list[InvocationRecord]]:
        """:meth:`invocations` of each of these runs (every one present), in a few queries instead
        of one per run; with their outputs, so callers pass a bounded number of runs. With
        ``images`` false, image outputs are not read (``output_image`` is None; their digests are
        there): what resuming a run needs of its prefix, whose images only :meth:`images` reads."""
        found: dict[str, list[InvocationRecord]] = {run_id: [] for run_id in run_ids}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                query = select(InvocationRow).where(InvocationRow.run_id.in_(list(chunk)))
                if not images:
                    query = query.options(defer(InvocationRow.output_image, raiseload=True))
                if limit is not None:
                    place = func.row_number().over(partition_by=InvocationRow.run_id,
                                                   order_by=InvocationRow.sequence_number).label("place")
                    first = select(InvocationRow.id, place).where(InvocationRow.run_id.in_(list(chunk))).subquery()
                    query = query.where(InvocationRow.id.in_(select(first.c.id).where(first.c.place <= limit)))
                for row in s.scalars(query.order_by(InvocationRow.run_id, InvocationRow.sequence_number)):
                    found[row.run_id].append(_invocation(row, images))
        return found

    def invocation_digests(self, run_ids: Sequence[str]) -> dict[str, list[tuple[int, str, str | None, str | None]]]:
        """Per run, (sequence number, output type, output sha256, output text) of each invocation
        that has an output, in order, without the images: what a report needs of every stored run,
        in a few queries instead of one per run."""
        columns = (InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_type,
                   InvocationRow.output_sha256, InvocationRow.output_text)
        found: dict[str, list[tuple[int, str, str | None, str | None]]] = {run_id: [] for run_id in run_ids}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for run_id, seq, output_type, digest, text in s.execute(
                        select(*columns).where(InvocationRow.run_id.in_(list(chunk)), InvocationRow.error.is_(None))
                        .order_by(InvocationRow.run_id, InvocationRow.sequence_number)):
                    found[run_id].append((seq, output_type, digest, text))
        return found

    def images(self, outputs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """(run id, sequence number) → PNG bytes of these image outputs, in a few queries."""
        found = {}
        with self.reading() as s:
            for where in _at(outputs):
                found |= {(run_id, seq): image for run_id, seq, image in s.execute(
                    select(InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_image).where(
                        where, InvocationRow.output_image.is_not(None)))}
        return found

    def invocation_outlines(
        self, run_ids: Sequence[str] | None = None
    ) -> dict[str, list[tuple[int, str, str | None, bool]]]:
        """Per run (of these runs, or every run, those without invocations included), (sequence
        number, model, output type, failed) of each invocation in order, without the outputs:
        what the checks and the doctor need."""
        columns = (InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.model,
                   InvocationRow.output_type, InvocationRow.error)
        order = (InvocationRow.run_id, InvocationRow.sequence_number)
        with self.reading() as s:
            if run_ids is None:
                outlines = {run_id: [] for run_id in s.scalars(select(RunRow.run_id))}
                queries = [select(*columns).order_by(*order)]
            else:
                outlines = {run_id: [] for run_id in run_ids}
                queries = [select(*columns).where(InvocationRow.run_id.in_(list(chunk))).order_by(*order)
                           for chunk in chunks(list(run_ids))]
            for query in queries:
                for run_id, seq, model, output_type, error in s.execute(query):
                    outlines.setdefault(run_id, []).append((seq, model, output_type, error is not None))
        return outlines

    def add_invocation(
        self,
        run_id: str,
        sequence_number: int,
        model: str,
        model_version: str,
        input_invocation_id: int | None,
        seed: int,
        output: Output | ModelFailure,
        started_at: datetime,
        completed_at: datetime,
    ) -> InvocationRecord:
        """Store one invocation in its own transaction; a second write of it keeps the first."""
        [record] = self.add_invocations([NewInvocation(
            run_id, sequence_number, model, model_version, input_invocation_id, seed, output,
            started_at, completed_at)])
        return record

    def add_invocations(self, invocations: Sequence[NewInvocation]) -> list[InvocationRecord]:
        """Store invocations (a lockstep round: at most one per run) with their intermediate
        outputs in one transaction, in the given order; one already stored is kept as it was."""
        if not invocations:
            return []
        rows = [_invocation_values(inv) for inv in invocations]
        keys = [(inv.run_id, inv.sequence_number) for inv in invocations]
        with self.session() as s:
            # One statement executed for every row, not a VALUES clause of every row: that was
            # compiled anew each round, and 10,000 rows of 13 columns pass SQLite's default limit of 32,766 variables.
            s.execute(self._insert(InvocationRow).on_conflict_do_nothing(
                index_elements=["run_id", "sequence_number"]), rows)
            stored = {}
            for where in _at(keys):
                stored |= {(r.run_id, r.sequence_number): r for r in s.scalars(select(InvocationRow).where(where))}
            frames = [dict(invocation_id=stored[key].id, step=step, image=image_to_png(image))
                      for key, inv in zip(keys, invocations, strict=True) for step, image in inv.intermediates]
            if frames:
                s.execute(self._insert(IntermediateOutputRow).on_conflict_do_nothing(
                    index_elements=["invocation_id", "step"]), frames)
            return [_invocation(stored[key]) for key in keys]

    def delete_invocations_from(self, run_id: str, sequence_number: int) -> int:
        """Delete a run's invocations from ``sequence_number`` on, with what was derived from them
        (their embeddings and the run's diagrams). Returns how many invocations were deleted."""
        with self.session() as s:
            ids = list(s.scalars(select(InvocationRow.id).where(
                InvocationRow.run_id == run_id, InvocationRow.sequence_number >= sequence_number)))
            if not ids:
                return 0
            s.execute(delete(EmbeddingRow).where(EmbeddingRow.invocation_id.in_(ids)))
            s.execute(delete(PersistenceDiagramRow).where(PersistenceDiagramRow.run_id == run_id))
            # Later invocations point at earlier ones: delete from the end.
            for i in sorted(ids, reverse=True):
                s.execute(delete(InvocationRow).where(InvocationRow.id == i))
            return len(ids)

