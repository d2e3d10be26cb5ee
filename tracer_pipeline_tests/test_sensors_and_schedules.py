import json

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.assets.embeddings import embeddings
from tracer_pipeline.defs.partitions import run_ids_of
from tracer_pipeline.defs.schedules import add_scheduled_seeds, next_seeds, seed_schedules
from tracer_pipeline.defs.sensors import experiments_sensor

CONFIG = {
    "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2], "prompts": ["a red balloon"],
    "embedding_models": ["DummyEmbed"], "max_length": 5,
}


@pytest.fixture
def folder(settings):
    return settings.experiments_dir


@pytest.fixture
def store(resources):
    return resources["store"]


@pytest.fixture
def tick(instance, resources):
    def evaluate(*_):
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return experiments_sensor(context)

    return evaluate


def requested_keys(result, instance) -> list[str]:
    order = instance.get_dynamic_partitions("runs")
    keys = []
    for request in result.run_requests:
        first = order.index(request.tags[ASSET_PARTITION_RANGE_START_TAG])
        last = order.index(request.tags[ASSET_PARTITION_RANGE_END_TAG])
        keys += order[first : last + 1]
    return keys


def test_new_seeds_request_only_the_new_partitions(folder, instance, store, tick):
    (folder / "balloon.json").write_text(json.dumps(CONFIG))
    first = tick(instance, store)
    first_keys = requested_keys(first, instance)
    assert len(first_keys) == 2 and set(instance.get_dynamic_partitions("runs")) == set(first_keys)
    assert isinstance(tick(instance, store), dg.SkipReason)  # nothing changed
    (folder / "balloon.json").write_text(json.dumps({**CONFIG, "seeds": [1, 2, 3, 4]}))
    second = tick(instance, store)
    new_keys = requested_keys(second, instance)
    assert len(new_keys) == 2 and not set(new_keys) & set(first_keys)
    assert store.get_store().experiment_run_ids("balloon")[2:] == run_ids_of(new_keys)


def test_a_new_embedding_model_requests_embeddings_and_diagrams_only(folder, instance, store, monkeypatch, tick):
    import dataclasses

    from tracer_pipeline.models import registry

    second = dataclasses.replace(registry.get_model("DummyEmbed"), name="DummyEmbed2")
    monkeypatch.setitem(registry._BY_NAME, "DummyEmbed2", second)
    (folder / "balloon.json").write_text(json.dumps(CONFIG))
    keys = requested_keys(tick(instance, store), instance)
    (folder / "balloon.json").write_text(json.dumps({**CONFIG, "embedding_models": ["DummyEmbed", "DummyEmbed2"]}))
    result = tick(instance, store)
    assert requested_keys(result, instance) == keys
    assert all(set(r.asset_selection) == {embeddings.key, persistence_diagrams.key} for r in result.run_requests)


def test_an_invalid_config_is_reported_and_does_not_stop_the_others(folder, instance, store, capfd, tick):
    (folder / "a_broken.json").write_text(json.dumps({**CONFIG, "networks": [["SDTurbbo", "DummyI2T"]]}))
    (folder / "b_good.json").write_text(json.dumps(CONFIG))
    result = tick(instance, store)
    assert len(requested_keys(result, instance)) == 2
    assert store.get_store().experiment_names() == ["b_good"]  # nothing written for the broken one
    logged = capfd.readouterr().err
    assert "a_broken.json: 1 problem in the experiment config" in logged
    assert 'networks[0][0]: unknown model "SDTurbbo"' in logged


def test_the_seed_schedule_adds_fresh_seeds_deterministically(folder, instance, store):
    path = folder / "nightly.json"
    path.write_text(json.dumps({**CONFIG, "seed_schedule": {"cron": "0 3 * * *", "new_seeds": 3}}))
    [schedule] = seed_schedules(folder)
    assert schedule.name == "seeds_nightly" and schedule.cron_schedule == "0 3 * * *"
    context = dg.build_schedule_context(instance=instance)
    first = add_scheduled_seeds(context, store, path)
    trace = store.get_store()
    assert len(trace.experiment_run_ids("nightly")) == 2 + 3
    assert trace.scheduled_seeds("nightly") == sorted(next_seeds("nightly", {1, 2}, 3, 0))
    second = add_scheduled_seeds(context, store, path)
    assert len(trace.scheduled_seeds("nightly")) == 6
    assert len(trace.experiment_run_ids("nightly")) == 2 + 6
    assert json.loads(path.read_text())["seeds"] == [1, 2]  # the user's file is untouched
    assert first[0].run_key != second[0].run_key


def test_the_reports_sensor_asks_only_for_reports_that_are_not_current(instance, resources):
    from tracer_pipeline.config import parse_experiment
    from tracer_pipeline.defs.assets.analysis import clusters, experiment_report, store_comparison
    from tracer_pipeline.defs.jobs import TRACE_ASSETS
    from tracer_pipeline.defs.partitions import range_tags
    from tracer_pipeline.defs.registration import register_experiment
    from tracer_pipeline.defs.sensors import reports_sensor

    def tick():
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return reports_sensor(context)

    def trace(config):
        trace_store = resources["store"].get_store()
        ids = register_experiment(trace_store, instance, parse_experiment(config, "x")).partition_keys
        assert dg.materialize(TRACE_ASSETS, instance=instance, resources=resources,
                              tags=range_tags(ids[0], ids[-1])).success

    config = {**CONFIG, "name": "balloon"}
    trace(config)
    [request] = tick()
    assert request.partition_key == "balloon"
    analysis = [*TRACE_ASSETS, clusters, store_comparison, experiment_report]
    assert dg.materialize(analysis, instance=instance, resources=resources, partition_key="balloon",
                          selection=[clusters, store_comparison, experiment_report]).success
    assert isinstance(tick(), dg.SkipReason)  # the report it would ask for is the one just written
    trace({**config, "seeds": [1, 2, 3]})
    [again] = tick()
    assert again.partition_key == "balloon" and again.run_key != request.run_key
