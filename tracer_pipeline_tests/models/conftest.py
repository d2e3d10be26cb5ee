"""The model tests share one CPU model pool: tiny models are built once (in TRACER_MODEL_DIR,
set by the top-level conftest) and loaded once for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracer_pipeline.models.base import LoadOptions
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.settings import Settings


@pytest.fixture(scope="session")
def cpu_options() -> LoadOptions:
    return resolve_load_options("cpu", "auto", Settings.resolve().model_dir, torch_threads=1)


@pytest.fixture(scope="session")
def pool(cpu_options: LoadOptions) -> Iterator[ModelPool]:
    models = ModelPool(cpu_options)
    yield models
    models.release()
