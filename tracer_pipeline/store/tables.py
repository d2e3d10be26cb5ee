"""What every group of the store's tables needs from :class:`~tracer_pipeline.store.TraceStore`:
its transactions and its dialect's insert. Each group (invocations, embeddings, diagrams, …) is a
mixin of ``TraceStore``, so there is one store API; this base names what ``TraceStore`` provides
to all of them, once."""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.orm import Session


class StoreTables:
    def session(self) -> AbstractContextManager[Session]:
        """One write transaction (TraceStore's)."""
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Session]:
        """One read transaction (TraceStore's)."""
        raise NotImplementedError

    def _insert(self, table):
        """The dialect's insert, with on-conflict clauses (TraceStore's)."""
        raise NotImplementedError
