"""The one store API. Every read and write of the trace store goes through :class:`TraceStore`.

Writes are idempotent: writing the same invocation, embedding or diagram twice keeps one row.
On SQLite the database runs in WAL mode with a busy timeout, and every write transaction takes
the write lock up front (``BEGIN IMMEDIATE``) so concurrent writer processes queue instead of
failing. On PostgreSQL, where writers run side by side, rows are written with insert-on-conflict
and the few read-then-write steps (creating the schema, registering an experiment) first take a
transaction-scoped advisory lock, so several processes can start on a fresh store at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from tracer_pipeline.config import Experiment, RunSpec, canonical_json
from tracer_pipeline.errors import RunNotRegisteredError, StoreError
from tracer_pipeline.models.base import (
    ModelFailure,
    Output,
    image_to_png,
    output_digest,
)
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store.records import (
    AttractorData,
    DiagramRecord,
    InvocationRecord,
    RunRecord,
    StoreComparison,
)
from tracer_pipeline.store.schema import (
    Base,
    EmbeddingRow,
    ExperimentRow,
    ExperimentRunRow,
    InvocationRow,
    PersistenceDiagramRow,
    ReferenceEmbeddingRow,
    ReportRow,
    RunRow,
    StoreComparisonRow,
    utcnow,
)

SQLITE_BUSY_TIMEOUT_MS = 60_000
SCHEMA_LOCK = "schema"
REGISTRATION_LOCK = "registration"


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``, from a lock's name."""
    return int.from_bytes(hashlib.sha256(f"tracer_pipeline:{name}".encode()).digest()[:8], "big", signed=True)


def _invocation(row: InvocationRow) -> InvocationRecord:
    return InvocationRecord(
        row.id, row.run_id, row.sequence_number, row.model, row.model_version,
        row.input_invocation_id, row.seed, row.output_type, row.output_text, row.output_image,
        row.output_sha256, row.error, row.started_at, row.completed_at,
    )


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def bytes_to_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


