"""The pieces of running beyond one process that need no servers: the executor and the worker
command from settings, models kept per process, splitting an experiment into Dagster runs, and
what `run-experiment --launch` submits (and says when no daemon takes it)."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import pytest

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.defs import build_executor
from tracer_pipeline.defs.partitions import range_tags
from tracer_pipeline.defs.registration import split_ranges
from tracer_pipeline.defs.resources import ModelPoolResource
from tracer_pipeline.errors import SettingsError
from tracer_pipeline.settings import Settings

CONFIG = {"name": "queued", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2, 3],
          "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 3}


def test_split_ranges_gives_each_worker_a_range_of_consecutive_partitions():
    order = list("abcdefg")
    assert split_ranges(list("abcdef"), order, 1) == [("a", "f")]
    assert split_ranges(list("abcdef"), order, 2) == [("a", "c"), ("d", "f")]
    assert split_ranges(list("abcdef"), order, 4) == [("a", "b"), ("c", "c"), ("d", "e"), ("f", "f")]
    # a key of another experiment in between: never inside a range, whatever the parts
    assert split_ranges(list("abdef"), order, 1) == [("a", "b"), ("d", "f")]
    assert split_ranges(list("ab"), order, 5) == [("a", "a"), ("b", "b")]


def test_celery_settings_travel_to_other_processes_and_bad_values_are_named(tmp_path):
    env = {"TRACER_DATA_DIR": str(tmp_path), "TRACER_EXECUTOR": "celery",
           "TRACER_CELERY_BROKER": "redis://queue:6379/0", "TRACER_GPU_POOL_SIZE": "4"}
    settings = Settings.resolve(environ=env)
    assert (settings.celery_broker, settings.celery_backend, settings.gpu_pool_size) == (
        "redis://queue:6379/0", "redis://queue:6379/0", 4)
    assert Settings.resolve(environ=settings.environment()) == settings
    with pytest.raises(SettingsError, match="TRACER_GPU_POOL_SIZE"):
        Settings.resolve(environ={**env, "TRACER_GPU_POOL_SIZE": "0"})
    with pytest.raises(SettingsError, match="unknown executor 'dask'"):
        Settings.resolve(environ={**env, "TRACER_EXECUTOR": "dask"})


def test_the_executor_is_the_one_the_settings_name(settings):
    assert build_executor(settings) is dg.in_process_executor
    pytest.importorskip("dagster_celery", reason="the cluster extra is not installed (pip install -e '.[cluster]')")
    celery = build_executor(dataclasses.replace(settings, executor="celery", celery_broker="redis://q:1/0",
                                                celery_backend="redis://q:1/1"))
    assert celery.name == "celery"
    config = celery.config_schema.resolve_config({}).value["config"]
    assert (config["broker"], config["backend"]) == ("redis://q:1/0", "redis://q:1/1")


def test_a_worker_runs_one_step_at_a_time_on_its_gpu_with_the_settings(settings):
    pytest.importorskip("dagster_celery", reason="the cluster extra is not installed (pip install -e '.[cluster]')")
    from tracer_pipeline.defs.workers import worker_command

    argv, env = worker_command(settings, gpu=1)
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--hostname") + 1].startswith("gpu1@")
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["TRACER_DB_URL"] == settings.db_url


def test_models_stay_loaded_in_the_process_after_a_dagster_run(settings, resources, instance):
    """A worker runs step after step: the second step must find the first step's models loaded."""
    from tracer_pipeline.defs import build_defs
    from tracer_pipeline.defs.registration import register_experiment

    trace = resources["store"].get_store()
    key = register_experiment(trace, instance, parse_experiment(CONFIG, "q.json")).partition_keys[0]
    job = build_defs(settings).resolve_job_def("trace")
    assert job.execute_in_process(instance=instance, partition_key=key).success
    config = resources["models"].model_dump()
    pool = ModelPoolResource(**config).get_pool()  # what the next step's resource gets
    assert {"DummyT2I", "DummyI2T", "DummyEmbed"} <= set(pool.loaded)
    assert pool.get("DummyT2I") is ModelPoolResource(**config).get_pool().get("DummyT2I")


def test_launch_submits_ranges_with_the_settings_and_says_when_no_daemon_runs_them(settings, monkeypatch):
    from tracer_pipeline.cli import launcher as launcher_module
    from tracer_pipeline.store import TraceStore

    launcher = launcher_module.Launcher(settings)
    store = TraceStore(settings.db_url)
    keys = launcher.register(store, parse_experiment(CONFIG, "q.json")).partition_keys
    submitted = launcher.launch(keys, "queued", dagster_runs=2)
    runs = [launcher.instance.get_run_by_id(r) for r in submitted]
    assert [r.status for r in runs] == [dg.DagsterRunStatus.QUEUED] * 2
    assert [dict(r.tags).items() >= range_tags(a, b).items() for r, (a, b) in
            zip(runs, [(keys[0], keys[1]), (keys[2], keys[2])], strict=True)] == [True, True]
    # The run carries this process's settings: a daemon or worker elsewhere does not use its own.
    assert runs[0].run_config["resources"]["store"]["config"]["db_url"] == settings.db_url
    assert launcher.instance.event_log_storage.get_concurrency_info("gpu").slot_count == settings.gpu_pool_size
    monkeypatch.setattr(launcher_module, "DAEMON_GRACE_S", 0.5)
    with pytest.raises(launcher_module.LaunchError, match="no dagster-daemon is running"):
        launcher.follow(submitted)
    store.close()


def test_dagster_runs_without_launch_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from tracer_pipeline.cli import cli

    config = tmp_path / "q.json"
    config.write_text(json.dumps(CONFIG))
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "run-experiment", str(config),
                                      "--dagster-runs", "2"])
    assert result.exit_code == 2 and "--dagster-runs only applies with --launch" in result.output
