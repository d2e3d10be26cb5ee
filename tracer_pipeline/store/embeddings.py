"""Embeddings: a vector per invocation output and embedding model, a vector per run's initial
prompt or image (its reference), and the trajectories they make. :class:`EmbeddingTables` is
mixed into :class:`~tracer_pipeline.store.TraceStore`, so there is still one store API; it needs
the store's ``session()``, ``reading()`` and ``_insert()``.

Vectors are stored as little-endian float32 bytes; one that is not finite is a failed embedding
and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select

from tracer_pipeline.errors import StoreError
from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.records import RunRecord
from tracer_pipeline.store.schema import EmbeddingRow, InvocationRow, ReferenceEmbeddingRow, utcnow
from tracer_pipeline.store.tables import StoreTables


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def bytes_to_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


class EmbeddingTables(StoreTables):
    def embedding_states(self, run_ids: Sequence[str], embedding_model: str) -> dict[str, dict[int, tuple[str, bool]]]:
        """Per run (every one present), invocation id → (stored model version, whether the vector
        is finite) of its embeddings by this model, in a few queries instead of one per run."""
        found: dict[str, dict[int, tuple[str, bool]]] = {run_id: {} for run_id in run_ids}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for run_id, invocation_id, version, vector in s.execute(
                        select(InvocationRow.run_id, EmbeddingRow.invocation_id, EmbeddingRow.model_version,
                               EmbeddingRow.vector)
                        .join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id)
                        .where(InvocationRow.run_id.in_(list(chunk)), EmbeddingRow.embedding_model == embedding_model)):
                    found[run_id][invocation_id] = (version, bool(np.all(np.isfinite(bytes_to_vector(vector)))))
        return found

    def add_embeddings(self, embedding_model: str, model_version: str, vectors: dict[int, np.ndarray]) -> int:
        """Store vectors by invocation id in one transaction; existing ones are kept. Returns
        how many rows were new."""
        if not vectors:
            return 0
        bad = [i for i, v in vectors.items() if not np.all(np.isfinite(v))]
        if bad:
            raise StoreError(f"embeddings by {embedding_model} of invocations {bad[:5]} hold NaN or infinity; "
                             "a vector that is not finite is a failed embedding, never stored")
        with self.session() as s:
            before = s.scalar(select(func.count()).select_from(EmbeddingRow).where(
                EmbeddingRow.embedding_model == embedding_model,
                EmbeddingRow.invocation_id.in_(list(vectors))))
            # One statement executed for many rows: a multi-row VALUES clause is compiled anew
            # for every batch size (a third of the embedding step's time at 1,000 runs).
            s.execute(self._insert(EmbeddingRow).on_conflict_do_nothing(
                index_elements=["invocation_id", "embedding_model"]), [
                dict(invocation_id=i, embedding_model=embedding_model, model_version=model_version,
                     dimension=int(v.size), vector=vector_to_bytes(v), created_at=utcnow())
                for i, v in sorted(vectors.items())  # one order for every writer: no deadlock
            ])
        return len(vectors) - before

    def reference_embedding(self, run_id: str, embedding_model: str) -> tuple[str, np.ndarray] | None:
        """(model version, vector) of the embedding of a run's initial prompt or image."""
        return self.reference_embeddings([run_id], embedding_model).get(run_id)

    def put_reference_embeddings(self, embedding_model: str, model_version: str,
                                 vectors: dict[str, np.ndarray]) -> None:
        """Store the reference vectors of these runs (run id → vector) in one transaction,
        replacing what each had."""
        if not vectors:
            return
        insert = self._insert(ReferenceEmbeddingRow)
        with self.session() as s:
            s.execute(insert.on_conflict_do_update(
                index_elements=["run_id", "embedding_model"],
                set_={"model_version": insert.excluded.model_version, "vector": insert.excluded.vector}), [
                dict(run_id=run_id, embedding_model=embedding_model, model_version=model_version,
                     vector=vector_to_bytes(vector))
                for run_id, vector in sorted(vectors.items())])

    def delete_embeddings(self, embedding_model: str, invocation_ids: Sequence[int]) -> None:
        with self.session() as s:
            s.execute(delete(EmbeddingRow).where(
                EmbeddingRow.embedding_model == embedding_model,
                EmbeddingRow.invocation_id.in_(list(invocation_ids))))

    def embedding_ids(self, run_id: str, embedding_model: str) -> list[tuple[int, int]]:
        """(invocation id, sequence number) of a run's embedded outputs, in the order of
        :meth:`trajectory`."""
        with self.reading() as s:
            return [tuple(r) for r in s.execute(
                select(InvocationRow.id, InvocationRow.sequence_number)
                .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model)
                .order_by(InvocationRow.sequence_number)
            ).all()]

    def trajectory(self, run_id: str, embedding_model: str) -> tuple[list[int], list[str], np.ndarray]:
        """(sequence numbers, output types, vectors as rows) of a run's embedded outputs, in order."""
        return self.trajectories([run_id], embedding_model)[run_id]

    def trajectories(self, run_ids: Sequence[str],
                     embedding_model: str) -> dict[str, tuple[list[int], list[str], np.ndarray]]:
        """:meth:`trajectory` of each of these runs (every one present, empty when not embedded),
        in a few queries instead of one per run."""
        rows: dict[str, list] = {run_id: [] for run_id in run_ids}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for run_id, seq, output_type, vector in s.execute(
                        select(InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_type,
                               EmbeddingRow.vector)
                        .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                        .where(InvocationRow.run_id.in_(list(chunk)), EmbeddingRow.embedding_model == embedding_model)
                        .order_by(InvocationRow.run_id, InvocationRow.sequence_number)):
                    rows[run_id].append((seq, output_type, vector))
        return {run_id: ([r[0] for r in found], [r[1] for r in found], np.stack([bytes_to_vector(r[2]) for r in found]))
                if found else ([], [], np.zeros((0, 0), dtype=np.float32)) for run_id, found in rows.items()}

    def trajectories_by_model(
        self, runs: Sequence[RunRecord]
    ) -> dict[str, dict[str, tuple[list[int], list[str], np.ndarray]]]:
        """Embedding model → :meth:`trajectories` of those of these runs that it embeds, for every
        model the runs name."""
        models = dict.fromkeys(model for run in runs for model in run.embedding_models)
        return {model: self.trajectories([run.run_id for run in runs if model in run.embedding_models], model)
                for model in models}

    def reference_embeddings(self, run_ids: Sequence[str], embedding_model: str) -> dict[str, tuple[str, np.ndarray]]:
        """:meth:`reference_embedding` of these runs (those that have one), in a few queries."""
        found = {}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for row in s.scalars(select(ReferenceEmbeddingRow).where(
                        ReferenceEmbeddingRow.run_id.in_(list(chunk)),
                        ReferenceEmbeddingRow.embedding_model == embedding_model)):
                    found[row.run_id] = (row.model_version, bytes_to_vector(row.vector))
        return found