class TraceStore:
    """Experiments, runs, invocations, embeddings and persistence diagrams, with lineage."""

    def __init__(self, url: str):
        self.url = url
        self.engine = self._create_engine(url)
        self._create_schema()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def _create_engine(url: str) -> Engine:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _create_schema(self) -> None:
        # create_all checks, then creates: under the lock, a second process sees the first's tables.
        with self.engine.begin() as connection:
            self._lock(connection, SCHEMA_LOCK)
            Base.metadata.create_all(connection)

    def _lock(self, connection: Connection | Session, name: str) -> None:
        """Serialise a read-then-write with other processes until the transaction ends. SQLite's
        ``BEGIN IMMEDIATE`` already holds the database's one write lock; PostgreSQL takes an
        advisory lock named ``name``."""
        if self.engine.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_advisory_key(name))))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table):
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    # experiments and runs ---------------------------------------------------------------

    def register_experiment(self, experiment: Experiment, extra_seeds: Sequence[int] = ()) -> list[str]:
        """Record the experiment, its runs and the links between them, in one transaction.

        Returns the run ids in config order. Re-registering is idempotent; an edited config
        replaces the stored one and links any new runs. ``extra_seeds`` are seeds added by the
        seed schedule (recorded as such; the user's file is not touched).
        """
        runs = experiment.runs(tuple(extra_seeds))
        images: dict[str, bytes] = {}
        for spec in runs:
            if spec.initial_image_path and spec.initial_image_path not in images:
                with Image.open(spec.initial_image_path) as image:
                    images[spec.initial_image_path] = image_to_png(image)
        with self.session() as s:
            self._lock(s, REGISTRATION_LOCK)
            row = s.scalar(select(ExperimentRow).where(ExperimentRow.name == experiment.name))
            if row is None:
                row = ExperimentRow(name=experiment.name, source=experiment.source,
                                    config=experiment.raw, config_hash=experiment.config_hash)
                s.add(row)
                s.flush()
            elif row.config_hash != experiment.config_hash or row.source != experiment.source:
                row.config, row.config_hash = experiment.raw, experiment.config_hash
                row.source, row.updated_at = experiment.source, utcnow()
            known = set(s.scalars(select(RunRow.run_id).where(RunRow.run_id.in_([r.run_id for r in runs]))))
            for spec in runs:
                if spec.run_id not in known:
                    known.add(spec.run_id)
                    s.add(self._run_row(spec, images))
            s.flush()
            scheduled = set(extra_seeds)
            for spec in runs:
                values = dict(
                    max_length=experiment.max_length,
                    embedding_models=list(experiment.embedding_models),
                    stop_when_stuck=experiment.stop_when_stuck,
                    max_homology_dim=experiment.max_homology_dim,
                    scheduled=spec.seed in scheduled,
                )
                stmt = self._insert(ExperimentRunRow).values(
                    experiment_id=row.id, run_id=spec.run_id, **values
                ).on_conflict_do_update(index_elements=["experiment_id", "run_id"], set_=values)
                s.execute(stmt)
        return [spec.run_id for spec in runs]

    @staticmethod
    def _run_row(spec: RunSpec, images: dict[str, bytes]) -> RunRow:
        return RunRow(
            run_id=spec.run_id, spec=spec.canonical(), network=list(spec.network),
            prompt=spec.prompt, seed=spec.seed, initial_image_sha256=spec.initial_image_sha256,
            initial_image=images.get(spec.initial_image_path) if spec.initial_image_path else None,
        )

    def get_run(self, run_id: str) -> RunRecord:
        runs = self.get_runs([run_id])
        if not runs:
            raise RunNotRegisteredError(
                f"run {run_id!r} is not in the trace store ({self.url}); register its experiment "
                "first with `trajectory-tracer run-experiment CONFIG` or the experiments sensor"
            )
        return runs[0]

    def get_runs(self, run_ids: Iterable[str] | None = None) -> list[RunRecord]:
        """Runs in the given order (unknown ids are left out), or every run when None."""
        with self.session() as s:
            query = select(RunRow)
            if run_ids is not None:
                run_ids = list(run_ids)
                query = query.where(RunRow.run_id.in_(run_ids))
            rows = {r.run_id: r for r in s.scalars(query)}
            links: dict[str, list[tuple[ExperimentRunRow, str]]] = {}
            link_query = select(ExperimentRunRow, ExperimentRow.name).join(
                ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id
            )
            if run_ids is not None:
                link_query = link_query.where(ExperimentRunRow.run_id.in_(run_ids))
            for link, name in s.execute(link_query):
                links.setdefault(link.run_id, []).append((link, name))
        order = run_ids if run_ids is not None else sorted(rows)
        return [self._run_record(rows[r], links.get(r, [])) for r in order if r in rows]

    @staticmethod
    def _run_record(row: RunRow, links: list[tuple[ExperimentRunRow, str]]) -> RunRecord:
        embedders: list[str] = []
        for link, _ in links:
            embedders += [m for m in link.embedding_models if m not in embedders]
        return RunRecord(
            run_id=row.run_id, network=tuple(row.network), prompt=row.prompt,
            initial_image=row.initial_image, seed=row.seed, status=RunStatus(row.status),
            stop_reason=row.stop_reason, error=row.error,
            max_length=max((link.max_length for link, _ in links), default=0),
            embedding_models=tuple(embedders),
            stop_when_stuck=all(link.stop_when_stuck for link, _ in links),
            max_homology_dim=max((link.max_homology_dim for link, _ in links), default=1),
            experiments=tuple(sorted(name for _, name in links)),
            started_at=row.started_at, completed_at=row.completed_at, created_at=row.created_at,
        )

    def run_spec(self, run_id: str) -> dict:
        """The canonical specification a run's id is the hash of."""
        with self.session() as s:
            spec = s.scalar(select(RunRow.spec).where(RunRow.run_id == run_id))
        if spec is None:
            self.get_run(run_id)  # raises the clear "not registered" error
        return spec

    def set_run_status(
        self, run_id: str, status: str, stop_reason: str | None = None, error: str | None = None
    ) -> None:
        values: dict = {"status": status, "stop_reason": stop_reason, "error": error, "updated_at": utcnow()}
        if status == RunStatus.RUNNING:
            values["started_at"] = utcnow()
        elif RunStatus(status).finished:
            values["completed_at"] = utcnow()
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.run_id == run_id).values(**values))

    def experiment_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(ExperimentRow.name).order_by(ExperimentRow.name)))

    def experiment(self, name: str) -> ExperimentRow | None:
        with self.session() as s:
            return s.scalar(select(ExperimentRow).where(ExperimentRow.name == name))

    def require_experiment(self, name: str) -> ExperimentRow:
        """The stored experiment ``name``, or a :class:`StoreError` naming the known ones."""
        row = self.experiment(name)
        if row is None:
            known = ", ".join(self.experiment_names()) or "none yet"
            raise StoreError(f"no experiment named {name!r} in the store (known: {known})")
        return row

    def experiment_run_ids(self, name: str) -> list[str]:
        """The runs an experiment names, in registration order."""
        with self.session() as s:
            return list(s.scalars(
                select(ExperimentRunRow.run_id)
                .join(ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id)
                .where(ExperimentRow.name == name)
                .order_by(ExperimentRunRow.id)
            ))

    def scheduled_seeds(self, name: str) -> list[int]:
        """Seeds the seed schedule has added to an experiment so far."""
        with self.session() as s:
            return sorted(set(s.scalars(
                select(RunRow.seed)
                .join(ExperimentRunRow, ExperimentRunRow.run_id == RunRow.run_id)
                .join(ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id)
                .where(ExperimentRow.name == name, ExperimentRunRow.scheduled.is_(True))
            )))

    # invocations ------------------------------------------------------------------------

    def invocations(self, run_id: str) -> list[InvocationRecord]:
        with self.session() as s:
            rows = s.scalars(
                select(InvocationRow).where(InvocationRow.run_id == run_id)
                .order_by(InvocationRow.sequence_number)
            )
            return [_invocation(r) for r in rows]

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
        values: dict = dict(
            run_id=run_id, sequence_number=sequence_number, model=model,
            model_version=model_version, input_invocation_id=input_invocation_id, seed=seed,
            started_at=started_at, completed_at=completed_at,
        )
        if isinstance(output, ModelFailure):
            values["error"] = str(output)
        elif isinstance(output, str):
            values.update(output_type="text", output_text=output, output_sha256=output_digest(output))
        else:
            values.update(output_type="image", output_image=image_to_png(output),
                          output_sha256=output_digest(output))
        with self.session() as s:
            s.execute(self._insert(InvocationRow).values(**values).on_conflict_do_nothing(
                index_elements=["run_id", "sequence_number"]))
            row = s.scalar(select(InvocationRow).where(
                InvocationRow.run_id == run_id, InvocationRow.sequence_number == sequence_number))
            return _invocation(row)

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

    # embeddings -------------------------------------------------------------------------

    def embedding_status(self, run_id: str, embedding_model: str) -> dict[int, str]:
        """Invocation id -> stored model version, for this run's embeddings by this model."""
        with self.session() as s:
            return dict(s.execute(
                select(EmbeddingRow.invocation_id, EmbeddingRow.model_version)
                .join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id)
                .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model)
            ).all())

    def add_embeddings(self, embedding_model: str, model_version: str, vectors: dict[int, np.ndarray]) -> int:
        """Store vectors by invocation id in one transaction; existing ones are kept. Returns
        how many rows were new."""
        if not vectors:
            return 0
        with self.session() as s:
            before = s.scalar(select(func.count()).select_from(EmbeddingRow).where(
                EmbeddingRow.embedding_model == embedding_model,
                EmbeddingRow.invocation_id.in_(list(vectors))))
            s.execute(self._insert(EmbeddingRow).values([
                dict(invocation_id=i, embedding_model=embedding_model, model_version=model_version,
                     dimension=int(v.size), vector=vector_to_bytes(v), created_at=utcnow())
                for i, v in sorted(vectors.items())  # one order for every writer: no deadlock
            ]).on_conflict_do_nothing(index_elements=["invocation_id", "embedding_model"]))
        return len(vectors) - before

    def reference_embedding(self, run_id: str, embedding_model: str) -> tuple[str, np.ndarray] | None:
        """(model version, vector) of the embedding of a run's initial prompt or image."""
        with self.session() as s:
            row = s.scalar(select(ReferenceEmbeddingRow).where(
                ReferenceEmbeddingRow.run_id == run_id, ReferenceEmbeddingRow.embedding_model == embedding_model))
        return None if row is None else (row.model_version, bytes_to_vector(row.vector))

    def put_reference_embedding(
        self, run_id: str, embedding_model: str, model_version: str, vector: np.ndarray
    ) -> None:
        values = dict(model_version=model_version, vector=vector_to_bytes(vector))
        with self.session() as s:
            s.execute(self._insert(ReferenceEmbeddingRow).values(
                run_id=run_id, embedding_model=embedding_model, **values,
            ).on_conflict_do_update(index_elements=["run_id", "embedding_model"], set_=values))

    def delete_embeddings(self, embedding_model: str, invocation_ids: Sequence[int]) -> None:
        with self.session() as s:
            s.execute(delete(EmbeddingRow).where(
                EmbeddingRow.embedding_model == embedding_model,
                EmbeddingRow.invocation_id.in_(list(invocation_ids))))

    def embedding_ids(self, run_id: str, embedding_model: str) -> list[tuple[int, int]]:
        """(invocation id, sequence number) of a run's embedded outputs, in the order of
        :meth:`trajectory`."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(InvocationRow.id, InvocationRow.sequence_number)
                .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model)
                .order_by(InvocationRow.sequence_number)
            ).all()]

    def trajectory(self, run_id: str, embedding_model: str) -> tuple[list[int], list[str], np.ndarray]:
        """(sequence numbers, output types, vectors as rows) of a run's embedded outputs, in order."""
        with self.session() as s:
            rows = s.execute(
                select(InvocationRow.sequence_number, InvocationRow.output_type, EmbeddingRow.vector)
                .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model)
                .order_by(InvocationRow.sequence_number)
            ).all()
        if not rows:
            return [], [], np.zeros((0, 0), dtype=np.float32)
        return ([r[0] for r in rows], [r[1] for r in rows],
                np.stack([bytes_to_vector(r[2]) for r in rows]))

    # persistence diagrams ---------------------------------------------------------------

    def diagram_keys(self, run_id: str) -> dict[tuple[str, str, str], str]:
        """(embedding model, subset, params hash) -> input sha256 of this run's stored diagrams."""
        with self.session() as s:
            rows = s.execute(select(
                PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset,
                PersistenceDiagramRow.params_hash, PersistenceDiagramRow.input_sha256,
            ).where(PersistenceDiagramRow.run_id == run_id)).all()
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def put_diagram(self, record: DiagramRecord) -> None:
        """Store a diagram, replacing one with the same identity computed from other inputs."""
        points = {str(d): [[float(b), None if np.isinf(e) else float(e)] for b, e in arr]
                  for d, arr in record.points.items()}
        values = dict(
            params=record.params, n_points=record.n_points, input_sha256=record.input_sha256,
            homology_dims=sorted(record.points), points=points, summary=record.summary,
            duration_s=record.duration_s, created_at=utcnow(),
        )
        with self.session() as s:
            # One current diagram per (run, model, subset): older parameters are replaced.
            s.execute(delete(PersistenceDiagramRow).where(
                PersistenceDiagramRow.run_id == record.run_id,
                PersistenceDiagramRow.embedding_model == record.embedding_model,
                PersistenceDiagramRow.subset == record.subset,
                PersistenceDiagramRow.params_hash != record.params_hash))
            s.execute(self._insert(PersistenceDiagramRow).values(
                run_id=record.run_id, embedding_model=record.embedding_model, subset=record.subset,
                params_hash=record.params_hash, **values,
            ).on_conflict_do_update(
                index_elements=["run_id", "embedding_model", "subset", "params_hash"], set_=values))

    def diagrams(self, run_ids: Iterable[str] | None = None) -> list[DiagramRecord]:
        with self.session() as s:
            query = select(PersistenceDiagramRow).order_by(
                PersistenceDiagramRow.run_id, PersistenceDiagramRow.embedding_model,
                PersistenceDiagramRow.subset)
            if run_ids is not None:
                query = query.where(PersistenceDiagramRow.run_id.in_(list(run_ids)))
            rows = list(s.scalars(query))
        return [DiagramRecord(
            run_id=r.run_id, embedding_model=r.embedding_model, subset=r.subset, params=r.params,
            params_hash=r.params_hash, n_points=r.n_points, input_sha256=r.input_sha256,
            points={int(d): np.array([[b, np.inf if e is None else e] for b, e in pts],
                                     dtype=np.float64).reshape(-1, 2)
                    for d, pts in r.points.items()},
            summary=r.summary, duration_s=r.duration_s,
        ) for r in rows]

    # store-wide comparisons and reports ----------------------------------------------------

    def put_comparison(self, comparison: StoreComparison) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{f"H{dim}_{metric}": m for (dim, metric), m in comparison.matrices.items()})
        values = dict(
            run_ids=list(comparison.run_ids), diagram_hashes=list(comparison.diagram_hashes),
            matrices=buffer.getvalue(), attractor_threshold=comparison.attractor_threshold,
            attractors=[dataclasses.asdict(a) for a in comparison.attractors], computed_at=utcnow(),
        )
        with self.session() as s:
            s.execute(self._insert(StoreComparisonRow).values(embedding_model=comparison.embedding_model, **values)
                      .on_conflict_do_update(index_elements=["embedding_model"], set_=values))

    def comparison(self, embedding_model: str) -> StoreComparison | None:
        with self.session() as s:
            row = s.get(StoreComparisonRow, embedding_model)
        if row is None:
            return None
        with np.load(io.BytesIO(row.matrices)) as arrays:
            matrices = {(int(k[1:].split("_", 1)[0]), k.split("_", 1)[1]): arrays[k] for k in arrays.files}
        return StoreComparison(
            embedding_model=embedding_model, run_ids=tuple(row.run_ids), diagram_hashes=tuple(row.diagram_hashes),
            matrices=matrices, attractor_threshold=row.attractor_threshold,
            attractors=tuple(AttractorData(**{**a, "run_ids": tuple(a["run_ids"])}) for a in row.attractors),
        )

    def embedding_models_in_use(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.scalars(select(PersistenceDiagramRow.embedding_model))))

    def diagrams_fingerprint(self, run_ids: Sequence[str] | None = None) -> str:
        """Changes whenever a persistence diagram (of these runs) is added or replaced."""
        query = select(func.count(), func.max(PersistenceDiagramRow.created_at))
        if run_ids is not None:
            query = query.where(PersistenceDiagramRow.run_id.in_(list(run_ids)))
        with self.session() as s:
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
        with self.session() as s:
            query = select(ReportRow)
            if experiments is not None:
                query = query.where(ReportRow.experiment.in_(list(experiments)))
            rows = list(s.scalars(query.order_by(ReportRow.experiment)))
        tables: dict[str, list[dict]] = {}
        for row in rows:
            for name, records in row.tables.items():
                tables.setdefault(name, []).extend({"experiment": row.experiment, **r} for r in records)
        return tables

    # summaries --------------------------------------------------------------------------

    def counts(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Per run: stored invocations (without errors), embeddings and diagrams."""
        with self.session() as s:
            def grouped(query, column) -> dict[str, int]:
                if run_ids is not None:
                    query = query.where(column.in_(list(run_ids)))
                return dict(s.execute(query.group_by(column)).all())

            inv = grouped(select(InvocationRow.run_id, func.count())
                          .where(InvocationRow.error.is_(None)), InvocationRow.run_id)
            emb = grouped(select(InvocationRow.run_id, func.count())
                          .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id),
                          InvocationRow.run_id)
            dia = grouped(select(PersistenceDiagramRow.run_id, func.count()),
                          PersistenceDiagramRow.run_id)
        keys = set(inv) | set(emb) | set(dia) | set(run_ids or ())
        return {k: {"invocations": inv.get(k, 0), "embeddings": emb.get(k, 0),
                    "diagrams": dia.get(k, 0)} for k in keys}

    def content_hash(self, run_id: str, what: str) -> str:
        """A short hash of what is stored for a run: ``invocations``, ``embeddings`` or
        ``diagrams``. Used as the Dagster data version of the per-run assets."""
        h = hashlib.sha256(what.encode())
        with self.session() as s:
            if what == "runs":
                row = s.get(RunRow, run_id)
                h.update(canonical_json(row.spec if row else None).encode())
            elif what == "invocations":
                for seq, digest, error in s.execute(
                    select(InvocationRow.sequence_number, InvocationRow.output_sha256, InvocationRow.error)
                    .where(InvocationRow.run_id == run_id).order_by(InvocationRow.sequence_number)):
                    h.update(f"{seq}:{digest}:{error}\n".encode())
            elif what == "embeddings":
                for seq, model, version, vector in s.execute(
                    select(InvocationRow.sequence_number, EmbeddingRow.embedding_model,
                           EmbeddingRow.model_version, EmbeddingRow.vector)
                    .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                    .where(InvocationRow.run_id == run_id)
                    .order_by(EmbeddingRow.embedding_model, InvocationRow.sequence_number)):
                    h.update(f"{seq}:{model}:{version}:".encode() + vector)
            elif what == "diagrams":
                for model, subset, params_hash, digest in s.execute(
                    select(PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset,
                           PersistenceDiagramRow.params_hash, PersistenceDiagramRow.input_sha256)
                    .where(PersistenceDiagramRow.run_id == run_id)
                    .order_by(PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset,
                              PersistenceDiagramRow.params_hash)):
                    h.update(f"{model}:{subset}:{params_hash}:{digest}\n".encode())
            else:
                raise ValueError(f"unknown content {what!r}")
        return h.hexdigest()[:16]
