"""The self-consuming generators as registry entries: DigitsVAE and SceneVAE, their options and
their real data (generation 0). Importing this module never imports torch or scikit-learn.

- **DigitsVAE**: scikit-learn's bundled handwritten digits (``load_digits``): 1,797 images of
  8×8 pixels with 17 grey levels, ten classes, from 43 writers. Unlike MNIST (70,000 images of
  28×28 with 256 grey levels) it is small enough to train a VAE and a classifier per generation in
  about a second on one CPU thread, and it ships with a dependency, so nothing is downloaded.
- **SceneVAE**: SceneWorld scenes (:mod:`tracer_pipeline.sceneworld`) of one large shape in the
  centre, in any of nine colours, drawn by the procedural renderer with seeded jitter and cropped
  to the centre's 24×24 (RGB); the label is the shape (six classes). Large shapes only: with
  both sizes a dense classifier told shapes apart on 76 % of held-out scenes, with one 98 %.

A generator's options are its registry entry's ``params`` (the defaults); an experiment may
override them per entry, and the resolved options are part of the run's identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from tracer_pipeline.models.base import Family, LoadOptions, ModelKind, ModelSpec

# Bump when the code changes what a generator stores (training, sampling, the grid).
VERSION = "1"
GRID_SIDE = 8  # the invocation's image: the generation's first 8×8 samples
GRID_TILE_PX = 36
GRID_BORDER_PX = 2
GRID_FRAME = (96, 96, 96)
SCENE_CROP = (20, 44)  # the centre slot's box in the 64×64 scene (x and y from, to)
SCENE_DATA_SEED = 0  # real scenes are the same for every run; the run's seed drives training


@dataclass(frozen=True)
class Option:
    """An option of a self-consuming generator: its range and what it changes."""

    low: int
    high: int
    meaning: str


OPTIONS: dict[str, Option] = {
    "samples_per_generation": Option(16, 100_000, "samples drawn per generated generation"),
    "epochs": Option(1, 1_000, "generator training epochs per generation"),
    "latent_size": Option(1, 256, "the VAE's latent dimensions"),
    "hidden_size": Option(8, 4_096, "width of the VAE's and the classifier's hidden layer"),
    "classifier_epochs": Option(1, 1_000, "classifier training epochs per generation"),
    "real_samples": Option(64, 100_000, "SceneVAE only: scenes in generation 0"),
}


@dataclass(frozen=True)
class RealData:
    """Generation 0: images as (N, height, width, channels) uint8 and their labels."""

    images: np.ndarray
    labels: np.ndarray  # (N,) int64 indices into label_names
    label_names: tuple[str, ...]


@lru_cache(maxsize=1)
def _digits() -> RealData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 17 grey levels (0..16), dark strokes on white paper in the scans; stored as light on dark.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return RealData(images, bunch.target.astype(np.int64), tuple(str(d) for d in range(10)))


@lru_cache(maxsize=4)
def _scenes(count: int) -> RealData:
    from tracer_pipeline.sceneworld.grammar import COLOURS, SHAPES, Scene, SceneObject
    from tracer_pipeline.sceneworld.render import JITTER_DIM, render

    rng = np.random.default_rng(SCENE_DATA_SEED)
    low, high = SCENE_CROP
    images, labels = [], []
    for _ in range(count):
        shape = int(rng.integers(len(SHAPES)))
        scene = Scene((SceneObject(shape=SHAPES[shape], colour=COLOURS[int(rng.integers(len(COLOURS)))],
                                   size="large", position="centre"),))
        picture = render(scene, np.clip(rng.standard_normal(JITTER_DIM), -2.0, 2.0))
        images.append(np.asarray(picture.crop((low, low, high, high))))
        labels.append(shape)
    return RealData(np.stack(images), np.array(labels, dtype=np.int64), SHAPES)


class SelfConsumingGenerator:
    """A loaded self-consuming generator: where its real data comes from and how its samples are
    drawn as one picture. Training is per run (:mod:`.loop`); this holds what runs share."""

    def __init__(self, spec: ModelSpec, options: LoadOptions):
        import torch  # noqa: F401 - imported as the model loads, so the model pool pins its threads

        self.name = spec.name
        self.load_options = options

    def real_data(self, params: Mapping[str, Any]) -> RealData:
        if self.name == "DigitsVAE":
            return _digits()
        return _scenes(int(params["real_samples"]))

    def grid(self, images: np.ndarray) -> Image.Image:
        """The first 8×8 samples (fewer if there are fewer) as one RGB picture, each tile
        enlarged without smoothing and framed in grey, so that dark tiles stay apart: the
        generation's output as an invocation."""
        count = min(len(images), GRID_SIDE * GRID_SIDE)
        side = GRID_SIDE * GRID_TILE_PX
        picture = Image.new("RGB", (side, side), GRID_FRAME)
        inner = GRID_TILE_PX - 2 * GRID_BORDER_PX
        for i in range(count):
            tile = images[i]
            tile = np.repeat(tile, 3, axis=2) if tile.shape[2] == 1 else tile
            cell = Image.fromarray(tile, mode="RGB").resize((inner, inner), Image.Resampling.NEAREST)
            picture.paste(cell, ((i % GRID_SIDE) * GRID_TILE_PX + GRID_BORDER_PX,
                                 (i // GRID_SIDE) * GRID_TILE_PX + GRID_BORDER_PX))
        return picture


def check_options(name: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The generator's resolved options (its defaults overridden by ``given``) and the problems
    with ``given``, each naming the option and what it accepts."""
    from tracer_pipeline.models.registry import get_model

    defaults = dict(get_model(name).params)
    problems: list[str] = []
    for key, value in given.items():
        if key not in defaults:
            problems.append(f"{key}: not an option of {name} (its options: {', '.join(sorted(defaults))})")
            continue
        option = OPTIONS[key]
        if not isinstance(value, int) or isinstance(value, bool) or not option.low <= value <= option.high:
            problems.append(f"{key}: expected an integer from {option.low} to {option.high} "
                            f"({option.meaning}), got {value!r}")
    return {**defaults, **given}, problems


def _load(spec: ModelSpec, options: LoadOptions) -> SelfConsumingGenerator:
    return SelfConsumingGenerator(spec, options)


_SHARED = {"epochs": 50, "latent_size": 8, "hidden_size": 128, "classifier_epochs": 30}

SPECS = [
    ModelSpec(
        name="DigitsVAE", kind=ModelKind.GENERATOR, family=Family.SELF_CONSUMING, loader=_load,
        description="A small VAE retrained on its own samples of scikit-learn's 8×8 handwritten "
                    "digits (1,797 real images, ten classes); a dense classifier per generation.",
        version=VERSION, source="scikit-learn's bundled digits (load_digits)",
        params={**_SHARED, "samples_per_generation": 1797},
    ),
    ModelSpec(
        name="SceneVAE", kind=ModelKind.GENERATOR, family=Family.SELF_CONSUMING, loader=_load,
        description="A small VAE retrained on its own samples of SceneWorld scenes (one shape in "
                    "the centre, 24×24 RGB, six shape classes); a dense classifier per generation.",
        version=VERSION, source="SceneWorld's procedural renderer",
        params={**_SHARED, "epochs": 30, "latent_size": 16, "classifier_epochs": 100,
                "samples_per_generation": 1800, "real_samples": 1800},
    ),
]
