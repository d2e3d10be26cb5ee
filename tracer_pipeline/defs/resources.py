"""Dagster resources: the trace store, the model pool and the data folders, built from :class:`Settings`."""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from tracer_pipeline.models.base import CallPolicy
from tracer_pipeline.models.pool import ModelPool, memory_budget, resolve_load_options
from tracer_pipeline.settings import Settings, reports_dir, sceneworld_dir
from tracer_pipeline.store import TraceStore


class TraceStoreResource(dg.ConfigurableResource):
    """The trace store at ``db_url`` (any SQLAlchemy URL; SQLite by default)."""

    db_url: str

    _store: TraceStore | None = PrivateAttr(default=None)

    def get_store(self) -> TraceStore:
        if self._store is None:
            self._store = TraceStore(self.db_url)
        return self._store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


# One pool per process and load options, kept for as long as the process lives: a Celery worker
# runs step after step, and the resource of each step would otherwise load every model again.
_POOLS: dict[tuple, ModelPool] = {}


class ModelPoolResource(dg.ConfigurableResource):
    """Loads models lazily, once per process: for a whole Dagster run (in-process executor), or
    for as long as a worker lives (celery executor), whatever the step.

    ``device``: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. ``dtype``: auto
    (float16 on CUDA, float32 on CPU), float32, float16 or bfloat16. ``model_dir``: where tiny
    models are built and real weights may be placed. ``trust_remote_code``: model names allowed
    to run code from their repositories (off for all by default). ``torch_threads``: torch's CPU
    thread count (fixed, default 1, because CPU outputs depend on it; 0 = torch's default).
    ``timeout_s`` (0: none) and ``retries``: the limits of every model call. ``memory_gb``: the
    pool's memory budget (unset: 80 % of the GPU's memory, half the machine's on CPU).
    """

    device: str = "auto"
    dtype: str = "auto"
    model_dir: str
    trust_remote_code: list[str] = []
    torch_threads: int = 1
    timeout_s: float = 600.0
    retries: int = 2
    memory_gb: float | None = None

    def get_pool(self) -> ModelPool:
        key = (self.device, self.dtype, self.model_dir, frozenset(self.trust_remote_code), self.torch_threads,
               self.timeout_s, self.retries, self.memory_gb)
        if key not in _POOLS:
            # Resolved when a model that is not a dummy loads: "auto" imports torch to look for CUDA.
            _POOLS[key] = ModelPool(
                functools.partial(resolve_load_options, self.device, self.dtype, self.model_dir,
                                  frozenset(self.trust_remote_code), self.torch_threads),
                CallPolicy(self.timeout_s or None, self.retries),
                lambda options: memory_budget(options.device, self.memory_gb))
        return _POOLS[key]


class DataFoldersResource(dg.ConfigurableResource):
    """Where reports and retrained models are written, and which folder holds experiment configs."""

    data_dir: str
    experiments_dir: str

    def reports_dir(self, experiment: str) -> Path:
        return reports_dir(Path(self.data_dir), experiment)

    def sceneworld_dir(self, seed: int) -> Path:
        return sceneworld_dir(Path(self.data_dir), seed)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset, sensor and schedule uses, configured from ``settings``."""
    return {
        "store": TraceStoreResource(db_url=settings.db_url),
        "models": ModelPoolResource(
            device=settings.device, dtype=settings.dtype, model_dir=str(settings.model_dir),
            trust_remote_code=list(settings.trust_remote_code), torch_threads=settings.torch_threads,
            timeout_s=settings.model_timeout_s, retries=settings.model_retries, memory_gb=settings.model_memory_gb,
        ),
        "folders": DataFoldersResource(data_dir=str(settings.data_dir),
                                       experiments_dir=str(settings.experiments_dir)),
    }
