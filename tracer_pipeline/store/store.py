"""The one store API. Every read and write of the trace store goes through :class:`TraceStore`.

Writes are idempotent: writing the same invocation, embedding or diagram twice keeps one row.
On SQLite the database runs in WAL mode with a busy timeout; every write transaction takes the
write lock up front (``BEGIN IMMEDIATE``) so concurrent writer processes queue instead of
failing, and reads take no lock. On PostgreSQL, where writers run side by side, rows are written
with insert-on-conflict and the few read-then-write steps (creating the schema, registering an
experiment) first take a transaction-scoped advisory lock, so several processes can start on a
fresh store at once. Opening checks that the database is a trace store of this schema version
(:mod:`tracer_pipeline.store.opening`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image
from sqlalchemy import Connection, bindparam, delete, func, select, tuple_, update
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
from tracer_pipeline.store.analysis import AnalysisTables
from tracer_pipeline.store.generations import GenerationTables
from tracer_pipeline.store.intermediates import IntermediateTables
from tracer_pipeline.store.liveness import Heartbeat, owner_alive, this_host
from tracer_pipeline.store.opening import READ_OPTION, advisory_key, open_store_engine
from tracer_pipeline.store.records import (
    DiagramRecord,
    InvocationRecord,
    Orphan,
    RunRecord,
    StoredEmbedding,
)
from tracer_pipeline.store.schema import (
    EmbeddingRow,
    ExperimentRow,
    ExperimentRunRow,
    IntermediateOutputRow,
    InvocationRow,
    PersistenceDiagramRow,
    ReferenceEmbeddingRow,
    ReportRow,
    RunLeaseRow,
    RunRow,
    utcnow,
)
from tracer_pipeline.store.steering import SteeringTables

REGISTRATION_LOCK = "registration"

def _invocation(row: InvocationRow) -> InvocationRecord:
    return InvocationRecord(
        row.id, row.run_id, row.sequence_number, row.model, row.model_version,
        row.input_invocation_id, row.seed, row.output_type, row.output_text, row.output_image,
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


def _chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    """Slices small enough for an ``IN (...)`` list on every database."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def bytes_to_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


