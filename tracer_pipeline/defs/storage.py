"""Dagster's SQLite event log, made cheap per event for grids of thousands of run partitions.

Dagster's own ``SqliteEventLogStorage`` builds a new SQLAlchemy engine and commits with a full
fsync for every event, about 50 ms an event on this project's reference machine; a Dagster run
over 1,000 run partitions writes thousands of events (one materialization per partition and
asset, one check evaluation per partition and check). This subclass changes only how it writes:

- one engine per database file, kept (a bounded cache) with its connection pool, instead of a
  new engine and connection per event (closing the last connection to a WAL database
  checkpoints it: an fsync per event);
- ``synchronous=NORMAL`` on its WAL databases: a commit is durable against a crash of the
  process, not of the machine's power (the trace store, not this log, holds the results);
- events Dagster sends as a batch (a partition range's materializations, with
  ``DAGSTER_EVENT_BATCH_SIZE`` set) written in one transaction per database, the asset's
  summary row updated once per batch rather than once per partition;
- which dynamic partitions exist, remembered once seen (Dagster asks for each event of each
  partition; partitions are added far more often than deleted, and one deleted through this
  storage is forgotten at once);
- which of its tables and asset-key columns the index database has, remembered once seen
  (Dagster inspects the schema, on a new engine, for every check evaluation and materialization:
  ~1 ms each; a migration only adds them);
- asset-check evaluations (one per run partition and check) held back until the next event of
  another kind (the check's output follows its evaluations) and then written in one transaction
  per database: a process killed in between loses those check results, not any data. They are
  written in bulk: their event rows in one multi-row statement per database, their check
  execution rows by one prepared UPDATE run for all of them (Dagster compiles one per
  evaluation and serializes each event twice); an evaluation whose execution row is not there
  exactly once (Dagster then inserts one, or raises) goes Dagster's own way;
- a partitioned check planned for a range of N partitions recorded as N execution rows that
  each carry the planned event narrowed to their own partition (Dagster's own class stores the
  whole range's event in every row: N² bytes, 230 MB for one check of 1,000 runs);
- one planned-materialization event per asset for a partition range instead of one per
  partition (Dagster's ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``; the cost: partitions
  of a run that fails are not marked failed in the UI; the trace store and the per-partition
  checks still say which runs failed).

The databases are the ones Dagster's own class reads and writes; an instance can switch back
by removing ``event_log_storage`` from its ``dagster.yaml``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlite import create_db_conn_string
from dagster._record import copy
from dagster._serdes import serialize_value
from sqlalchemy import Connection, Engine, and_, bindparam, create_engine, event, func, select

# Dagster reads these in the process that writes events: set by the CLI's launcher and handed
# to ``dagster dev`` by ``trajectory-tracer ui``.
DAGSTER_ENVIRONMENT = {"DAGSTER_EVENT_BATCH_SIZE": "10000"}
ENGINE_CACHE_SIZE = 32
CHECK_BATCH_SIZE = 10_000  # check evaluations held back at most
BUSY_TIMEOUT_S = 60


class TracerSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage with kept engines, NORMAL sync and batched writes."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._known_partitions: set[tuple[str, str]] = set()
        self._known_tables: set[str] = set()
        self._known_asset_key_columns: set[str] = set()
        self._held_checks: list[EventLogEntry] = []
        self._held_lock = threading.Lock()
        self._batch = threading.local()  # shard → the open connection, while a batch is written
        super().__init__(base_dir, inst_data)

    def has_table(self, table_name: str) -> bool:
        return _remembered(self._known_tables, table_name, partial(super().has_table, table_name))

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        return _remembered(self._known_asset_key_columns, column_name,
                           partial(super()._has_asset_key_col_on_connection, conn, column_name))

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        return _remembered(self._known_partitions, (partitions_def_name, partition_key),
                           partial(super().has_dynamic_partition, partitions_def_name, partition_key))

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._known_partitions.discard((partitions_def_name, partition_key))
        super().delete_dynamic_partition(partitions_def_name, partition_key)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> TracerSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        return True

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            # The storage's own lock serialises every use of a connection, so sharing the pool's
            # connections across threads (the webserver's) is safe.
            engine = create_engine(create_db_conn_string(self._base_dir, shard), pool_size=1, max_overflow=4,
                                   connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
            event.listen(engine, "connect", _normal_sync)
            self._engines[shard] = engine
            while len(self._engines) > ENGINE_CACHE_SIZE:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        batch: dict[str, Connection] | None = getattr(self._batch, "connections", None)
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            if batch is None:
                with engine.connect() as conn, conn.begin():
                    yield conn
                return
            if shard not in batch:
                batch[shard] = engine.connect()
                batch[shard].begin()
            yield batch[shard]

    @contextmanager
    def _one_transaction_per_database(self) -> Iterator[None]:
        """Every connection opened in this thread meanwhile is kept open in one transaction per
        database, committed at the end (rolled back on an error)."""
        self._batch.connections = connections = {}
        try:
            yield
            for conn in connections.values():
                conn.commit()
        finally:
            self._batch.connections = None
            for conn in connections.values():
                conn.close()

    def store_event(self, event: EventLogEntry) -> None:
        if event.is_dagster_event and event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION \
                and event.run_id:
            with self._held_lock:
                self._held_checks.append(event)
                full = len(self._held_checks) >= CHECK_BATCH_SIZE
            if full:
                self._store_held_checks()
            return
        self._store_held_checks()
        super().store_event(event)

    def _store_held_checks(self) -> None:
        with self._held_lock:
            held, self._held_checks = self._held_checks, []
        if held:
            with self._one_transaction_per_database():
                self._store_check_evaluations(held)

    def _store_check_evaluations(self, events: Sequence[EventLogEntry]) -> None:
        """What Dagster's ``store_event`` writes for each evaluation of a run, in bulk: the event's
        row in its run's database and in the index database, whose id the execution row planned
        for the evaluation's check, run and partition then points to."""
        rows = [self._event_to_row(e) for e in events]
        for run_id in dict.fromkeys(e.run_id for e in events):
            with self.run_connection(run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), [row for row in rows if row["run_id"] == run_id])
        own_way = []
        with self.index_connection() as conn:
            ids = conn.scalars(SqlEventLogStorageTable.insert().returning(
                SqlEventLogStorageTable.c.id, sort_by_parameter_order=True), rows).all()
            planned = _planned_execution_counts(conn, events)
            updates = []
            for e, row, event_id in zip(events, rows, ids, strict=True):
                evaluation = e.dagster_event.event_specific_data
                key = (evaluation.asset_key.to_string(), evaluation.check_name, e.run_id, evaluation.partition)
                if evaluation.partition is None or planned.get(key) != 1:
                    own_way.append((e, event_id))
                    continue
                updates.append(dict(
                    b_asset_key=key[0], b_check_name=key[1], b_run_id=key[2], b_partition=key[3],
                    b_status=(AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
                              else AssetCheckExecutionRecordStatus.FAILED).value,
                    b_event=row["event"], b_timestamp=row["timestamp"], b_event_id=event_id,
                    b_materialization_id=evaluation.target_materialization_data.storage_id
                    if evaluation.target_materialization_data else None))
            if updates:
                conn.execute(_RECORD_EVALUATION, updates)
        for e, event_id in own_way:
            self.store_asset_check_event(e, event_id)

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        planned = event.dagster_event.event_specific_data
        subset = planned.partitions_subset
        if subset is None:
            super()._store_asset_check_evaluation_planned(event, event_id)
            return

        def narrowed(key: str) -> str:
            own = copy(planned, partitions_subset=subset.empty_subset().with_partition_keys([key]))
            return serialize_value(event._replace(dagster_event=event.dagster_event._replace(event_specific_data=own)))

        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert().values([
                dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, partition=key,
                     run_id=event.run_id, execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                     evaluation_event=narrowed(key), evaluation_event_timestamp=self._event_insert_timestamp(event),
                     evaluation_event_storage_id=event_id)
                for key in subset.get_partition_keys()]))

    def dispose(self) -> None:
        self._store_held_checks()
        super().dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of asset events (what Dagster batches) in one transaction per database;
        anything else as Dagster's own class stores it."""
        if not events or not all(e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS for e in events):
            super().store_event_batch(events)
            return
        statements = [self.prepare_insert_event(e) for e in events]
        for run_id in dict.fromkeys(e.run_id for e in events):
            with self.run_connection(run_id) as conn:
                for e, statement in zip(events, statements, strict=True):
                    if e.run_id == run_id:
                        conn.execute(statement)
        with self.index_transaction() as conn:
            ids = [conn.execute(statement).inserted_primary_key[0] for statement in statements]
            self._store_asset_event_tags(conn, events, ids)
            for e, event_id in _last_per_asset_and_kind(events, ids):
                self._store_asset_event(conn, e, event_id)


