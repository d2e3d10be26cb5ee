"""The module ``celery -A`` loads in a worker (see :func:`tracer_pipeline.defs.workers.worker_command`,
which passes the settings in the worker's environment)."""

from tracer_pipeline.defs.workers import celery_app
from tracer_pipeline.settings import Settings

app = celery_app(Settings.resolve())
