"""Prompts as people write them: read into scenes, with what they leave out drawn by the seed."""

from __future__ import annotations

import json

import numpy as np

from tracer_pipeline.sceneworld.grammar import (
    Scene,
    SceneObject,
    canonical_caption,
    random_scene,
    varied_caption,
)
from tracer_pipeline.sceneworld.models import TOKENIZER_FILE, WEIGHTS_DIR
from tracer_pipeline.sceneworld.prompts import (
    FILLERS_TRAIN,
    HAND_WRITTEN_PROMPTS,
    freeform_prompt,
    is_held_out_prompt,
    prompt_caption,
    prompt_objects,
    prompt_scene,
)
from tracer_pipeline.sceneworld.tokenizer import WordTokenizer


def test_captions_of_the_template_family_are_read_as_they_are_whatever_the_seed() -> None:
    rng = np.random.default_rng(0)
    for i in range(200):
        scene = random_scene(rng, held_out=None)
        assert prompt_scene(varied_caption(scene, rng), seed=i) == scene
        assert prompt_caption(canonical_caption(scene), seed=i) == canonical_caption(scene)


def test_unknown_and_extra_words_are_ignored() -> None:
    for seed in range(5):
        plain = prompt_scene("a red circle", seed)
        assert prompt_scene("a red zorblax circle floating in the sky, very pretty", seed) == plain
        assert prompt_scene("A RED CIRCLE!", seed) == plain


def test_attributes_left_out_are_drawn_by_the_seed_deterministically() -> None:
    scenes = [prompt_scene("a circle", seed) for seed in range(40)]
    assert scenes == [prompt_scene("a circle", seed) for seed in range(40)]  # same seed, same scene
    assert all(len(s.objects) == 1 and s.objects[0].shape == "circle" for s in scenes)
    assert {s.objects[0].size for s in scenes} == {"small", "large"}
    assert len({s.objects[0].colour for s in scenes}) >= 6
    assert len({s.objects[0].position for s in scenes}) == 5


def test_what_a_prompt_names_is_kept_and_naming_more_changes_nothing_else() -> None:
    for seed in range(20):
        [red] = prompt_scene("a red circle", seed).objects
        [small] = prompt_scene("a small red circle", seed).objects
        assert (red.shape, red.colour) == ("circle", "red") and small.size == "small"
        assert small.position == red.position  # the seed draws the same place either way
        assert prompt_scene("a blue square on the left", seed).objects[0].position == "left"


def test_synonyms_numbers_and_several_objects() -> None:
    assert prompt_scene("a crimson ball next to a navy box at the top", 3) == prompt_scene(
        "a red circle and a blue square at the top", 3)
    two = prompt_scene("two golden stars", 1)
    assert [(o.shape, o.colour) for o in two.objects] == [("star", "yellow")] * 2
    assert len({o.position for o in two.objects}) == 2
    assert len(prompt_scene("a star, a cross, a disc and a box", 0).objects) == 3  # at most three
    clash = prompt_scene("a red star on the left and a blue cross on the left", 0)
    assert sorted(o.position == "left" for o in clash.objects) == [False, True]  # one moves


def test_a_prompt_naming_no_shape_is_one_object_drawn_by_the_seed_keeping_its_words() -> None:
    assert prompt_objects("a cat sleeping on a red sofa") == [
        {"shape": None, "colour": "red", "size": None, "position": None}]
    scenes = [prompt_scene("a cat sleeping on a red sofa", seed) for seed in range(10)]
    assert all(len(s.objects) == 1 and s.objects[0].colour == "red" for s in scenes)
    assert len({s.objects[0].shape for s in scenes}) > 1
    assert prompt_scene("", 0) == prompt_scene("nothing i know", 0)


def test_prompt_caption_is_a_canonical_caption_in_the_captioners_vocabulary() -> None:
    tokenizer = WordTokenizer.load(WEIGHTS_DIR / TOKENIZER_FILE)
    caption = prompt_caption("an emerald pyramid beneath a lilac orb", 0)
    assert tokenizer.unk_id not in tokenizer.encode(caption)
    assert prompt_scene(caption, 99) == prompt_scene("an emerald pyramid beneath a lilac orb", 0)


def test_the_wider_lexicon_leaves_the_captions_vocabulary_as_shipped() -> None:
    shipped = json.loads((WEIGHTS_DIR / TOKENIZER_FILE).read_text())["tokens"]
    assert WordTokenizer.for_grammar().tokens == shipped


def test_held_out_prompts_are_the_hand_written_ones_and_an_eighth_by_hash() -> None:
    assert all(is_held_out_prompt(p) for p in HAND_WRITTEN_PROMPTS)
    assert is_held_out_prompt("A red circle!")  # the same words
    rng = np.random.default_rng(2)
    prompts = [freeform_prompt(random_scene(rng), rng, FILLERS_TRAIN) for _ in range(800)]
    assert 0.08 < np.mean([is_held_out_prompt(p) for p in prompts]) < 0.18


def test_freeform_prompts_leave_attributes_out_and_still_name_every_shape() -> None:
    rng = np.random.default_rng(3)
    scene = Scene((SceneObject("star", "red", "small", "left"), SceneObject("cross", "blue", "large", "top")))
    prompts = [freeform_prompt(scene, rng, FILLERS_TRAIN) for _ in range(60)]
    assert all(sorted(o["shape"] for o in prompt_objects(p)) == ["cross", "star"] for p in prompts)
    objects = [o for p in prompts for o in prompt_objects(p)]
    assert any(o["size"] is None for o in objects) and any(o["position"] is None for o in objects)
    assert any(o["colour"] is None for o in objects)
    assert all(o["colour"] in (None, "red", "blue") for o in objects)
