"""Dagster resources: the trace store and the model pool, configured from the environment."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from tracer_pipeline import settings
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.store import TraceStore


class TraceStoreResource(dg.ConfigurableResource):
    """The trace store at ``db_url`` (any SQLAlchemy URL; SQLite by default)."""

    db_url: str

    _store: TraceStore | None = PrivateAttr(default=None)

    @classmethod
    def from_environment(cls) -> TraceStoreResource:
        return cls(db_url=settings.db_url())

    def get_store(self) -> TraceStore:
        if self._store is None:
            self._store = TraceStore(self.db_url)
        return self._store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class ModelPoolResource(dg.ConfigurableResource):
    """Loads models lazily, once per Dagster run (in-process executor), and frees them after.

    ``device``: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. ``dtype``: auto
    (float16 on CUDA, float32 on CPU), float32, float16 or bfloat16. ``model_dir``: where tiny
    models are built and real weights may be placed. ``trust_remote_code``: model names allowed
    to run code from their repositories (off for all by default). ``torch_threads``: torch's CPU
    thread count (fixed, default 1, because CPU outputs depend on it; 0 = torch's default).
    """

    device: str = "auto"
    dtype: str = "auto"
    model_dir: str
    trust_remote_code: list[str] = []
    torch_threads: int = 1

    _pool: ModelPool | None = PrivateAttr(default=None)

    @classmethod
    def from_environment(cls) -> ModelPoolResource:
        return cls(device=settings.device(), dtype=settings.dtype(), model_dir=str(settings.model_dir()),
                   torch_threads=settings.torch_threads())

    def get_pool(self) -> ModelPool:
        if self._pool is None:
            self._pool = ModelPool(resolve_load_options(
                self.device, self.dtype, self.model_dir, frozenset(self.trust_remote_code), self.torch_threads))
        return self._pool

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._pool is not None:
            self._pool.release()
            self._pool = None