_executions = AssetCheckExecutionsTable.c
# What Dagster's ``_update_asset_check_evaluation`` sets on the row the check's planned event made
# (less the partition, which it sets to what the row already has).
_RECORD_EVALUATION = AssetCheckExecutionsTable.update().where(
    _executions.asset_key == bindparam("b_asset_key"), _executions.check_name == bindparam("b_check_name"),
    _executions.run_id == bindparam("b_run_id"), _executions.partition == bindparam("b_partition"),
).values(
    execution_status=bindparam("b_status"), evaluation_event=bindparam("b_event"),
    evaluation_event_timestamp=bindparam("b_timestamp"), evaluation_event_storage_id=bindparam("b_event_id"),
    materialization_event_storage_id=bindparam("b_materialization_id"))


def _planned_execution_counts(conn: Connection, events: Sequence[EventLogEntry]) -> dict[tuple, int]:
    """How many execution rows each evaluation's (asset key, check, run, partition) has."""
    evaluations = [e.dagster_event.event_specific_data for e in events]
    query = select(_executions.asset_key, _executions.check_name, _executions.run_id, _executions.partition,
                   func.count()).where(and_(
        _executions.asset_key.in_({v.asset_key.to_string() for v in evaluations}),
        _executions.check_name.in_({v.check_name for v in evaluations}),
        _executions.run_id.in_({e.run_id for e in events}),
    )).group_by(_executions.asset_key, _executions.check_name, _executions.run_id, _executions.partition)
    return {tuple(row[:4]): row[4] for row in conn.execute(query)}


def _remembered(known: set, key: object, ask: Callable[[], bool]) -> bool:
    """``ask()``, remembering a yes in ``known``: for what, once there, stays (a table, a column,
    a partition until it is deleted through this storage)."""
    if key in known:
        return True
    found = ask()
    if found:
        known.add(key)
    return found


def _last_per_asset_and_kind(events: Sequence[EventLogEntry], ids: Sequence[int]) -> list[tuple[EventLogEntry, int]]:
    """The events of a batch whose asset-key row update survives it: the last of each asset and
    event type, in their order. Each type overwrites the same columns of its asset's row, so the
    row ends as it would after every update (one update per asset instead of one per partition)."""
    last: dict[tuple[object, object], int] = {}
    for position, e in enumerate(events):
        last[(e.dagster_event.asset_key, e.dagster_event_type)] = position
    return [(events[p], ids[p]) for p in sorted(last.values())]


def _normal_sync(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
