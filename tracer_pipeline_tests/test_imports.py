"""Heavy libraries are imported when they are used, not when the code that could use them loads.

Each check runs in a fresh Python process and reads ``sys.modules`` (or ``-X importtime``) at
its end: torch for SceneWorld, tiny and real models; giotto-ph (and scikit-learn, which it
imports) for H1 and higher persistence diagrams; matplotlib for report figures; numba for the
diagram distances of the store-wide comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "gph", "sklearn", "matplotlib", "numba")
DUMMY = {
    "name": "dummy", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I2", "DummyI2T2"]], "seeds": [1, 2],
    "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 6,
}


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TRACER_DB_URL")}
    env["TRACER_DATA_DIR"] = str(data_dir)
    # The default device: resolving "auto" imports torch to look for CUDA, which dummy models
    # must not need.
    env["TRACER_DEVICE"] = "auto"
    return env


def _python(code: str, data_dir: Path) -> set[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules imported by the time it ends."""
    script = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(data_dir),
                            check=False)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def _cli(data_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m tracer_pipeline.cli ARGS``: its result and the heavy modules it
    imported (importtime names every module on stderr as it is imported)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tracer_pipeline.cli", *args],
                            capture_output=True, text=True, env=_env(data_dir), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    return result, imported & set(HEAVY)


def _trace_script(config: Path) -> str:
    """Register the experiment and materialize its runs' chains (no report), as the CLI does."""
    return f"""
from tracer_pipeline.cli.launcher import Launcher
from tracer_pipeline.config import load_experiment
from tracer_pipeline.settings import Settings
from tracer_pipeline.store import TraceStore
settings = Settings.resolve()
store = TraceStore(settings.db_url)
launcher = Launcher(settings)
experiment = load_experiment({str(config)!r})
registration = launcher.register(store, experiment)
assert not launcher.trace(registration.partition_keys, experiment.name)
assert sum(c["diagrams"] for c in store.counts(registration.run_ids).values()) > 0
"""


def test_loading_the_definitions_imports_no_heavy_library(tmp_path):
    assert _python("import tracer_pipeline.definitions", tmp_path / "data") == set()


@pytest.fixture(scope="module")
def dummy_store(tmp_path_factory) -> tuple[Path, Path]:
    """A dummy experiment run once through the CLI: (data dir, config)."""
    root = tmp_path_factory.mktemp("imports")
    config = root / "dummy.json"
    config.write_text(json.dumps(DUMMY))
    _cli(root / "data", "run-experiment", str(config))
    return root / "data", config


@pytest.mark.parametrize("command", [["list-runs"], ["status"], ["export-data", "--out", "{tmp}/export"]])
def test_commands_that_look_never_import_torch(dummy_store, tmp_path, command):
    data, _ = dummy_store
    result, heavy = _cli(data, *(arg.format(tmp=tmp_path) for arg in command))
    assert result.stdout.strip()
    assert "torch" not in heavy


def test_a_cached_rerun_of_a_dummy_experiment_imports_no_heavy_library(dummy_store):
    data, config = dummy_store
    result, heavy = _cli(data, "run-experiment", str(config))
    assert "(0 new)" in result.stdout and "report: " in result.stdout
    # Nothing changed: no model, no diagram, no comparison kernel, no figure is needed.
    assert heavy == set()


def test_tracing_dummy_runs_imports_giotto_ph_only_for_h1(tmp_path):
    h0_only = tmp_path / "h0.json"
    h0_only.write_text(json.dumps({**DUMMY, "name": "h0", "max_homology_dim": 0}))
    # H0 alone comes from single linkage: no Rips engine at all.
    assert _python(_trace_script(h0_only), tmp_path / "h0") == set()
    with_h1 = tmp_path / "h1.json"
    with_h1.write_text(json.dumps({**DUMMY, "name": "h1"}))
    # H1 needs giotto-ph, which imports scikit-learn; the dummy models still need no torch.
    assert _python(_trace_script(with_h1), tmp_path / "h1") == {"gph", "sklearn"}
