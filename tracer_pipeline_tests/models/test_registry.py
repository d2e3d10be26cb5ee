"""The registry's entries, offline weight resolution and its errors, and the shared plumbing
(failure isolation, atomic tiny builds, thread settings). None of these load a torch model."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tracer_pipeline.errors import ModelLoadError, SettingsError, WeightsNotFoundError
from tracer_pipeline.models.base import Family, LoadOptions, ModelFailure, ModelKind
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.models.runtime import run_items
from tracer_pipeline.models.tiny import TinyWeights
from tracer_pipeline.models.weights import HubWeights
from tracer_pipeline.settings import Settings
from tracer_pipeline_tests.models.specs import LOCAL, REAL, SPECS


def test_importing_the_registry_does_not_import_the_model_libraries() -> None:
    code = ("import sys, tracer_pipeline.models.registry; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'open_clip') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_real_and_tiny_twins_are_registered_with_what_they_are() -> None:
    expected = {
        "SDTurbo": (ModelKind.TEXT_TO_IMAGE, Family.REAL),
        "SDXLTurbo": (ModelKind.TEXT_TO_IMAGE, Family.REAL),
        "FluxSchnell": (ModelKind.TEXT_TO_IMAGE, Family.REAL),
        "BLIP": (ModelKind.IMAGE_TO_TEXT, Family.REAL),
        "Florence2": (ModelKind.IMAGE_TO_TEXT, Family.REAL),
        "CLIP-ViT-B-32": (ModelKind.EMBEDDING, Family.REAL),
        "CLIP-ViT-L-14": (ModelKind.EMBEDDING, Family.REAL),
        "TinySD": (ModelKind.TEXT_TO_IMAGE, Family.TINY),
        "TinySDXL": (ModelKind.TEXT_TO_IMAGE, Family.TINY),
        "TinyFlux": (ModelKind.TEXT_TO_IMAGE, Family.TINY),
        "TinyBLIP": (ModelKind.IMAGE_TO_TEXT, Family.TINY),
        "TinyFlorence2": (ModelKind.IMAGE_TO_TEXT, Family.TINY),
        "TinyCLIP": (ModelKind.EMBEDDING, Family.TINY),
    }
    for name, (kind, family) in expected.items():
        spec = get_model(name)
        assert (spec.kind, spec.family) == (kind, family), name
    assert get_model("clip-vit-base-patch32").name == "CLIP-ViT-B-32"
    assert get_model("SDTurbo").params == {"steps": 1, "guidance": 0.0, "size": 512}
    assert get_model("FluxSchnell").params["steps"] == 4
    assert get_model("CLIP-ViT-L-14").params["pretrained"] == "laion2b_s32b_b82k"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.family is Family.TINY], ids=lambda spec: spec.name)
def test_tiny_models_say_their_outputs_are_noise(spec) -> None:
    assert "noise" in spec.description


@pytest.fixture
def offline_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadOptions:
    """An empty model directory and an empty Hugging Face cache."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return LoadOptions(model_dir=tmp_path / "models")


@pytest.mark.parametrize("name", REAL)
def test_a_real_model_without_weights_fails_at_once_saying_where_it_looked(
        name: str, offline_dirs: LoadOptions) -> None:
    spec = get_model(name)
    assert spec.weights_available(offline_dirs) is False
    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as caught:
        ModelPool(offline_dirs).get(name)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert name in message
    assert spec.source in message  # the repository id
    assert str(offline_dirs.model_dir / spec.source) in message
    assert str(offline_dirs.model_dir.parent / "hf-cache") in message
    assert f"hf download {spec.source}" in message


def test_weights_are_found_in_the_model_directory(offline_dirs: LoadOptions) -> None:
    weights = HubWeights("org/model", (("config.json",), ("model.safetensors", "pytorch_model.bin")))
    spec = get_model("BLIP")
    folder = offline_dirs.model_dir / "org" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert not weights.available(offline_dirs)
    with pytest.raises(WeightsNotFoundError, match="exists, but lacks model.safetensors or "
                                                   "pytorch_model.bin"):
        weights.locate(spec, offline_dirs)
    (folder / "pytorch_model.bin").write_bytes(b"")
    assert weights.available(offline_dirs)
    assert weights.locate(spec, offline_dirs) == folder


def test_weights_are_found_in_the_hugging_face_cache(offline_dirs: LoadOptions) -> None:
    weights = HubWeights("org/model", (("model_index.json",),))
    repo = offline_dirs.model_dir.parent / "hf-cache" / "models--org--model"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert not weights.available(offline_dirs)
    (snapshot / "model_index.json").write_text("{}")
    assert weights.locate(get_model("SDTurbo"), offline_dirs) == snapshot


def test_two_builders_racing_for_a_tiny_model_end_with_one_complete_copy(tmp_path: Path) -> None:
    calls: list[int] = []

    def build(directory: Path) -> None:
        calls.append(1)
        time.sleep(0.2)  # both builders are inside build() at the same time
        (directory / "model.bin").write_text("weights")

    weights = TinyWeights(build)
    options = LoadOptions(model_dir=tmp_path)
    spec = get_model("TinySD")
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(weights.locate(spec, options)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    target = tmp_path / "tiny" / f"TinySD-v{spec.version}"
    assert found == [target, target]
    assert (target / "model.bin").read_text() == "weights"
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == [target.name]  # no leftovers
    weights.locate(spec, options)
    assert len(calls) == 2  # each racer built its own copy; once one is in place, none is built


def test_a_failing_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def build(directory: Path) -> None:
        (directory / "half.bin").write_text("half")
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        TinyWeights(build).locate(get_model("TinySD"), LoadOptions(model_dir=tmp_path))
    assert list((tmp_path / "tiny").iterdir()) == []


def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    batches: list[list[str]] = []

    def call(items: list[str], seeds: list[int]) -> list[str | ModelFailure]:
        batches.append(items)
        if "bad" in items:
            raise ValueError("cannot do bad")
        return [f"{x}/{s}" for x, s in zip(items, seeds, strict=True)]

    results = run_items(call, ["a", "bad", "c"], [1, 2, 3], one_at_a_time=False)
    assert results[0] == "a/1" and results[2] == "c/3"
    assert results[1] == ModelFailure("ValueError", "cannot do bad")
    assert batches == [["a", "bad", "c"], ["a"], ["bad"], ["bad"], ["bad"], ["c"]]  # bad: tried 1 + 2 retries
    assert run_items(call, ["a", "c"], [1, 3], one_at_a_time=False) == ["a/1", "c/3"]
    assert batches[-1] == ["a", "c"]  # a good batch is one call


def test_torch_threads_setting_and_option() -> None:
    assert Settings.resolve(environ={}).torch_threads == 1
    assert Settings.resolve(environ={"TRACER_TORCH_THREADS": "0"}).torch_threads == 0
    with pytest.raises(SettingsError, match="TRACER_TORCH_THREADS"):
        Settings.resolve(environ={"TRACER_TORCH_THREADS": "two"})
    assert resolve_load_options("cpu", torch_threads=3).torch_threads == 3
    assert resolve_load_options("cpu").torch_threads == 1
    with pytest.raises(ModelLoadError, match="torch_threads"):
        resolve_load_options("cpu", torch_threads=-1)


def test_every_local_model_is_available_without_downloads(offline_dirs: LoadOptions) -> None:
    assert LOCAL and all(spec.weights_available(offline_dirs) for spec in LOCAL)
