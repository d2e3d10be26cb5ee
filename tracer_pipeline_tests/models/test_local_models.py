"""Every tiny and dummy model through the registry and the model pool, on CPU: what they output,
that the outputs depend on (input, seed) alone, and that a model's failure stays one item's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tracer_pipeline.models.base import (
    Family,
    LoadOptions,
    ModelFailure,
    ModelKind,
    output_digest,
)
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline_tests.models.specs import local_names

T2I = local_names(ModelKind.TEXT_TO_IMAGE)
I2T = local_names(ModelKind.IMAGE_TO_TEXT)
EMBED = local_names(ModelKind.EMBEDDING)
PROMPTS = ["a red cat on a hill", "a blue boat at sea", "an old house in the snow", "x"]


def digests(outputs: list[Any]) -> list[str]:
    assert not any(isinstance(o, ModelFailure) for o in outputs), outputs
    return [output_digest(o) for o in outputs]


@pytest.fixture(scope="module")
def images(pool: ModelPool) -> list[Image.Image]:
    """Four different pictures: tiny SD's noise for different prompts."""
    return pool.get("TinySD").generate(PROMPTS, [1, 2, 3, 4])


# Every text-to-image model with every captioner, so each is run on others' outputs.
CHAINS = [(t2i, i2t) for t2i in T2I for i2t in I2T
          if get_model(t2i).family is get_model(i2t).family]


@pytest.mark.parametrize(("t2i", "i2t"), CHAINS)
def test_a_network_runs_text_image_text_and_every_output_embeds(
        pool: ModelPool, t2i: str, i2t: str) -> None:
    text: Any = "a red balloon over a quiet town"
    outputs: list[Any] = []
    for _ in range(2):
        image = pool.get(t2i).generate([text], [42])[0]
        size = get_model(t2i).params["size"]
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.size == (size, size)
        text = pool.get(i2t).generate([image], [42])[0]
        assert isinstance(text, str) and text.strip() == text and text
        outputs += [image, text]
    for name in EMBED:
        embedder = pool.get(name)
        vectors = embedder.embed(outputs)
        assert len(vectors) == len(outputs)
        for vector in vectors:
            assert isinstance(vector, np.ndarray), vector
            assert vector.dtype == np.float32 and vector.shape == (embedder.dimension,)
            assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@pytest.mark.parametrize("name", T2I)
def test_text_to_image_depends_on_prompt_and_seed_alone(pool: ModelPool, name: str) -> None:
    model = pool.get(name)
    seeds = [3, 3, 3, 3]
    first = digests(model.generate(PROMPTS, seeds))
    assert digests(model.generate(PROMPTS, seeds)) == first
    assert len(set(first)) == len(PROMPTS), "different prompts gave the same image"
    reseeded = digests(model.generate(PROMPTS[:1] * 3, [1, 2, 3]))
    assert len(set(reseeded)) == 3, "different seeds gave the same image"


@pytest.mark.parametrize("name", [*T2I, *I2T])
def test_a_batch_gives_what_its_items_give_one_by_one(
        pool: ModelPool, images: list[Image.Image], name: str) -> None:
    model = pool.get(name)
    inputs: list[Any] = PROMPTS if name in T2I else images
    seeds = [5, 6, 5, 9]
    batched = digests(model.generate(inputs, seeds))
    alone = [digests(model.generate([x], [s]))[0] for x, s in zip(inputs, seeds, strict=True)]
    assert batched == alone


# DummyI2T2 names only an image's dominant colour: by design many images share its caption.
@pytest.mark.parametrize("name", [n for n in I2T if n != "DummyI2T2"])
def test_different_images_get_different_captions(
        pool: ModelPool, images: list[Image.Image], name: str) -> None:
    captions = pool.get(name).generate(images, [0] * len(images))
    assert all(isinstance(c, str) and c for c in captions), captions
    assert len(set(captions)) == len(images), captions
    assert pool.get(name).generate(images, [0] * len(images)) == captions


@pytest.mark.parametrize("name", EMBED)
def test_embeddings_are_deterministic_distinct_and_batch_independent(
        pool: ModelPool, images: list[Image.Image], name: str) -> None:
    model = pool.get(name)
    items: list[Any] = [*PROMPTS, *images]
    vectors = model.embed(items)
    alone = [model.embed([x])[0] for x in items]
    for batched, single in zip(vectors, alone, strict=True):
        assert np.array_equal(batched, single)
    assert len({v.tobytes() for v in vectors}) == len(items)


def test_the_pool_pins_torchs_cpu_threads(pool: ModelPool) -> None:
    import torch

    torch.set_num_threads(2)
    pool.release("TinyCLIP")
    pool.get("TinyCLIP")
    assert torch.get_num_threads() == pool.options.torch_threads == 1


