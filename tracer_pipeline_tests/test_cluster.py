"""Beyond one process, on loopback with real servers: PostgreSQL for the trace store and Dagster's
storage, Redis for Celery, two Celery workers and the Dagster daemon, all started here and
stopped by PID. Every experiment's stored outputs must equal those of the plain in-process run on
SQLite (dummy models, so that the machine's two cores suffice)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tracer_pipeline.store import TraceStore
from tracer_pipeline_tests.servers import start_service, stop_service

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "name": "cluster", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [3, 4],
    "prompts": ["a red balloon over the sea"], "embedding_models": ["DummyEmbed"], "max_length": 6,
}
pytest.importorskip("dagster_postgres", reason="the cluster extra is not installed (pip install -e '.[cluster]')")


def stored(url: str) -> dict:
    """Everything the store holds per run, in a form two stores can be compared by."""
    store = TraceStore(url)
    try:
        content = {}
        for run in store.get_runs():
            invocations = store.invocations(run.run_id)
            _, _, vectors = store.trajectory(run.run_id, "DummyEmbed")
            content[run.run_id] = {
                "status": (run.status, run.stop_reason, run.error),
                "invocations": [(i.sequence_number, i.model, i.seed, i.output_sha256, i.output_text, i.error)
                                for i in invocations],
                "embeddings": vectors.tobytes(),
                "diagrams": [(d.embedding_model, d.subset, d.params_hash, d.input_sha256,
                              {k: v.tolist() for k, v in d.points.items()}) for d in store.diagrams([run.run_id])],
            }
        return content
    finally:
        store.close()


def cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tracer_pipeline.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    return out


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "DAGSTER_"))}
    return {**env, "PYTHONPATH": str(ROOT), "TRACER_DATA_DIR": str(data_dir), "TRACER_DEVICE": "cpu",
            "TRACER_MODEL_DIR": os.environ["TRACER_MODEL_DIR"], "TRACER_EXPERIMENTS_DIR": str(data_dir / "experiments")}


def postgres_env(postgres, data_dir: Path) -> dict[str, str]:
    """Fresh databases for both stores, and a Dagster home with deploy/dagster.yaml."""
    home = data_dir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return {**base_env(data_dir), "DAGSTER_HOME": str(home),
            "TRACER_DB_URL": postgres.url(postgres.create_database("trace")),
            "TRACER_DAGSTER_STORAGE_URL": postgres.url(postgres.create_database("dagster"), driver="psycopg2")}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "cluster.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> dict:
    """The experiment run in-process on SQLite: what every other way must store."""
    data = tmp_path_factory.mktemp("sqlite")
    finish(cli(base_env(data), "run-experiment", str(config_file)))
    content = stored(f"sqlite:///{data / 'tracer.sqlite'}")
    assert len(content) == 4 and all(len(c["invocations"]) >= 2 for c in content.values())
    return content


def test_four_run_experiment_processes_on_a_fresh_postgres_store(postgres, config_file, reference, tmp_path):
    """Four processes started together on fresh PostgreSQL stores (trace store and Dagster's) all
    succeed, every invocation is stored once, and the outputs equal SQLite's."""
    env = postgres_env(postgres, tmp_path)
    processes = [cli(env, "run-experiment", str(config_file)) for _ in range(4)]
    for process in processes:
        finish(process)
    assert stored(env["TRACER_DB_URL"]) == reference


def test_launch_on_two_celery_workers(postgres, redis_server, config_file, reference, tmp_path, monkeypatch):
    """`run-experiment --launch` submits the experiment to the queue; the daemon starts the Dagster
    runs, whose steps run on two Celery workers; the outputs equal SQLite's."""
    env = {**postgres_env(postgres, tmp_path), "TRACER_EXECUTOR": "celery",
           "TRACER_CELERY_BROKER": redis_server.url(), "TRACER_GPU_POOL_SIZE": "2"}
    logs = tmp_path / "logs"
    logs.mkdir()
    workers, daemon = [], None
    try:
        for name in ("w1", "w2"):
            workers.append(start_service([sys.executable, "-m", "tracer_pipeline.cli", "worker", "--name", name],
                                         ROOT, env, logs / f"{name}.log"))
        daemon = start_service([sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                               ROOT, env, logs / "daemon.log")
        out = finish(cli(env, "run-experiment", "--launch", str(config_file)))
        assert "submitted 2 Dagster runs" in out
        assert stored(env["TRACER_DB_URL"]) == reference
        monkeypatch.setenv("TRACER_DAGSTER_STORAGE_URL", env["TRACER_DAGSTER_STORAGE_URL"])  # dagster.yaml reads it
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            runs = instance.get_run_records(dg.RunsFilter(tags={"tracer/experiment": "cluster"}))
            assert len(runs) == 3  # two trace runs (launched), the report (in the CLI's process)
            assert {r.dagster_run.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
            ran_on = {entry.dagster_event.engine_event_data.metadata["Celery worker"].value
                       for r in runs if r.dagster_run.job_name == "trace"
                       for entry in instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                       if "Celery worker" in (entry.dagster_event.engine_event_data.metadata or {})}
            assert {w.split("@")[0] for w in ran_on} == {"w1", "w2"}, "both workers ran steps"
    finally:
        if daemon is not None:
            stop_service(daemon, signal.SIGINT)  # the daemon first: it stops taking runs
        for worker in workers:
            stop_service(worker, signal.SIGTERM)  # a worker finishes its step, then exits
