"""The one store API. Every read and write of the trace store goes through :class:`TraceStore`.

Writes are idempotent: writing the same invocation, embedding or diagram twice keeps one row.
On SQLite the database runs in WAL mode with a busy timeout; every write transaction takes the
write lock up front (``BEGIN IMMEDIATE``) so concurrent writer processes queue instead of
failing, and reads take no lock. On PostgreSQL, where writers run side by side, rows are written
with insert-on-conflict and the few read-then-write steps (creating the schema, registering an
experiment) first take a transaction-scoped advisory lock, so several processes can start on a
fresh store at once. Opening checks that the database is a trace store of this schema version
(:mod:`tracer_pipeline.store.opening`).

:class:`TraceStore` holds the connection, the transactions, experiments, runs, their statuses and
what is stored per run; each other group of tables is a mixin in a module of its own (invocations, embeddings, diagrams,
operations, and the kinds' own tables), so each part of the one API can be read alone.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from PIL import Image
from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from tracer_pipeline.config import Experiment, RunSpec, canonical_json
from tracer_pipeline.errors import RunNotRegisteredError, StoreError
from tracer_pipeline.models.base import image_to_png
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store.analysis import AnalysisTables
from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.diagrams import DiagramTables
from tracer_pipeline.store.embeddings import EmbeddingTables
from tracer_pipeline.store.generations import GenerationTables
from tracer_pipeline.store.intermediates import IntermediateTables
from tracer_pipeline.store.invocations import InvocationTables
from tracer_pipeline.store.liveness import Heartbeat, owner_alive, this_host
from tracer_pipeline.store.opening import READ_OPTION, advisory_key, open_store_engine
from tracer_pipeline.store.operations import StoreOperations
from tracer_pipeline.store.records import RunRecord
from tracer_pipeline.store.schema import (
    EmbeddingRow,
    ExperimentRow,
    ExperimentRunRow,
    InvocationRow,
    PersistenceDiagramRow,
    RunLeaseRow,
    RunRow,
    utcnow,
)
from tracer_pipeline.store.steering import SteeringTables

REGISTRATION_LOCK = "registration"


class TraceStore(InvocationTables, EmbeddingTables, DiagramTables, StoreOperations, GenerationTables,
                 SteeringTables, IntermediateTables, AnalysisTables):
    """Experiments, runs, invocations, embeddings and persistence diagrams, with lineage.
    Experiments, runs, their statuses and what is stored per run live here; invocations through
    :class:`InvocationTables`, embeddings and trajectories through :class:`EmbeddingTables`,
    persistence diagrams through :class:`DiagramTables`, the doctor's checks and repairs and
    deleting an experiment through :class:`StoreOperations`; the self-consuming kind's
    generations through :class:`GenerationTables`, the steering kind's rounds through
    :class:`SteeringTables`; images an output passed through through
    :class:`IntermediateTables`."""

    def __init__(self, url: str, read_only: bool = False):
        """Open the store at ``url``, refusing with :class:`StoreOpenError` a database that is not
        a trace store of this version. ``read_only``: create and change nothing (a missing
        store is an error naming where it was looked for), and take no lock."""
        self.url = url
        self.read_only = read_only
        self.engine, self._tables = open_store_engine(url, read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(**{READ_OPTION: True}),
                                           expire_on_commit=False)
        self._heartbeat: Heartbeat | None = None
        self._heartbeat_lock = threading.Lock()

    def _lock(self, connection: Connection | Session, name: str) -> None:
        """Serialise a read-then-write with other processes until the transaction ends. SQLite's
        ``BEGIN IMMEDIATE`` already holds the database's one write lock; PostgreSQL takes an
        advisory lock named ``name``."""
        if self.engine.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(advisory_key(name))))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error."""
        if self.read_only:
            raise StoreError(f"the trace store {self.url} was opened read-only")
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One read transaction: a consistent snapshot, without the write lock."""
        with self._read_sessions.begin() as session:
            yield session

    def close(self) -> None:
        with self._heartbeat_lock:
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
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
        with self.reading() as s:
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
            running = [r for r, row in rows.items() if row.status == RunStatus.RUNNING]
            leases = self._leases(s, running) if running else {}
        order = run_ids if run_ids is not None else sorted(rows)
        return [self._run_record(rows[r], links.get(r, []), leases) for r in order if r in rows]

    def _leases(self, s: Session, run_ids: list[str]) -> dict[str, RunLeaseRow]:
        if RunLeaseRow.__tablename__ not in self._tables:  # an unversioned store opened read-only
            return {}
        return {row.run_id: row for chunk in chunks(run_ids)
                for row in s.scalars(select(RunLeaseRow).where(RunLeaseRow.run_id.in_(chunk)))}

    @staticmethod
    def _run_record(row: RunRow, links: list[tuple[ExperimentRunRow, str]],
                    leases: dict[str, RunLeaseRow]) -> RunRecord:
        embedders: list[str] = []
        for link, _ in links:
            embedders += [m for m in link.embedding_models if m not in embedders]
        status, stop_reason = RunStatus(row.status), row.stop_reason
        if status == RunStatus.RUNNING:
            lease = leases.get(row.run_id)
            if lease is None or not owner_alive(lease.host, lease.pid, lease.heartbeat_at, utcnow()):
                status = RunStatus.INTERRUPTED
                owner = f"process {lease.pid} on {lease.host}" if lease else "its process"
                stop_reason = (f"interrupted: {owner} stopped while computing it; "
                               "run the experiment again to continue")
        return RunRecord(
            run_id=row.run_id, network=tuple(row.network), prompt=row.prompt,
            initial_image=row.initial_image, seed=row.seed, status=status,
            stop_reason=stop_reason, error=row.error,
            max_length=max((link.max_length for link, _ in links), default=0),
            embedding_models=tuple(embedders),
            stop_when_stuck=all(link.stop_when_stuck for link, _ in links),
            max_homology_dim=max((link.max_homology_dim for link, _ in links), default=1),
            experiments=tuple(sorted(name for _, name in links)),
            started_at=row.started_at, completed_at=row.completed_at, created_at=row.created_at,
            spec=row.spec,
        )

    def run_spec(self, run_id: str) -> dict:
        """The canonical specification a run's id is the hash of."""
        with self.reading() as s:
            spec = s.scalar(select(RunRow.spec).where(RunRow.run_id == run_id))
        if spec is None:
            self.get_run(run_id)  # raises the clear "not registered" error
        return spec

    def set_run_status(
        self, run_id: str, status: RunStatus, stop_reason: str | None = None, error: str | None = None
    ) -> None:
        """Record a run's status (see :meth:`set_run_statuses`)."""
        self.set_run_statuses([(run_id, status, stop_reason, error)])

    def set_run_statuses(self, updates: Sequence[tuple[str, RunStatus, str | None, str | None]]) -> None:
        """(run id, status, stop reason, error) for several runs, in one transaction. ``running``
        also records this process as the run's owner, kept alive by a heartbeat (see
        :mod:`tracer_pipeline.store.liveness`); any other status releases it."""
        if not updates:
            return
        if any(status == RunStatus.INTERRUPTED for _, status, _, _ in updates):
            raise ValueError("interrupted is read from a running run's dead owner, never stored")
        now = utcnow()
        # Updates grouped by the columns they set, each group one statement executed for its
        # runs: two statements compiled per run were a tenth of a 1,000-run grid's tracing.
        groups: dict[tuple[str, ...], list[dict]] = {}
        for run_id, status, stop_reason, error in updates:
            values: dict = {"key": run_id, "status": status, "stop_reason": stop_reason, "error": error,
                            "updated_at": now}
            if status == RunStatus.RUNNING:
                values["started_at"] = now
            elif RunStatus(status).finished:
                values["completed_at"] = now
            groups.setdefault(tuple(values), []).append(values)
        leases = [dict(run_id=run_id, host=this_host(), pid=os.getpid(), claimed_at=now, heartbeat_at=now)
                  for run_id, status, _, _ in updates if status == RunStatus.RUNNING]
        with self.session() as s:
            connection = s.connection()
            for columns, rows in groups.items():
                connection.execute(update(RunRow).where(RunRow.run_id == bindparam("key")).values(
                    {name: bindparam(name) for name in columns if name != "key"}), rows)
            connection.execute(delete(RunLeaseRow).where(RunLeaseRow.run_id == bindparam("key")),
                               [{"key": run_id} for run_id, _, _, _ in updates])
            if leases:
                connection.execute(RunLeaseRow.__table__.insert(), leases)
        if leases:
            self._keep_alive()

    def _keep_alive(self) -> None:
        with self._heartbeat_lock:
            if self._heartbeat is None:
                self._heartbeat = Heartbeat(self._beat)

    def _beat(self) -> bool:
        with self._heartbeat_lock, self.session() as s:
            held = s.execute(update(RunLeaseRow).where(RunLeaseRow.host == this_host(), RunLeaseRow.pid == os.getpid())
                             .values(heartbeat_at=utcnow())).rowcount
            if not held:
                self._heartbeat = None
            return bool(held)

    def experiment_names(self) -> list[str]:
        with self.reading() as s:
            return list(s.scalars(select(ExperimentRow.name).order_by(ExperimentRow.name)))

    def experiment(self, name: str) -> ExperimentRow | None:
        with self.reading() as s:
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
        with self.reading() as s:
            return list(s.scalars(
                select(ExperimentRunRow.run_id)
                .join(ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id)
                .where(ExperimentRow.name == name)
                .order_by(ExperimentRunRow.id)
            ))

    def scheduled_seeds(self, name: str) -> list[int]:
        """Seeds the seed schedule has added to an experiment so far."""
        with self.reading() as s:
            return sorted(set(s.scalars(
                select(RunRow.seed)
                .join(ExperimentRunRow, ExperimentRunRow.run_id == RunRow.run_id)
                .join(ExperimentRow, ExperimentRow.id == ExperimentRunRow.experiment_id)
                .where(ExperimentRow.name == name, ExperimentRunRow.scheduled.is_(True))
            )))

    # summaries --------------------------------------------------------------------------

    def counts(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Per run: stored invocations (without errors), embeddings and diagrams."""
        with self.reading() as s:
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
        """A short hash of what is stored for a run: ``runs`` (its specification),
        ``invocations``, ``embeddings`` or ``diagrams``. Used as the Dagster data version of the
        per-run assets."""
        return self.content_hashes([run_id], what)[run_id]

    def content_hashes(self, run_ids: Sequence[str], what: str) -> dict[str, str]:
        """:meth:`content_hash` of each of these runs, in a few queries instead of one per run."""
        queries = {
            "invocations": (select(InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_sha256,
                                   InvocationRow.error), InvocationRow.run_id,
                            (InvocationRow.sequence_number,)),
            "embeddings": (select(InvocationRow.run_id, InvocationRow.sequence_number, EmbeddingRow.embedding_model,
                                  EmbeddingRow.model_version, EmbeddingRow.vector)
                           .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id), InvocationRow.run_id,
                           (EmbeddingRow.embedding_model, InvocationRow.sequence_number)),
            "diagrams": (select(PersistenceDiagramRow.run_id, PersistenceDiagramRow.embedding_model,
                                PersistenceDiagramRow.subset, PersistenceDiagramRow.params_hash,
                                PersistenceDiagramRow.input_sha256), PersistenceDiagramRow.run_id,
                         (PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset,
                          PersistenceDiagramRow.params_hash)),
            "runs": (select(RunRow.run_id, RunRow.spec), RunRow.run_id, ()),
        }
        if what not in queries:
            raise ValueError(f"unknown content {what!r}")
        query, run_column, order = queries[what]
        hashes = {run_id: hashlib.sha256(what.encode()) for run_id in run_ids}
        specs: dict[str, object] = {}
        with self.reading() as s:
            for chunk in chunks(list(run_ids)):
                for run_id, *values in s.execute(query.where(run_column.in_(list(chunk)))
                                                 .order_by(run_column, *order)):
                    h = hashes[run_id]
                    if what == "runs":
                        specs[run_id] = values[0]
                    elif what == "invocations":
                        h.update("{}:{}:{}\n".format(*values).encode())
                    elif what == "embeddings":
                        seq, model, version, vector = values
                        h.update(f"{seq}:{model}:{version}:".encode() + vector)
                    else:
                        h.update("{}:{}:{}:{}\n".format(*values).encode())
        if what == "runs":  # a run not stored hashes as no specification
            for run_id, h in hashes.items():
                h.update(canonical_json(specs.get(run_id)).encode())
        return {run_id: h.hexdigest()[:16] for run_id, h in hashes.items()}
