"""The analysis part of the store API: the store-wide comparisons, the experiments' reports and
the clusters of their outputs. :class:`AnalysisTables` is mixed into
:class:`~tracer_pipeline.store.TraceStore`, so there is still one store API; it needs the store's
``session()``, ``reading()`` and ``_insert()``.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, select

from tracer_pipeline.store.records import AttractorData, ClusterRecord, StoreComparison
from tracer_pipeline.store.schema import (
    OutputClusterRow,
    PersistenceDiagramRow,
    ReportRow,
    StoreComparisonRow,
    utcnow,
)
from tracer_pipeline.store.tables import StoreTables


class AnalysisTables(StoreTables):
    def put_comparison(self, comparison: StoreComparison) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{f"H{dim}_{metric}": m for (dim, metric), m in comparison.matrices.items()},
                 **_sampled_arrays(comparison))
        values = dict(
            run_ids=list(comparison.run_ids), diagram_hashes=list(comparison.diagram_hashes),
            matrices=buffer.getvalue(), attractor_threshold=comparison.attractor_threshold,
            attractors=[dataclasses.asdict(a) for a in comparison.attractors], computed_at=utcnow(),
        )
        with self.session() as s:
            s.execute(self._insert(StoreComparisonRow).values(embedding_model=comparison.embedding_model, **values)
                      .on_conflict_do_update(index_elements=["embedding_model"], set_=values))

    def comparison(self, embedding_model: str) -> StoreComparison | None:
        with self.reading() as s:
            row = s.get(StoreComparisonRow, embedding_model)
        if row is None:
            return None
        run_ids = tuple(row.run_ids)
        with np.load(io.BytesIO(row.matrices)) as arrays:
            matrices = {(int(k[1:].split("_", 1)[0]), k.split("_", 1)[1]): arrays[k] for k in arrays.files
                        if k.startswith("H")}
            sampled = {k: arrays[k] for k in arrays.files if not k.startswith("H")}
        return StoreComparison(
            embedding_model=embedding_model, run_ids=run_ids, diagram_hashes=tuple(row.diagram_hashes),
            matrices=matrices, attractor_threshold=row.attractor_threshold,
            attractors=tuple(AttractorData(**{**a, "run_ids": tuple(a["run_ids"])}) for a in row.attractors),
            **_sampled_fields(run_ids, sampled),
        )

    def embedding_models_in_use(self) -> list[str]:
        with self.reading() as s:
            return sorted(set(s.scalars(select(PersistenceDiagramRow.embedding_model))))

    def diagrams_fingerprint(self, run_ids: Sequence[str] | None = None) -> str:
        """Changes whenever a persistence diagram (of these runs) is added or replaced."""
        query = select(func.count(), func.max(PersistenceDiagramRow.created_at))
        if run_ids is not None:
            query = query.where(PersistenceDiagramRow.run_id.in_(list(run_ids)))
        with self.reading() as s:
            count, latest = s.execute(query).one()
        return f"{count}:{latest}"

    def put_report(self, experiment: str, embedding_model: str, markdown: str, tables: dict) -> None:
        values = dict(embedding_model=embedding_model, markdown=markdown, tables=tables, created_at=utcnow())
        with self.session() as s:
            s.execute(self._insert(ReportRow).values(experiment=experiment, **values)
                      .on_conflict_do_update(index_elements=["experiment"], set_=values))

    def report_tables(self, experiments: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """Every stored report's analysis tables, concatenated per table name, each row tagged
        with its experiment."""
        with self.reading() as s:
            query = select(ReportRow)
            if experiments is not None:
                query = query.where(ReportRow.experiment.in_(list(experiments)))
            rows = list(s.scalars(query.order_by(ReportRow.experiment)))
        tables: dict[str, list[dict]] = {}
        for row in rows:
            for name, records in row.tables.items():
                tables.setdefault(name, []).extend({"experiment": row.experiment, **r} for r in records)
        return tables

    # clusters of outputs ------------------------------------------------------------------

    def put_clusters(self, experiment: str, embedding_model: str, records: Sequence[ClusterRecord]) -> None:
        """Replace an experiment's clusters for one embedding model, in one transaction."""
        with self.session() as s:
            s.execute(delete(OutputClusterRow).where(OutputClusterRow.experiment == experiment,
                                                     OutputClusterRow.embedding_model == embedding_model))
            if records:  # one executemany: ORM objects cost ~0.5 ms each, 10 s for 20,000 outputs
                s.execute(insert(OutputClusterRow), [dataclasses.asdict(r) for r in records])

    def clusters(self, experiments: Iterable[str] | None = None,
                 embedding_model: str | None = None) -> list[ClusterRecord]:
        """Stored clusters (of these experiments, of this embedding model), ordered by experiment,
        embedding model, run and sequence number."""
        query = select(OutputClusterRow).order_by(
            OutputClusterRow.experiment, OutputClusterRow.embedding_model, OutputClusterRow.run_id,
            OutputClusterRow.sequence_number)
        if experiments is not None:
            query = query.where(OutputClusterRow.experiment.in_(list(experiments)))
        if embedding_model is not None:
            query = query.where(OutputClusterRow.embedding_model == embedding_model)
        with self.reading() as s:
            return [ClusterRecord(r.experiment, r.embedding_model, r.run_id, r.sequence_number, r.modality,
                                  r.cluster, r.is_medoid, r.input_sha256) for r in s.scalars(query)]


def _sampled_arrays(comparison: StoreComparison) -> dict[str, np.ndarray]:
    """A comparison without all pairs, as arrays beside its matrices: the matrices' runs and each
    run's nearest earlier runs, as positions in ``run_ids`` (−1: none)."""
    if comparison.matrix_run_ids is None and comparison.nearest is None:
        return {}
    position = {run_id: i for i, run_id in enumerate(comparison.run_ids)}
    arrays = {"matrix_rows": np.array([position[r] for r in comparison.matrix_ids], dtype=np.int64)}
    if comparison.nearest is not None:
        width = max((len(found) for found in comparison.nearest.values()), default=0)
        rows = np.array([position[r] for r in comparison.nearest], dtype=np.int64)
        index = np.full((rows.size, width), -1, dtype=np.int64)
        distance = np.zeros((rows.size, width))
        for row, found in enumerate(comparison.nearest.values()):
            for column, (run_id, value) in enumerate(found):
                index[row, column], distance[row, column] = position[run_id], value
        arrays |= {"nearest_rows": rows, "nearest_index": index, "nearest_distance": distance,
                   "unproven_rows": np.array(sorted(position[r] for r in comparison.unproven), dtype=np.int64)}
    return arrays


def _sampled_fields(run_ids: Sequence[str], arrays: dict[str, np.ndarray]) -> dict:
    """The inverse of ``_sampled_arrays`` (a comparison stored with all pairs has none of them)."""
    if "matrix_rows" not in arrays:
        return {}
    fields: dict = {"matrix_run_ids": tuple(run_ids[i] for i in arrays["matrix_rows"])}
    if "nearest_rows" in arrays:
        fields["nearest"] = {
            run_ids[row]: tuple((run_ids[j], float(d)) for j, d in zip(index, distance, strict=True) if j >= 0)
            for row, index, distance in zip(arrays["nearest_rows"], arrays["nearest_index"],
                                            arrays["nearest_distance"], strict=True)}
        fields["unproven"] = frozenset(run_ids[i] for i in arrays["unproven_rows"])
    return fields
