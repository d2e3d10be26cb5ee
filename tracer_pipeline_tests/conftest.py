"""Test-wide settings: offline, a throwaway data directory, one cache of built tiny models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# No test may reach a model hub: real-model tests check the clear offline error instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRACER_DEVICE", "cpu")
# Tiny models are built once and shared by every test, subprocess and later session: builds are
# atomic and their folders carry the model's version, so a shared cache cannot go stale.
os.environ.setdefault("TRACER_MODEL_DIR", str(Path(tempfile.gettempdir()) / "tracer-test-models"))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory (and so a fresh trace store and Dagster home) for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("TRACER_DATA_DIR", str(path))
    monkeypatch.delenv("TRACER_DB_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(path / "dagster_home"))
    return path
