"""Test-wide settings: offline, a throwaway data directory, one cache of built tiny models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tracer_pipeline.settings import Settings

# No test may reach a model hub: real-model tests check the clear offline error instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRACER_DEVICE", "cpu")
# Tiny models are built once and shared by every test, subprocess and later session: builds are
# atomic and their folders carry the model's version, so a shared cache cannot go stale.
os.environ.setdefault("TRACER_MODEL_DIR", str(Path(tempfile.gettempdir()) / "tracer-test-models"))
# Under pytest-xdist (`make test` runs two workers) torch keeps to one thread per worker, and so
# do the subprocesses a worker starts, so that the workers do not fight over the cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a fresh data directory and experiments folder, on CPU, for one test."""
    (tmp_path / "experiments").mkdir()
    return Settings.resolve(data_dir=tmp_path / "data", environ={
        "TRACER_DEVICE": "cpu", "TRACER_MODEL_DIR": os.environ["TRACER_MODEL_DIR"],
        "TRACER_EXPERIMENTS_DIR": str(tmp_path / "experiments"),
    })


@pytest.fixture
def resources(settings: Settings) -> dict:
    """The resources the definitions would get from ``settings``."""
    from tracer_pipeline.defs.resources import build_resources

    return build_resources(settings)


@pytest.fixture
def instance():
    """A temporary Dagster instance on SQLite (concurrency pools are enforced, unlike an ephemeral one)."""
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on loopback for the whole session (tests create their own databases)."""
    from tracer_pipeline_tests.servers import start_postgres

    server = start_postgres()
    if isinstance(server, str):
        pytest.skip(f"no PostgreSQL server: {server}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server on loopback for the whole session."""
    from tracer_pipeline_tests.servers import start_redis

    server = start_redis()
    if isinstance(server, str):
        pytest.skip(f"no Redis server: {server}")
    yield server
    server.stop()
