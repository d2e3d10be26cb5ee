"""The per-run assets materialized through Dagster, with dummy models and a temporary instance."""

import dagster as dg

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.defs.jobs import TRACE_ASSETS
from tracer_pipeline.defs.partitions import range_tags, run_id_of
from tracer_pipeline.defs.registration import register_experiment

CONFIG = {
    "name": "assets", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2],
    "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 10,
}


def materialize(instance, resources, keys, selection=None):
    result = dg.materialize(TRACE_ASSETS, instance=instance, resources=resources, selection=selection,
                            tags=range_tags(keys[0], keys[-1]))
    assert result.success
    return result


def metadata(result, asset: str) -> dict[str, dict]:
    """Each partition's own metadata, by run id."""
    return {run_id_of(e.partition): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]}


def test_materializing_stores_the_whole_chain_with_lineage(instance, resources):
    store = resources["store"].get_store()
    registration = register_experiment(store, instance, parse_experiment(CONFIG, "x"))
    result = materialize(instance, resources, registration.partition_keys)
    counts = store.counts(registration.run_ids)
    for run in store.get_runs(registration.run_ids):
        stored = store.invocations(run.run_id)
        assert [i.input_invocation_id for i in stored[1:]] == [i.id for i in stored[:-1]]
        expected = 10 if run.network[1] == "DummyI2T" else 4  # the lossy captioner gets stuck
        assert len(stored) == expected and counts[run.run_id]["embeddings"] == expected
        assert counts[run.run_id]["diagrams"] == 3
    partitions = {e.partition for e in result.get_asset_materialization_events()}
    assert partitions == set(registration.partition_keys)
    # Keys a person can search for in the UI: seed, prompt, network, then the run id.
    runs = {r.run_id: r for r in store.get_runs(registration.run_ids)}
    for key, run_id in zip(registration.partition_keys, registration.run_ids, strict=True):
        assert key == f"s{runs[run_id].seed}.a-red-balloon.{'-'.join(runs[run_id].network)}.{run_id}"


def test_each_partition_shows_its_own_run_and_its_own_checks(instance, resources):
    store = resources["store"].get_store()
    registration = register_experiment(store, instance, parse_experiment(CONFIG, "x"))
    result = materialize(instance, resources, registration.partition_keys)
    shown = metadata(result, "invocations")
    assert set(shown) == set(registration.run_ids)
    for run in store.get_runs(registration.run_ids):
        mine = shown[run.run_id]
        stored = len(store.invocations(run.run_id))
        assert (mine["run_id"], mine["seed"], mine["status"]) == (run.run_id, run.seed, run.status)
        assert mine["computed"] == mine["invocations"] == stored
        assert mine["network"] == " → ".join(run.network) and mine["prompt"] == "a red balloon"
        assert "data:image/png;base64," in mine["preview"]
        others = set(registration.run_ids) - {run.run_id}
        assert not any(other in str(value) for other in others for value in mine.values())
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 * len(registration.run_ids)
    assert {c.partition for c in checks} == set(registration.partition_keys)
    assert all(c.metadata["run_id"].value == run_id_of(c.partition) for c in checks)
    assert all(c.passed for c in checks if c.check_name != "not_stuck")
    # Each result is about its partition's materialization (else the UI counts it as not run).
    materialized = {(e.asset_key.path[0], e.partition): e for e in result.get_asset_materialization_events()}
    for check in checks:
        assert check.target_materialization_data.run_id == result.run_id
        assert (check.asset_key.path[0], check.partition) in materialized
    # Stuck runs fail the not_stuck check as a warning, on their own partition only.
    status = {r.run_id: r.status for r in store.get_runs(registration.run_ids)}
    assert "stuck" in status.values() and "complete" in status.values()
    for check in (c for c in checks if c.check_name == "not_stuck"):
        run_id = run_id_of(check.partition)
        assert check.passed == (status[run_id] != "stuck") and check.severity == dg.AssetCheckSeverity.WARN


def test_rematerializing_stored_partitions_computes_nothing(instance, resources):
    store = resources["store"].get_store()
    registration = register_experiment(store, instance, parse_experiment(CONFIG, "x"))
    first = materialize(instance, resources, registration.partition_keys)
    before = {r: store.invocations(r) for r in registration.run_ids}
    again = materialize(instance, resources, registration.partition_keys)
    for asset in ("invocations", "embeddings", "persistence_diagrams"):
        assert {m["computed"] for m in metadata(again, asset).values()} == {0}
    assert {r: store.invocations(r) for r in registration.run_ids} == before
    versions = [{e.partition: e.materialization.tags["dagster/data_version"]
                 for e in r.get_asset_materialization_events()} for r in (first, again)]
    assert versions[0] == versions[1]


def test_raising_max_length_computes_only_the_new_invocations(instance, resources):
    store = resources["store"].get_store()
    config = {**CONFIG, "networks": [["DummyT2I", "DummyI2T"]]}
    short = register_experiment(store, instance, parse_experiment(config, "x"))
    materialize(instance, resources, short.partition_keys)
    longer = register_experiment(store, instance, parse_experiment({**config, "max_length": 20}, "x"))
    assert longer.extended == short.partition_keys and longer.new_partitions == []
    result = materialize(instance, resources, longer.partition_keys)
    shown = metadata(result, "invocations")
    assert [(shown[r]["computed"], shown[r]["skipped_already_stored"]) for r in longer.run_ids] == [(10, 10)] * 2
    assert sum(m["computed"] for m in metadata(result, "embeddings").values()) == 20
    assert all(len(store.invocations(r)) == 20 for r in longer.run_ids)


def test_an_unregistered_partition_is_a_clear_failure(instance, resources):
    instance.add_dynamic_partitions("runs", ["0123456789abcdef"])
    result = dg.materialize(TRACE_ASSETS[:1], instance=instance, resources=resources,
                            partition_key="0123456789abcdef", raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "is not in the trace store" in failure.step_failure_data.user_failure_data.description


def test_the_diagrams_metadata_shows_each_diagrams_entropy(instance, resources):
    store = resources["store"].get_store()
    registration = register_experiment(store, instance, parse_experiment(CONFIG, "x"))
    result = materialize(instance, resources, registration.partition_keys)
    stored = {(d.run_id, d.embedding_model, d.subset): d.summary for d in store.diagrams(registration.run_ids)}
    rows = [(run_id, r.data) for run_id, m in metadata(result, "persistence_diagrams").items()
            for r in m["diagrams"].records]
    assert len(rows) == len(stored)
    for run_id, row in rows:
        summary = stored[(run_id, row["embedding_model"], row["subset"])]
        assert row["H0_entropy"] == round(summary["H0"]["entropy"], 4)
    assert any(row["H0_entropy"] > 0 for _, row in rows)  # 10 distinct points: H0 has finite bars of different lengths
