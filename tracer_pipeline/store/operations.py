"""Operating the store: what the doctor checks and repairs (every stored vector, rows pointing at
what is not stored) and deleting an experiment. :class:`StoreOperations` is mixed into
:class:`~tracer_pipeline.store.TraceStore`, so there is still one store API; it needs the store's
``session()``, ``reading()``, ``require_experiment()`` and ``experiment_run_ids()``.

Deleting anything deletes what was derived from it in the same transaction: an invocation's
embeddings, the diagrams of its run, the invocations computed from its output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.embeddings import bytes_to_vector
from tracer_pipeline.store.records import Orphan, StoredEmbedding
from tracer_pipeline.store.schema import (
    EmbeddingRow,
    ExperimentRow,
    ExperimentRunRow,
    InvocationRow,
    PersistenceDiagramRow,
    ReferenceEmbeddingRow,
    ReportRow,
    RunLeaseRow,
    RunRow,
)
from tracer_pipeline.store.tables import StoreTables


class StoreOperations(StoreTables):
    def require_experiment(self, name: str) -> ExperimentRow:
        """The stored experiment ``name`` (TraceStore's)."""
        raise NotImplementedError

    def experiment_run_ids(self, name: str) -> list[str]:
        """The runs an experiment names (TraceStore's)."""
        raise NotImplementedError

    def stored_embeddings(self, batch: int = 2000) -> Iterator[StoredEmbedding]:
        """Every stored vector, outputs' and initial inputs', a batch at a time (a store can hold
        far more vectors than fit in memory)."""
        queries = [
            select(EmbeddingRow.id, InvocationRow.run_id, InvocationRow.sequence_number,
                   EmbeddingRow.embedding_model, EmbeddingRow.model_version, EmbeddingRow.dimension,
                   EmbeddingRow.vector)
            .join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id).order_by(EmbeddingRow.id),
            select(ReferenceEmbeddingRow.id, ReferenceEmbeddingRow.run_id, None, ReferenceEmbeddingRow.embedding_model,
                   ReferenceEmbeddingRow.model_version, None, ReferenceEmbeddingRow.vector)
            .order_by(ReferenceEmbeddingRow.id),
        ]
        with self.reading() as s:
            for query in queries:
                for row in s.execute(query.execution_options(yield_per=batch)):
                    yield StoredEmbedding(*row[:6], vector=bytes_to_vector(row[6]))

    def delete_embedding_rows(self, embedding_ids: Sequence[int], reference_ids: Sequence[int] = ()) -> None:
        """Delete stored vectors by id, with the persistence diagrams computed from them."""
        with self.session() as s:
            derived: set[tuple[str, str]] = set()
            for chunk in chunks(list(embedding_ids)):
                derived |= set(s.execute(select(InvocationRow.run_id, EmbeddingRow.embedding_model)
                                         .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                                         .where(EmbeddingRow.id.in_(chunk))).tuples())
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.id.in_(chunk)))
            for chunk in chunks(list(reference_ids)):
                s.execute(delete(ReferenceEmbeddingRow).where(ReferenceEmbeddingRow.id.in_(chunk)))
            for run_id, model in derived:
                s.execute(delete(PersistenceDiagramRow).where(
                    PersistenceDiagramRow.run_id == run_id, PersistenceDiagramRow.embedding_model == model))

    def delete_diagram(self, run_id: str, embedding_model: str, subset: str) -> None:
        with self.session() as s:
            s.execute(delete(PersistenceDiagramRow).where(
                PersistenceDiagramRow.run_id == run_id, PersistenceDiagramRow.embedding_model == embedding_model,
                PersistenceDiagramRow.subset == subset))

    def _orphan_queries(self) -> list[tuple[str, str, object, object]]:
        """(table, what, the orphans' primary key column, condition) of every kind of orphan."""
        runs = select(RunRow.run_id)
        return [
            ("invocations", "invocations of a run that is not stored", InvocationRow.id,
             InvocationRow.run_id.not_in(runs)),
            ("invocations", "invocations whose input invocation is not stored", InvocationRow.id,
             InvocationRow.input_invocation_id.is_not(None)
             & InvocationRow.input_invocation_id.not_in(select(InvocationRow.id).scalar_subquery())),
            ("embeddings", "embeddings of an invocation that is not stored", EmbeddingRow.id,
             EmbeddingRow.invocation_id.not_in(select(InvocationRow.id))),
            ("reference_embeddings", "initial-input embeddings of a run that is not stored",
             ReferenceEmbeddingRow.id, ReferenceEmbeddingRow.run_id.not_in(runs)),
            ("persistence_diagrams", "diagrams of a run that is not stored", PersistenceDiagramRow.id,
             PersistenceDiagramRow.run_id.not_in(runs)),
            ("experiment_runs", "links to an experiment or run that is not stored", ExperimentRunRow.id,
             ExperimentRunRow.experiment_id.not_in(select(ExperimentRow.id)) | ExperimentRunRow.run_id.not_in(runs)),
            ("runs", "runs that no experiment names", RunRow.run_id,
             RunRow.run_id.not_in(select(ExperimentRunRow.run_id).join(
                 ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id))),
        ]

    def orphans(self) -> list[Orphan]:
        """Rows pointing at what is not stored, and runs no experiment names."""
        found = []
        with self.reading() as s:
            for table, what, key, condition in self._orphan_queries():
                run_column = key.table.c.get("run_id")
                columns = [key, run_column] if run_column is not None else [key]
                rows = s.execute(select(*columns).where(condition)).all()
                if rows:
                    run_ids = tuple(sorted({r[1] for r in rows if len(r) > 1 and r[1] is not None}))
                    found.append(Orphan(table, what, run_ids, len(rows)))
        return found

    def delete_orphans(self) -> int:
        """Delete every orphan (and, for an orphan invocation or run, what was derived from it);
        returns how many rows were orphans."""
        deleted = 0
        with self.session() as s:
            for _, _, key, condition in self._orphan_queries():
                ids = list(s.scalars(select(key).where(condition)))
                deleted += len(ids)
                if key is RunRow.run_id:
                    self._delete_runs(s, ids)
                elif key is InvocationRow.id:
                    self._delete_invocations(s, ids)
                else:
                    for chunk in chunks(ids):
                        s.execute(delete(key.table).where(key.in_(chunk)))
        return deleted

    def _delete_invocations(self, s: Session, invocation_ids: list[int]) -> None:
        """Invocations with their embeddings and the diagrams of their runs; an invocation whose
        input is deleted is deleted too (it was computed from it)."""
        todo = set(invocation_ids)
        while todo:
            ids = sorted(todo)
            runs: set[str] = set()
            for chunk in chunks(ids):
                runs |= set(s.scalars(select(InvocationRow.run_id).where(InvocationRow.id.in_(chunk))))
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.invocation_id.in_(chunk)))
            todo = {i for chunk in chunks(ids) for i in s.scalars(
                select(InvocationRow.id).where(InvocationRow.input_invocation_id.in_(chunk)))} - set(ids)
            for chunk in chunks(ids):
                s.execute(update(InvocationRow).where(InvocationRow.input_invocation_id.in_(chunk))
                          .values(input_invocation_id=None))
                s.execute(delete(InvocationRow).where(InvocationRow.id.in_(chunk)))
            for chunk in chunks(sorted(runs)):
                s.execute(delete(PersistenceDiagramRow).where(PersistenceDiagramRow.run_id.in_(chunk)))

    def _delete_runs(self, s: Session, run_ids: list[str]) -> None:
        for chunk in chunks(run_ids):
            invocations = list(s.scalars(select(InvocationRow.id).where(InvocationRow.run_id.in_(chunk))))
            self._delete_invocations(s, invocations)
            for table in (ReferenceEmbeddingRow, PersistenceDiagramRow, RunLeaseRow, ExperimentRunRow):
                s.execute(delete(table).where(table.run_id.in_(chunk)))
            s.execute(delete(RunRow).where(RunRow.run_id.in_(chunk)))

    def delete_experiment(self, name: str) -> tuple[list[str], list[str]]:
        """Delete an experiment, its report, and the runs no other experiment names (with their
        invocations, embeddings and diagrams), in one transaction. Returns (the runs deleted,
        the runs kept because another experiment names them)."""
        experiment = self.require_experiment(name)
        run_ids = self.experiment_run_ids(name)
        with self.session() as s:
            shared = set()
            for chunk in chunks(run_ids):
                shared |= set(s.scalars(select(ExperimentRunRow.run_id).where(
                    ExperimentRunRow.run_id.in_(chunk), ExperimentRunRow.experiment_id != experiment.id)))
            deleted = [r for r in run_ids if r not in shared]
            s.execute(delete(ExperimentRunRow).where(ExperimentRunRow.experiment_id == experiment.id))
            self._delete_runs(s, deleted)
            s.execute(delete(ReportRow).where(ReportRow.experiment == name))
            s.execute(delete(ExperimentRow).where(ExperimentRow.id == experiment.id))
        return deleted, [r for r in run_ids if r in shared]
