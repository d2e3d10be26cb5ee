"""Celery workers for Dagster steps (the ``celery`` executor): the executor the code location
uses, and the Celery app and command line a worker runs. Both are built from one
:class:`Settings`, so the side that sends steps and the side that runs them agree on the broker.

A worker runs one step at a time (``--concurrency 1``) and keeps its models loaded for as long as
it lives (see :class:`tracer_pipeline.defs.resources.ModelPoolResource`). With one worker per GPU,
each started with that GPU alone visible (``CUDA_VISIBLE_DEVICES``), ``device: auto`` on every
worker means its own GPU, and the ``gpu`` pool (``Settings.gpu_pool_size``) lets as many
model-running steps run at once as there are GPU workers.
"""

from __future__ import annotations

import os
import socket
import sys

import dagster as dg

from tracer_pipeline.errors import SettingsError
from tracer_pipeline.settings import Settings

WORKER_APP = "tracer_pipeline.defs.worker_app"
CLUSTER_EXTRA = "pip install -e '.[cluster]'"


def _require_celery() -> None:
    try:
        import dagster_celery  # noqa: F401
    except ImportError as exc:
        raise SettingsError(f"the celery executor and workers need the cluster extra: {CLUSTER_EXTRA}") from exc


def celery_executor(settings: Settings) -> dg.ExecutorDefinition:
    """dagster-celery's executor, sending steps to ``settings.celery_broker``."""
    _require_celery()
    from dagster_celery import celery_executor as executor

    return executor.configured({"broker": settings.celery_broker, "backend": settings.celery_backend})


def celery_app(settings: Settings):
    """The Celery app a worker runs: dagster-celery's step task on the settings' broker and backend."""
    _require_celery()
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    app = make_app(CeleryExecutor.for_cli(broker=settings.celery_broker, backend=settings.celery_backend).app_args())
    create_task(app)
    return app


def worker_command(settings: Settings, gpu: int | None = None, name: str | None = None,
                   loglevel: str = "INFO") -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a worker process: one step at a time, the settings
    passed in its environment, and with ``gpu`` only that GPU visible to it."""
    _require_celery()
    name = name or (f"gpu{gpu}" if gpu is not None else "worker")
    argv = [sys.executable, "-m", "celery", "-A", WORKER_APP, "worker", "--concurrency", "1",
            "--prefetch-multiplier", "1", "--queues", "dagster", "--loglevel", loglevel,
            "--hostname", f"{name}@{socket.gethostname()}"]
    env = {**os.environ, **settings.environment()}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return argv, env
