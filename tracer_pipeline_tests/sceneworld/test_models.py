"""The shipped SceneWorld models: registered, loadable offline, right on known scenes, seeded.

The full held-out measurement is `python -m tracer_pipeline.sceneworld.evaluate` (BENCHMARKS.md);
these tests check a few known scenes and the adapter contract.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tracer_pipeline.models.base import Family, ModelFailure, ModelKind, output_digest
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.sceneworld.grammar import Scene, SceneObject, caption_matches
from tracer_pipeline.sceneworld.render import jitter_from_seed, render

KNOWN = [
    Scene((SceneObject("circle", "red", "large", "centre"),)),
    Scene((SceneObject("star", "yellow", "large", "left"), SceneObject("square", "blue", "large", "right"))),
    Scene((SceneObject("triangle", "green", "large", "top"), SceneObject("cross", "white", "small", "centre"),
           SceneObject("diamond", "pink", "large", "bottom"))),
]
PROMPT = "a large red circle on the left and a small blue square at the top"
PROMPT_SCENE = Scene((SceneObject("circle", "red", "large", "left"),
                      SceneObject("square", "blue", "small", "top")))


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool(resolve_load_options(device="cpu"))


def test_the_models_are_registered_as_sceneworld() -> None:
    kinds = {name: get_model(name).kind for name in ("SceneT2I", "SceneT2ISupervised", "SceneI2T", "SceneCLIP")}
    assert kinds == {"SceneT2I": ModelKind.TEXT_TO_IMAGE, "SceneT2ISupervised": ModelKind.TEXT_TO_IMAGE,
                     "SceneI2T": ModelKind.IMAGE_TO_TEXT, "SceneCLIP": ModelKind.EMBEDDING}
    for name in kinds:
        spec = get_model(name)
        assert spec.family is Family.SCENEWORLD
        assert spec.weights_available(resolve_load_options(device="cpu"))


def test_scene_t2i_is_the_cycle_generator_and_the_supervised_one_is_the_baseline() -> None:
    t2i, supervised = get_model("SceneT2I"), get_model("SceneT2ISupervised")
    assert "generator_cycle.safetensors" in t2i.source and t2i.version == "2"
    assert supervised.source.endswith("/generator.safetensors") and supervised.version == "1"
    # The captioner did not change: its stored outputs stay valid.
    assert {get_model(n).version for n in ("SceneI2T", "SceneI2TSampled")} == {"1"}


def test_retrained_scene_clip_and_its_guided_generator_have_new_versions() -> None:
    # SceneCLIP was retrained with hard negatives: embeddings (and CLIPGuided images, which it
    # guides; version 3 also draws them with SceneT2I's decoder) stored under the old weights must be
    # recomputed, not mixed with new ones.
    assert get_model("SceneCLIP").version == "2" and get_model("CLIPGuided").version == "3"


def test_scene_t2i_draws_prompts_as_people_write_them(pool: ModelPool) -> None:
    from tracer_pipeline.sceneworld.prompts import prompt_scene

    t2i, i2t = pool.get("SceneT2I"), pool.get("SceneI2T")
    prompts = ["a red circle", "a small orange star", "a blue square on the left",
               "a crimson ball floating in the sky"]
    images = t2i.generate(prompts * 2, [0] * 4 + [1] * 4)
    captions = [str(c) for c in i2t.generate(images, [0] * 8)]
    drawn = [prompt_scene(p, s) for p, s in zip(prompts * 2, [0] * 4 + [1] * 4, strict=True)]
    assert sum(caption_matches(c, d) for c, d in zip(captions, drawn, strict=True)) >= 6, captions
    assert images[0].tobytes() != images[4].tobytes()  # another seed, another picture
    # Words it does not know and synonyms change nothing: the same scene, the same picture.
    same = t2i.generate(["a scarlet disc, floating in the sky, zorblax"], [0])[0]
    assert same.tobytes() == images[0].tobytes()


def test_importing_the_registry_does_not_import_torch() -> None:
    code = "import sys, tracer_pipeline.models.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_captioner_names_known_scenes(pool: ModelPool) -> None:
    images = [render(scene, jitter_from_seed(i)) for i, scene in enumerate(KNOWN)]
    captions = pool.get("SceneI2T").generate(images, [0] * len(images))
    for caption, scene in zip(captions, KNOWN, strict=True):
        assert isinstance(caption, str)
        assert caption_matches(caption, scene), (caption, scene)


@pytest.mark.parametrize("generator", ["SceneT2I", "SceneT2ISupervised"])
def test_generator_draws_what_the_prompt_says(pool: ModelPool, generator: str) -> None:
    t2i, i2t = pool.get(generator), pool.get("SceneI2T")
    images = t2i.generate([PROMPT] * 3, [0, 1, 2])
    assert all(isinstance(im, Image.Image) and im.size == (64, 64) for im in images)
    captions = i2t.generate(images, [0, 0, 0])
    assert sum(caption_matches(str(c), PROMPT_SCENE) for c in captions) >= 2, captions



def test_generator_is_seeded_per_item_and_batch_equals_one_by_one(pool: ModelPool) -> None:
    t2i = pool.get("SceneT2I")
    batch = t2i.generate([PROMPT, PROMPT, "a small green star at the bottom"], [5, 6, 5])
    alone = [t2i.generate([p], [s])[0] for p, s in
             [(PROMPT, 5), (PROMPT, 6), ("a small green star at the bottom", 5)]]
    assert [output_digest(x) for x in batch] == [output_digest(x) for x in alone]
    assert output_digest(batch[0]) != output_digest(batch[1])  # the seed varies the picture


def test_outputs_are_identical_across_processes(pool: ModelPool) -> None:
    code = (
        "from tracer_pipeline.models.pool import ModelPool, resolve_load_options\n"
        "from tracer_pipeline.models.base import output_digest\n"
        "pool = ModelPool(resolve_load_options(device='cpu'))\n"
        f"image = pool.get('SceneT2I').generate([{PROMPT!r}], [7])[0]\n"
        "caption = pool.get('SceneI2T').generate([image], [7])[0]\n"
        "print(output_digest(image), output_digest(caption))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    image = pool.get("SceneT2I").generate([PROMPT], [7])[0]
    caption = pool.get("SceneI2T").generate([image], [7])[0]
    assert out.stdout.split() == [output_digest(image), output_digest(caption)]


def test_prompts_outside_the_grammar_still_run(pool: ModelPool) -> None:
    image = pool.get("SceneT2I").generate(["a photograph of a cat on a sofa"], [0])[0]
    assert isinstance(image, Image.Image)
    caption = pool.get("SceneI2T").generate([Image.new("RGB", (300, 200), "white")], [0])[0]
    assert isinstance(caption, (str, ModelFailure))


def test_wrong_input_kinds_fail_per_item(pool: ModelPool) -> None:
    out = pool.get("SceneT2I").generate([Image.new("RGB", (64, 64)), PROMPT], [0, 0])
    assert isinstance(out[0], ModelFailure) and isinstance(out[1], Image.Image)
    out = pool.get("SceneI2T").generate(["text"], [0])
    assert isinstance(out[0], ModelFailure)


def test_embedding_puts_a_caption_nearest_its_own_scene(pool: ModelPool) -> None:
    clip = pool.get("SceneCLIP")
    assert clip.dimension == 64
    images = clip.embed([render(scene) for scene in KNOWN])
    texts = clip.embed(["a big red disc in the middle",
                        "a small blue box on the right and a huge yellow star to the left",
                        "a large green triangle at the top, a tiny white plus in the centre and "
                        "a large pink diamond at the bottom"])
    vectors = np.stack(images + texts)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = np.stack(texts) @ np.stack(images).T
    assert list(similarity.argmax(axis=1)) == [0, 1, 2]
    assert np.array_equal(clip.embed([render(KNOWN[0])])[0], images[0])  # deterministic


def test_embedding_tells_shapes_apart(pool: ModelPool) -> None:
    # Captions that differ only in the shape: the rendered shape's own caption is the nearest,
    # for every shape (the first SceneCLIP got 4 of 6 with cosine margins near 0.001).
    from tracer_pipeline.sceneworld.grammar import SHAPES, Scene, SceneObject

    clip = pool.get("SceneCLIP")
    texts = np.stack(clip.embed([f"a large red {shape} in the centre" for shape in SHAPES]))
    images = np.stack(clip.embed([render(Scene((SceneObject(shape, "red", "large", "centre"),)))
                                  for shape in SHAPES]))
    similarity = images @ texts.T
    assert list(similarity.argmax(axis=1)) == list(range(len(SHAPES)))
    wrong = similarity - np.diag(np.full(len(SHAPES), np.inf))
    assert (np.diag(similarity) - wrong.max(axis=1)).min() > 0.05


def test_the_sampled_captioner_is_seeded_and_lets_runs_drift():
    from tracer_pipeline.models.pool import ModelPool, resolve_load_options

    pool = ModelPool(resolve_load_options("cpu", "auto", "unused"))
    t2i, greedy, sampled = pool.get("SceneT2I"), pool.get("SceneI2T"), pool.get("SceneI2TSampled")
    prompt = "a large red circle on the left and a small blue square at the top"
    [image] = t2i.generate([prompt], [2])
    assert sampled.generate([image, image], [2, 2])[0] == sampled.generate([image], [2])[0]
    captions = {"greedy": [], "sampled": []}
    for name, captioner in (("greedy", greedy), ("sampled", sampled)):
        text = prompt
        for _ in range(6):
            [text] = captioner.generate(t2i.generate([text], [2]), [2])
            captions[name].append(text)
    assert set(captions["greedy"]) == {prompt}  # the faithful setting holds the scene
    assert len(set(captions["sampled"])) > 1 and captions["sampled"][-1] != prompt  # the lossy one drifts
