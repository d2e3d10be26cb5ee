"""Retraining is reproducible: the same seed trains the same bytes (on a tiny schedule here;
the full schedule is `python -m tracer_pipeline.sceneworld.train`, recorded in BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer_pipeline.sceneworld import train
from tracer_pipeline.sceneworld.models import TOKENIZER_FILE, weight_files
from tracer_pipeline.sceneworld.tokenizer import WordTokenizer


@pytest.fixture
def tiny_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "SCHEDULE", {name: (3, 4, 1e-3) for name in train.MODELS})


def _train_twice(tmp_path: Path) -> tuple[Path, Path]:
    dirs = tmp_path / "a", tmp_path / "b"
    for directory in dirs:
        tokenizer = WordTokenizer.for_grammar()
        directory.mkdir()
        tokenizer.save(directory / TOKENIZER_FILE)
        for name in train.MODELS:
            train.TRAINERS[name](directory, 0, tokenizer)
    return dirs


def test_same_seed_trains_identical_weights(tmp_path: Path, tiny_schedule: None) -> None:
    a, b = _train_twice(tmp_path)
    for name in train.MODELS:
        weights, config = weight_files(name)
        assert (a / weights).read_bytes() == (b / weights).read_bytes(), name
        assert (a / config).read_text() == (b / config).read_text()


def test_the_cycle_generator_needs_the_supervised_generator_and_captioner_first(tmp_path: Path,
                                                                               tiny_schedule: None) -> None:
    from tracer_pipeline.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="generator.safetensors"):
        train.train_generator_cycle(tmp_path, 0, WordTokenizer.for_grammar())


def test_the_cycle_generator_starts_from_the_supervised_one_and_moves(tmp_path: Path, tiny_schedule: None) -> None:
    from safetensors.torch import load_file

    a, _ = _train_twice(tmp_path)
    supervised = load_file(str(a / weight_files("generator")[0]))
    cycle = load_file(str(a / weight_files("generator_cycle")[0]))
    assert set(cycle) == set(supervised) | {"slot_log_variance.weight", "slot_log_variance.bias"}
    assert any(not (cycle[k] == supervised[k]).all() for k in supervised)  # fine-tuned, not copied


def test_the_cycle_generator_never_trains_on_held_out_scenes() -> None:
    from tracer_pipeline.sceneworld.grammar import is_held_out, scene_from_caption

    tokenizer = WordTokenizer.for_grammar()
    _, _, tokens, _ = train._PromptBatches(0, 4, tokenizer)(48)
    scenes = [scene_from_caption(tokenizer.decode(row[1:].tolist())) for row in tokens]
    assert all(scene is not None and not is_held_out(scene) for scene in scenes)


def test_scene_clip_trains_against_captions_that_differ_only_in_one_attribute() -> None:
    from tracer_pipeline.sceneworld.grammar import is_held_out, scene_from_caption

    tokenizer = WordTokenizer.for_grammar()
    images, tokens, negatives = train._ClipBatches(0, 2, tokenizer)(32)
    assert images.shape == (32, 3, 64, 64) and negatives.shape == (32, 4, tokens.shape[1])
    changed_kinds = []
    for own, others in zip(tokens, negatives, strict=True):
        scene = scene_from_caption(tokenizer.decode(own[1:].tolist()))
        assert scene is not None and not is_held_out(scene)
        kinds = []
        for row in others:
            other = scene_from_caption(tokenizer.decode(row[1:].tolist()))
            assert other is not None and other != scene and not is_held_out(other)
            a, b = set(scene.objects), set(other.objects)
            if len(a - b) == len(b - a) == 1:  # one object changed: in which attributes?
                [x], [y] = a - b, b - a
                kinds.append(tuple(k for k in ("shape", "colour", "size", "position")
                                   if getattr(x, k) != getattr(y, k)))
            else:
                kinds.append(None)
        changed_kinds.append(kinds)
    # Two shape negatives, one colour, one size or position: each changes one attribute only
    # (a random training scene stands in, rarely, when every variant is held out).
    assert all(k[0] == k[1] == ("shape",) and k[2] == ("colour",) for k in changed_kinds)
    assert sum(k[3] in (("size",), ("position",)) for k in changed_kinds) >= 30
    assert not (images[0] == images[1]).all()


def test_the_retraining_asset_trains_once_then_keeps_what_it_trained(tiny_schedule, monkeypatch, instance, resources,
                                                                    settings):
    import functools

    import dagster as dg

    from tracer_pipeline.defs.assets.sceneworld import sceneworld_models
    from tracer_pipeline.sceneworld import evaluate

    # A smaller held-out measurement: the full one is the benchmark in BENCHMARKS.md.
    monkeypatch.setattr(evaluate, "evaluate", functools.partial(
        evaluate.evaluate, captions=8, generations=4, retrieval_groups=1, timing_items=2))
    run_config = {"ops": {"sceneworld_models": {"config": {"seed": 3}}}}
    folders = {"folders": resources["folders"]}
    first = dg.materialize([sceneworld_models], instance=instance, run_config=run_config, resources=folders)
    second = dg.materialize([sceneworld_models], instance=instance, run_config=run_config, resources=folders)
    [a], [b] = (r.get_asset_materialization_events() for r in (first, second))
    assert a.materialization.metadata["skipped_already_trained"].value is False
    assert b.materialization.metadata["skipped_already_trained"].value is True
    assert a.materialization.tags["dagster/data_version"] == b.materialization.tags["dagster/data_version"]
    folder = settings.sceneworld_dir(3)
    assert all((folder / weight_files(name)[0]).exists() for name in train.MODELS)
    assert "clip_top1" in a.materialization.metadata["quality"].value