class Poisoned:
    """A model component that raises on one input and passes everything else through."""

    def __init__(self, wrapped: Any, is_poison: Any, method: str = "__call__") -> None:
        self.wrapped, self.is_poison, self.method = wrapped, is_poison, method

    def __getattr__(self, name: str) -> Any:
        if name != self.method:
            return getattr(self.wrapped, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.is_poison(*args, **kwargs):
                raise RuntimeError("poisoned input")
            return getattr(self.wrapped, name)(*args, **kwargs)
        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")(*args, **kwargs)


@pytest.mark.parametrize("one_at_a_time", [True, False], ids=["alone", "batched"])
@pytest.mark.parametrize("name", local_names(ModelKind.TEXT_TO_IMAGE, Family.TINY))
def test_a_text_to_image_failure_is_that_items_failure(
        pool: ModelPool, name: str, one_at_a_time: bool) -> None:
    model = pool.get(name)
    broken = dataclasses.replace(model, one_at_a_time=one_at_a_time, pipeline=Poisoned(
        model.pipeline, lambda *a, prompt, **k: "boom" in prompt))
    results = broken.generate(["a red cat", "boom", "a blue dog"], [1, 2, 3])
    assert results[1] == ModelFailure("RuntimeError", "poisoned input")
    assert digests([results[0], results[2]]) == digests(
        model.generate(["a red cat", "a blue dog"], [1, 3]))


def test_nan_pixels_are_a_failure_not_a_black_image(pool: ModelPool) -> None:
    model = pool.get("TinySD")

    def nan_pipeline(prompt: list[str], **kwargs: Any) -> Any:
        return SimpleNamespace(images=np.full((len(prompt), 64, 64, 3), np.nan, np.float32))

    results = dataclasses.replace(model, pipeline=nan_pipeline).generate(["a cat"], [1])
    assert results == [ModelFailure("NonFiniteImage", "the model produced NaN or infinite pixels")]


@pytest.mark.parametrize("name", local_names(ModelKind.IMAGE_TO_TEXT, Family.TINY))
def test_a_captioner_failure_is_that_items_failure_and_an_empty_caption_an_output(
        pool: ModelPool, images: list[Image.Image], name: str) -> None:
    model = pool.get(name)
    poison = output_digest(images[1])
    broken = dataclasses.replace(model, one_at_a_time=False, processor=Poisoned(
        model.processor, lambda *a, images, **k: poison in map(output_digest, images)))
    results = broken.generate(images[:3], [0, 0, 0])
    assert results[1] == ModelFailure("RuntimeError", "poisoned input")
    assert [results[0], results[2]] == model.generate([images[0], images[2]], [0, 0])
    assert isinstance(model.generate(["a caption is not an image"], [0])[0], ModelFailure)

    class Mute:
        def __getattr__(self, attribute: str) -> Any:
            return getattr(model.processor, attribute)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return model.processor(*args, **kwargs)

        def batch_decode(self, tokens: Any, **kwargs: Any) -> list[str]:
            return ["  "] * len(tokens)

    empty = dataclasses.replace(model, processor=Mute()).generate(images[:1], [0])
    assert empty == [""]  # the run continues from it


def test_an_embedding_failure_is_that_items_failure(
        pool: ModelPool, images: list[Image.Image]) -> None:
    model = pool.get("TinyCLIP")
    broken = dataclasses.replace(model, one_at_a_time=False, tokenizer=Poisoned(
        model.tokenizer, lambda texts, *a, **k: "boom" in texts))
    results = broken.embed(["a cat", "boom", images[0]])
    assert results[1] == ModelFailure("RuntimeError", "poisoned input")
    assert np.array_equal(results[0], model.embed(["a cat"])[0])
    assert np.array_equal(results[2], model.embed([images[0]])[0])

    class NaNImages:
        def __getattr__(self, attribute: str) -> Any:
            return getattr(model.model, attribute)

        def encode_image(self, pixels: Any) -> Any:
            return model.model.encode_image(pixels) * float("nan")

    results = dataclasses.replace(model, model=NaNImages()).embed(["a cat", images[0]])
    assert isinstance(results[0], np.ndarray)
    assert results[1] == ModelFailure("NonFiniteEmbedding", "the embedding contains NaN or infinity")


REAL_LAYOUTS = {  # real model → the tiny twin whose directory has the same layout
    "SDTurbo": "TinySD", "BLIP": "TinyBLIP", "Florence2": "TinyFlorence2",
    "CLIP-ViT-B-32": "TinyCLIP",
}


def test_real_models_load_with_the_same_code_from_a_directory_laid_out_like_their_repository(
        pool: ModelPool, cpu_options: LoadOptions, tmp_path: Path) -> None:
    """The tiny twins' directories stand in for downloaded repositories: the real models'
    loaders (and their own parameters, e.g. SD-Turbo's 512 px) run on them unchanged."""
    for real, tiny in REAL_LAYOUTS.items():
        pool.get(tiny)  # built
        built = cpu_options.model_dir / "tiny" / f"{tiny}-v{get_model(tiny).version}"
        repository = tmp_path / get_model(real).source
        repository.parent.mkdir(parents=True, exist_ok=True)
        repository.symlink_to(built, target_is_directory=True)
    options = dataclasses.replace(cpu_options, model_dir=tmp_path)
    assert all(get_model(real).weights_available(options) for real in REAL_LAYOUTS)
    real_pool = ModelPool(options)
    image = real_pool.get("SDTurbo").generate(["a red cat"], [1])[0]
    assert isinstance(image, Image.Image) and image.size == (512, 512)
    for captioner in ("BLIP", "Florence2"):
        caption = real_pool.get(captioner).generate([image], [1])[0]
        assert isinstance(caption, str) and caption
    vectors = real_pool.get("CLIP-ViT-B-32").embed(["a red cat", image])
    assert all(isinstance(v, np.ndarray) and v.shape == (32,) for v in vectors)
    real_pool.release()
