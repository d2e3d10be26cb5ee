"""The SceneWorld grammar, renderer and tokenizer: what a caption says, what a scene looks like."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.sceneworld.grammar import (
    Scene,
    SceneObject,
    canonical_caption,
    caption_matches,
    caption_matches_exactly,
    is_held_out,
    parse_caption,
    random_scene,
    scene_from_caption,
    varied_caption,
)
from tracer_pipeline.sceneworld.render import RGB, jitter_from_seed, render
from tracer_pipeline.sceneworld.tokenizer import WordTokenizer

TWO = Scene((SceneObject("square", "blue", "small", "top"),
             SceneObject("circle", "red", "large", "left")))


def test_canonical_caption_orders_objects_by_position() -> None:
    assert canonical_caption(TWO) == "a large red circle on the left and a small blue square at the top"


def test_scene_rejects_what_the_grammar_cannot_draw() -> None:
    with pytest.raises(ValueError, match="share a position"):
        Scene((SceneObject("star", "red", "small", "left"), SceneObject("star", "red", "small", "left")))
    with pytest.raises(ValueError, match="not in the SceneWorld grammar"):
        Scene((SceneObject("hexagon", "red", "small", "left"),))


def test_every_varied_caption_parses_back_to_its_scene() -> None:
    rng = np.random.default_rng(0)
    captions = set()
    for _ in range(300):
        scene = random_scene(rng, held_out=None)
        caption = varied_caption(scene, rng)
        captions.add(caption)
        assert scene_from_caption(caption) == scene, caption
    assert len(captions) == 300  # the template family varies, so models must generalise


def test_parser_reads_synonyms_word_order_and_position_first_clauses() -> None:
    objects = parse_caption("a picture of a violet little disc in the middle, "
                            "and at the top there is a scarlet huge plus")
    assert [(o.shape, o.colour, o.size, o.position) for o in objects] == [
        ("circle", "purple", "small", "centre"), ("cross", "red", "large", "top")]


def test_scoring_needs_every_shape_and_colour_and_nothing_else() -> None:
    assert caption_matches("a big red disc and a tiny blue box", TWO)
    assert not caption_matches("a big red disc", TWO)  # the second object is dropped
    assert not caption_matches("a big red disc and a tiny purple box", TWO)  # wrong colour
    assert not caption_matches("a red disc, a blue box and a green star", TWO)  # one too many
    assert caption_matches("a red circle at the top and a blue square on the left", TWO)
    assert not caption_matches_exactly("a red circle at the top and a blue square on the left", TWO)


def test_unknown_words_are_ignored_by_the_parser() -> None:
    assert parse_caption("a photograph of a cat") == []
    assert [o.shape for o in parse_caption("a lovely red star beside nothing")] == ["star"]


def test_held_out_split_is_a_fixed_eighth_of_scenes() -> None:
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng, held_out=None) for _ in range(2000)]
    share = np.mean([is_held_out(s) for s in scenes])
    assert 0.09 < share < 0.16
    assert not any(is_held_out(random_scene(rng, held_out=False)) for _ in range(100))
    assert all(is_held_out(random_scene(rng, held_out=True)) for _ in range(20))


def test_renderer_draws_each_object_in_its_colour_at_its_place() -> None:
    image = np.asarray(render(TWO))
    assert image.shape == (64, 64, 3)
    assert tuple(image[32, 13]) == RGB["red"]  # large circle centred on the left slot
    assert tuple(image[13, 32]) == RGB["blue"]  # small square at the top
    assert tuple(image[50, 50]) == (128, 128, 128)  # background elsewhere


def test_jitter_is_seeded_and_small() -> None:
    a, b = render(TWO, jitter_from_seed(3)), render(TWO, jitter_from_seed(3))
    assert a.tobytes() == b.tobytes()
    c = np.asarray(render(TWO, jitter_from_seed(4)), dtype=int)
    plain = np.asarray(render(TWO), dtype=int)
    assert 0 < np.mean(np.abs(c - plain).sum(axis=2) > 60) < 0.05


def test_tokenizer_round_trips_captions_and_marks_unknown_words() -> None:
    tokenizer = WordTokenizer.for_grammar()
    caption = canonical_caption(TWO).replace(" and", ", and")
    ids = tokenizer.encode(caption)
    assert len(ids) == tokenizer.context_length
    assert tokenizer.decode(ids[1:]) == caption
    assert tokenizer.encode("a zebra")[:4] == [tokenizer.bos_id, tokenizer.ids["a"], tokenizer.unk_id,
                                              tokenizer.eos_id]
    long = " ".join(["red"] * 100)
    assert tokenizer.encode(long)[-1] == tokenizer.eos_id
