"""Persistence diagrams: one current diagram per (run, embedding model, subset), kept with the
parameters and the digest of the trajectory it was computed from, so a changed input or changed
parameters replace it. :class:`DiagramTables` is mixed into
:class:`~tracer_pipeline.store.TraceStore`, so there is still one store API; it needs the store's
``session()``, ``reading()`` and ``_insert()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import bindparam, delete, select

from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.records import DiagramRecord
from tracer_pipeline.store.schema import PersistenceDiagramRow, utcnow
from tracer_pipeline.store.tables import StoreTables


class DiagramTables(StoreTables):
    def diagram_keys(self, run_id: str) -> dict[tuple[str, str, str], str]:
        """(embedding model, subset, params hash) -> input sha256 of this run's stored diagrams."""
        return self.diagram_keys_of([run_id])[run_id]

    def diagram_keys_of(self, run_ids: Sequence[str]) -> dict[str, dict[tuple[str, str, str], str]]:
        """:meth:`diagram_keys` of each of these runs (every one present), in a few queries."""
        found: dict[str, dict[tuple[str, str, str], str]] = {run_id: {} for run_id in run_ids}
        table = PersistenceDiagramRow
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for run_id, model, subset, params_hash, digest in s.execute(select(
                        table.run_id, table.embedding_model, table.subset, table.params_hash, table.input_sha256,
                ).where(table.run_id.in_(list(chunk)))):
                    found[run_id][(model, subset, params_hash)] = digest
        return found

    def put_diagram(self, record: DiagramRecord) -> None:
        """Store a diagram, replacing one with the same identity computed from other inputs."""
        self.put_diagrams([record])

    def put_diagrams(self, records: Sequence[DiagramRecord]) -> None:
        """Store diagrams in one transaction (see :meth:`put_diagram`)."""
        if not records:
            return
        # The last record of a (run, model, subset) wins, as when they were stored one by one.
        last = {(r.run_id, r.embedding_model, r.subset): r for r in records}
        rows = [dict(
            run_id=record.run_id, embedding_model=record.embedding_model, subset=record.subset,
            params_hash=record.params_hash, params=record.params, n_points=record.n_points,
            input_sha256=record.input_sha256, homology_dims=sorted(record.points),
            points={str(d): [[float(b), None if np.isinf(e) else float(e)] for b, e in arr]
                    for d, arr in record.points.items()},
            summary=record.summary, duration_s=record.duration_s, created_at=utcnow(),
        ) for record in last.values()]
        table = PersistenceDiagramRow
        # Two statements, each executed for every record (not two compiled per record).
        # One current diagram per (run, model, subset): older parameters are replaced.
        stale = delete(table).where(
            table.run_id == bindparam("r"), table.embedding_model == bindparam("m"),
            table.subset == bindparam("s"), table.params_hash != bindparam("p"))
        upsert = self._insert(table)
        upsert = upsert.on_conflict_do_update(
            index_elements=["run_id", "embedding_model", "subset", "params_hash"],
            set_={name: upsert.excluded[name] for name in (
                "params", "n_points", "input_sha256", "homology_dims", "points", "summary", "duration_s",
                "created_at")})
        with self.session() as s:
            s.connection().execute(stale, [{"r": r["run_id"], "m": r["embedding_model"], "s": r["subset"],
                                            "p": r["params_hash"]} for r in rows])
            s.execute(upsert, rows)

    def diagrams(self, run_ids: Iterable[str] | None = None) -> list[DiagramRecord]:
        """The stored diagrams (of these runs, or all), by run, embedding model and subset."""
        order = (PersistenceDiagramRow.run_id, PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset)
        with self.reading() as s:
            if run_ids is None:
                rows = list(s.scalars(select(PersistenceDiagramRow).order_by(*order)))
            else:
                rows = sorted((r for chunk in chunks(list(run_ids)) for r in s.scalars(
                    select(PersistenceDiagramRow).where(PersistenceDiagramRow.run_id.in_(list(chunk))))),
                    key=lambda r: (r.run_id, r.embedding_model, r.subset))
        return [DiagramRecord(
            run_id=r.run_id, embedding_model=r.embedding_model, subset=r.subset, params=r.params,
            params_hash=r.params_hash, n_points=r.n_points, input_sha256=r.input_sha256,
            points={int(d): np.array([[b, np.inf if e is None else e] for b, e in pts],
                                     dtype=np.float64).reshape(-1, 2)
                    for d, pts in r.points.items()},
            summary=r.summary, duration_s=r.duration_s,
        ) for r in rows]