class TraceStore(GenerationTables, SteeringTables, IntermediateTables, AnalysisTables):
    """Experiments, runs, invocations, embeddings and persistence diagrams, with lineage; the
    self-consuming kind's generations through :class:`GenerationTables`, the steering kind's
    rounds through :class:`SteeringTables`; images an output passed through through
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
        return {row.run_id: row for chunk in _chunks(run_ids)
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

    # invocations ------------------------------------------------------------------------

    def invocations(self, run_id: str, limit: int | None = None) -> list[InvocationRecord]:
        """A run's invocations in order (the first ``limit`` of them, when given)."""
        with self.reading() as s:
            rows = s.scalars(
                select(InvocationRow).where(InvocationRow.run_id == run_id)
                .order_by(InvocationRow.sequence_number).limit(limit)
            )
            return [_invocation(r) for r in rows]

    def invocation_digests(self, run_ids: Sequence[str]) -> dict[str, list[tuple[int, str, str | None, str | None]]]:
        """Per run, (sequence number, output type, output sha256, output text) of each invocation
        that has an output, in order, without the images: what a report needs of every stored run,
        in a few queries instead of one per run."""
        columns = (InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_type,
                   InvocationRow.output_sha256, InvocationRow.output_text)
        found: dict[str, list[tuple[int, str, str | None, str | None]]] = {run_id: [] for run_id in run_ids}
        with self.reading() as s:
            for chunk in _chunks(list(run_ids)):
                for run_id, seq, output_type, digest, text in s.execute(
                        select(*columns).where(InvocationRow.run_id.in_(list(chunk)), InvocationRow.error.is_(None))
                        .order_by(InvocationRow.run_id, InvocationRow.sequence_number)):
                    found[run_id].append((seq, output_type, digest, text))
        return found

    def images(self, outputs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """(run id, sequence number) → PNG bytes of these image outputs, in a few queries."""
        found = {}
        with self.reading() as s:
            for chunk in _chunks(list(outputs)):
                found |= {(run_id, seq): image for run_id, seq, image in s.execute(
                    select(InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_image).where(
                        tuple_(InvocationRow.run_id, InvocationRow.sequence_number).in_(chunk),
                        InvocationRow.output_image.is_not(None)))}
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
                           for chunk in _chunks(list(run_ids))]
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
            for chunk in _chunks(keys):
                stored |= {(r.run_id, r.sequence_number): r for r in s.scalars(select(InvocationRow).where(
                    tuple_(InvocationRow.run_id, InvocationRow.sequence_number).in_(chunk)))}
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

    # embeddings -------------------------------------------------------------------------

    def embedding_status(self, run_id: str, embedding_model: str) -> dict[int, str]:
        """Invocation id -> stored model version, for this run's embeddings by this model."""
        with self.reading() as s:
            return dict(s.execute(
                select(EmbeddingRow.invocation_id, EmbeddingRow.model_version)
                .join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id)
                .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model)
            ).all())

    def non_finite_embeddings(self, run_id: str, embedding_model: str) -> list[int]:
        """Invocation ids of this run's stored vectors by this model that hold NaN or infinity."""
        with self.reading() as s:
            rows = s.execute(select(EmbeddingRow.invocation_id, EmbeddingRow.vector)
                             .join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id)
                             .where(InvocationRow.run_id == run_id, EmbeddingRow.embedding_model == embedding_model))
            return [i for i, vector in rows if not np.all(np.isfinite(bytes_to_vector(vector)))]

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
            for chunk in _chunks(list(run_ids)):
                for run_id, seq, output_type, vector in s.execute(
                        select(InvocationRow.run_id, InvocationRow.sequence_number, InvocationRow.output_type,
                               EmbeddingRow.vector)
                        .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                        .where(InvocationRow.run_id.in_(list(chunk)), EmbeddingRow.embedding_model == embedding_model)
                        .order_by(InvocationRow.run_id, InvocationRow.sequence_number)):
                    rows[run_id].append((seq, output_type, vector))
        return {run_id: ([r[0] for r in found], [r[1] for r in found], np.stack([bytes_to_vector(r[2]) for r in found]))
                if found else ([], [], np.zeros((0, 0), dtype=np.float32)) for run_id, found in rows.items()}

    def reference_embeddings(self, run_ids: Sequence[str], embedding_model: str) -> dict[str, tuple[str, np.ndarray]]:
        """:meth:`reference_embedding` of these runs (those that have one), in a few queries."""
        found = {}
        with self.reading() as s:
            for chunk in _chunks(list(run_ids)):
                for row in s.scalars(select(ReferenceEmbeddingRow).where(
                        ReferenceEmbeddingRow.run_id.in_(list(chunk)),
                        ReferenceEmbeddingRow.embedding_model == embedding_model)):
                    found[row.run_id] = (row.model_version, bytes_to_vector(row.vector))
        return found

    # persistence diagrams ---------------------------------------------------------------

    def diagram_keys(self, run_id: str) -> dict[tuple[str, str, str], str]:
        """(embedding model, subset, params hash) -> input sha256 of this run's stored diagrams."""
        with self.reading() as s:
            rows = s.execute(select(
                PersistenceDiagramRow.embedding_model, PersistenceDiagramRow.subset,
                PersistenceDiagramRow.params_hash, PersistenceDiagramRow.input_sha256,
            ).where(PersistenceDiagramRow.run_id == run_id)).all()
        return {(r[0], r[1], r[2]): r[3] for r in rows}

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
                rows = sorted((r for chunk in _chunks(list(run_ids)) for r in s.scalars(
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
        """A short hash of what is stored for a run: ``invocations``, ``embeddings`` or
        ``diagrams``. Used as the Dagster data version of the per-run assets."""
        h = hashlib.sha256(what.encode())
        with self.reading() as s:
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

    # operating the store: what the doctor checks and repairs, deleting an experiment -----------

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
            for chunk in _chunks(list(embedding_ids)):
                derived |= set(s.execute(select(InvocationRow.run_id, EmbeddingRow.embedding_model)
                                         .join(EmbeddingRow, EmbeddingRow.invocation_id == InvocationRow.id)
                                         .where(EmbeddingRow.id.in_(chunk))).tuples())
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.id.in_(chunk)))
            for chunk in _chunks(list(reference_ids)):
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
                    for chunk in _chunks(ids):
                        s.execute(delete(key.table).where(key.in_(chunk)))
        return deleted

    def _delete_invocations(self, s: Session, invocation_ids: list[int]) -> None:
        """Invocations with their embeddings and the diagrams of their runs; an invocation whose
        input is deleted is deleted too (it was computed from it)."""
        todo = set(invocation_ids)
        while todo:
            ids = sorted(todo)
            runs: set[str] = set()
            for chunk in _chunks(ids):
                runs |= set(s.scalars(select(InvocationRow.run_id).where(InvocationRow.id.in_(chunk))))
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.invocation_id.in_(chunk)))
            todo = {i for chunk in _chunks(ids) for i in s.scalars(
                select(InvocationRow.id).where(InvocationRow.input_invocation_id.in_(chunk)))} - set(ids)
            for chunk in _chunks(ids):
                s.execute(update(InvocationRow).where(InvocationRow.input_invocation_id.in_(chunk))
                          .values(input_invocation_id=None))
                s.execute(delete(InvocationRow).where(InvocationRow.id.in_(chunk)))
            for chunk in _chunks(sorted(runs)):
                s.execute(delete(PersistenceDiagramRow).where(PersistenceDiagramRow.run_id.in_(chunk)))

    def _delete_runs(self, s: Session, run_ids: list[str]) -> None:
        for chunk in _chunks(run_ids):
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
            for chunk in _chunks(run_ids):
                shared |= set(s.scalars(select(ExperimentRunRow.run_id).where(
                    ExperimentRunRow.run_id.in_(chunk), ExperimentRunRow.experiment_id != experiment.id)))
            deleted = [r for r in run_ids if r not in shared]
            s.execute(delete(ExperimentRunRow).where(ExperimentRunRow.experiment_id == experiment.id))
            self._delete_runs(s, deleted)
            s.execute(delete(ReportRow).where(ReportRow.experiment == name))
            s.execute(delete(ExperimentRow).where(ExperimentRow.id == experiment.id))
        return deleted, [r for r in run_ids if r in shared]
