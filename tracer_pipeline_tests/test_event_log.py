"""The project's Dagster event log (``defs/storage.py``), on an instance made from its dagster.yaml:
what the UI reads back after a batched run of several partitions."""

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._record import copy
from dagster._serdes import deserialize_value
from sqlalchemy import select

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.defs.partitions import run_id_of

CONFIG = {
    "name": "log", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2],
    "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 6,
}


def test_each_partitions_check_results_are_stored_about_its_latest_materialization(settings, tmp_path):
    from tracer_pipeline.cli.launcher import Launcher
    from tracer_pipeline.defs.storage import TracerSqliteEventLogStorage
    from tracer_pipeline.store import TraceStore

    launcher = Launcher(settings)
    assert isinstance(launcher.instance.event_log_storage, TracerSqliteEventLogStorage)
    store = TraceStore(settings.db_url)
    registration = launcher.register(store, parse_experiment(CONFIG, "log.json"))
    assert not launcher.trace(registration.partition_keys, "log")
    status = {r.run_id: r.status for r in store.get_runs(registration.run_ids)}
    assert set(status.values()) == {"complete", "stuck"}

    storage = launcher.instance.event_log_storage
    checks = [dg.AssetCheckKey(dg.AssetKey(asset), name) for asset, name in [
        ("invocations", "every_invocation_present_in_order"), ("invocations", "not_stuck"),
        ("embeddings", "embeddings_finite_unit_norm_right_dimension"), ("persistence_diagrams", "diagrams_valid")]]
    infos = storage.get_asset_check_partition_info(checks)
    assert len(infos) == len(checks) * len(registration.run_ids)
    latest = {asset: storage.get_latest_storage_id_by_partition(
        dg.AssetKey(asset), dg.DagsterEventType.ASSET_MATERIALIZATION, set(registration.partition_keys))
        for asset in ("invocations", "embeddings", "persistence_diagrams")}
    for info in infos:
        passed = info.latest_execution_status.value == "SUCCEEDED"
        stuck = status[run_id_of(info.partition_key)] == "stuck"
        assert passed == (not stuck if info.check_key.name == "not_stuck" else True), info
        # About the partition's latest materialization: the UI shows it as executed, not missing.
        assert info.is_current and info.latest_target_materialization_storage_id == latest[
            info.check_key.asset_key.path[0]][info.partition_key]

    # Each evaluated row says whether its check passed and points to its evaluation event's row in
    # the index database (what the UI opens as the check's result).
    with storage.index_connection() as conn:
        executions = list(conn.execute(select(AssetCheckExecutionsTable).where(
            AssetCheckExecutionsTable.c.execution_status != "PLANNED")))
        events = dict(list(conn.execute(select(SqlEventLogStorageTable.c.id, SqlEventLogStorageTable.c.event))))
    assert len(executions) == len(checks) * len(registration.run_ids)
    assert {row.execution_status for row in executions} == {"SUCCEEDED", "FAILED"}
    for row in executions:
        assert events[row.evaluation_event_storage_id] == row.evaluation_event
        evaluation = deserialize_value(row.evaluation_event).dagster_event.event_specific_data
        assert row.execution_status == ("SUCCEEDED" if evaluation.passed else "FAILED")
        assert (evaluation.partition, evaluation.check_name) == (row.partition, row.check_name)

    # Each asset's summary row, updated once per batch of materializations, still names its
    # latest one (what the UI's asset page shows as last materialized).
    for asset, by_partition in latest.items():
        [record] = storage.get_asset_records([dg.AssetKey(asset)])
        assert record.asset_entry.last_materialization_record.storage_id == max(by_partition.values())

    # A check planned for the whole range is recorded per partition, each row with its own
    # partition only (Dagster's own class copies the whole range into every row: N² bytes).
    planned_type = dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
    [planned, *_] = [r.event_log_entry for run in launcher.instance.get_run_records()
                     for r in launcher.instance.get_records_for_run(
                         run.dagster_run.run_id, of_type=planned_type).records]
    assert len(planned.dagster_event.event_specific_data.partitions_subset) == len(registration.run_ids)
    storage._store_asset_check_evaluation_planned(planned._replace(run_id="replayed"), None)
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        rows = conn.execute(select(table.c.partition, table.c.evaluation_event).where(table.c.run_id == "replayed"))
        rows = list(rows)
    assert sorted(p for p, _ in rows) == sorted(registration.partition_keys)
    for partition, serialized in rows:
        own = deserialize_value(serialized).dagster_event.event_specific_data.partitions_subset
        assert list(own.get_partition_keys()) == [partition]

    # The held evaluations, written in bulk, are stored as Dagster's own class stores them: the same
    # event rows in the run's and the index database, the same execution rows. One evaluation
    # without a planned row, and one without a partition, go Dagster's own way (a row inserted).
    [run] = [r.dagster_run.run_id for r in launcher.instance.get_run_records()
             if launcher.instance.get_records_for_run(r.dagster_run.run_id, of_type=planned_type).records]
    check_events = [r.event_log_entry for r in launcher.instance.get_records_for_run(
        run, of_type={planned_type, dg.DagsterEventType.ASSET_CHECK_EVALUATION}).records]
    last = check_events[-1]
    assert last.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    unpartitioned = copy(last.dagster_event.event_specific_data, partition=None)
    replayed = [*check_events, last._replace(run_id="unplanned"),
                last._replace(dagster_event=last.dagster_event._replace(event_specific_data=unpartitioned)),
                launcher.instance.get_records_for_run(run).records[-1].event_log_entry]  # flushes the held ones
    ours = TracerSqliteEventLogStorage(str(tmp_path / "ours"))
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster"))
    for log in (ours, dagsters):
        for entry in replayed:
            log.store_event(entry)
    assert _stored_evaluations(ours, [run, "unplanned"]) == _stored_evaluations(dagsters, [run, "unplanned"])
    assert sum(row.run_id == "unplanned" for row in _stored_evaluations(ours, [run])[2]) == 1


def _stored_evaluations(log, run_ids: list[str]) -> tuple[list, dict, list]:
    """The event rows of the index database and of each run's, and the evaluated execution rows
    (less their creation time, which the database sets)."""
    events = select(SqlEventLogStorageTable).order_by(SqlEventLogStorageTable.c.id)
    with log.index_connection() as conn:
        index = list(conn.execute(events))
        executions = list(conn.execute(select(*[c for c in AssetCheckExecutionsTable.c if c.name != "create_timestamp"])
                                       .where(AssetCheckExecutionsTable.c.execution_status != "PLANNED")
                                       .order_by(AssetCheckExecutionsTable.c.id)))
    by_run = {}
    for run_id in run_ids:
        with log.run_connection(run_id) as conn:
            by_run[run_id] = list(conn.execute(events))
    return index, by_run, executions
