"""The code location built from a Settings object, alone, and the boundary of the Dagster wing."""

import json
import subprocess
import sys

import dagster as dg

from tracer_pipeline.defs import build_defs
from tracer_pipeline.settings import Settings


def test_the_definitions_load_from_settings_alone(settings):
    (settings.experiments_dir / "nightly.json").write_text(json.dumps({
        "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "prompts": ["a red balloon"],
        "embedding_models": ["DummyEmbed"], "max_length": 3, "seed_schedule": {"cron": "0 3 * * *", "new_seeds": 1},
    }))
    defs = build_defs(settings)
    dg.Definitions.validate_loadable(defs)
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"trace", "report"}
    assert {s.name for s in defs.sensors} == {"experiments_sensor", "reports_sensor"}
    assert [s.name for s in defs.schedules] == ["seeds_nightly"]
    assert defs.resources["store"].db_url == settings.db_url
    assert defs.resources["models"].device == "cpu"
    assert defs.resources["folders"].experiments_dir == str(settings.experiments_dir)


def test_settings_come_from_flags_then_environment_then_defaults(tmp_path):
    env = {"TRACER_DATA_DIR": str(tmp_path / "env"), "TRACER_DEVICE": "cuda:1", "TRACER_TORCH_THREADS": "2"}
    from_env = Settings.resolve(environ=env)
    assert from_env.data_dir == tmp_path / "env"
    assert from_env.db_url == f"sqlite:///{tmp_path / 'env' / 'tracer.sqlite'}"
    assert from_env.dagster_home == tmp_path / "env" / "dagster_home"
    assert (from_env.device, from_env.torch_threads, from_env.executor) == ("cuda:1", 2, "in_process")
    flagged = Settings.resolve(data_dir=tmp_path / "flag", device="cpu", environ=env)
    assert flagged.data_dir == tmp_path / "flag" and flagged.device == "cpu"
    # Another process resolves the same settings from the environment they hand down.
    assert Settings.resolve(environ=flagged.environment()) == flagged


def test_nothing_outside_the_wing_and_the_launcher_imports_dagster():
    plain = ["tracer_pipeline.cli", "tracer_pipeline.tracing.invocations", "tracer_pipeline.tracing.embeddings",
             "tracer_pipeline.tracing.diagrams", "tracer_pipeline.tracing.checks", "tracer_pipeline.tracing.progress",
             "tracer_pipeline.reporting.report", "tracer_pipeline.reporting.gather", "tracer_pipeline.exports",
             "tracer_pipeline.store", "tracer_pipeline.models.registry", "tracer_pipeline.settings"]
    code = f"import sys; [__import__(m) for m in {plain!r}]; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
