"""Dummy models: pure numpy/PIL, instant, deterministic in (input, seed).

They stand in for real models in fast tests and large simulations. Their outputs are
placeholders, not pictures or descriptions of anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tracer_pipeline.models.base import (
    Family,
    LoadOptions,
    Modality,
    ModelFailure,
    ModelKind,
    ModelSpec,
    Output,
    check_caption,
    each_item,
    normalise,
)

SIZE = 64
WORDS = [
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "grey",
    "gold",
    "circle",
    "square",
    "triangle",
    "star",
    "cloud",
    "tree",
    "house",
    "boat",
    "bird",
    "fish",
    "balloon",
    "sky",
    "sea",
    "hill",
    "small",
    "large",
    "tiny",
    "huge",
    "bright",
    "dark",
    "soft",
    "sharp",
    "calm",
    "busy",
    "old",
    "new",
    "quiet",
    "loud",
    "floating",
    "standing",
    "flying",
    "resting",
    "glowing",
    "fading",
    "drifting",
    "spinning",
]
COLOURS = {
    "red": (220, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "pink": (240, 130, 180),
    "brown": (120, 80, 40),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
}


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _pixels_digest(image: Image.Image) -> str:
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


class DummyTextToImage:
    """Text → 64×64 image of rectangles (``style="blocks"``) or discs (``style="discs"``).

    A colour word in the prompt sets the background, so captions that name a colour are
    partly preserved around a loop; everything else comes from a hash of (text, seed).
    """

    def __init__(self, style: str):
        self.style = style

    def _one(self, text: str, seed: int) -> Image.Image:
        rng = _rng(self.style, text, seed)
        words = text.lower().split()
        named = [COLOURS[w] for w in words if w in COLOURS]
        background = named[0] if named else tuple(int(c) for c in rng.integers(0, 256, 3))
        image = Image.new("RGB", (SIZE, SIZE), background)
        draw = ImageDraw.Draw(image)
        for _ in range(1 + len(words) % 4):
            x0, y0 = (int(v) for v in rng.integers(0, SIZE - 16, 2))
            w, h = (int(v) for v in rng.integers(8, 32, 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            box = (x0, y0, min(SIZE - 1, x0 + w), min(SIZE - 1, y0 + h))
            if self.style == "blocks":
                draw.rectangle(box, fill=fill)
            else:
                draw.ellipse(box, fill=fill)
        return image

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return each_item("a text-to-image model", "text", inputs, seeds, self._one)


class DummyImageToText:
    """Image → caption.

    ``mode="hash"``: five words chosen by a hash of the pixels and the seed, so different
    images give different captions. ``mode="lossy"``: names the image's dominant colour and
    brightness only, so many images share a caption and loops soon reach a fixed point.
    """

    def __init__(self, mode: str):
        self.mode = mode

    def _one(self, image: Image.Image, seed: int) -> str:
        if self.mode == "hash":
            rng = _rng("caption", _pixels_digest(image), seed)
            return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 5))
        mean = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
        colour = min(COLOURS, key=lambda c: float(np.sum((np.array(COLOURS[c]) - mean) ** 2)))
        light = "bright" if mean.mean() > 127 else "dark"
        return f"a {light} {colour} picture"

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return each_item("an image-to-text model", "image", inputs, seeds,
                         lambda image, seed: check_caption(self._one(image, seed)))


class DummyEmbedder:
    """Text and images → 64-d unit vectors.

    Text: a sum of per-word random directions (so texts sharing words are close). Images: a
    fixed random projection of the 8×8 thumbnail. The two halves share no meaning.
    """

    dimension = 64

    def __init__(self) -> None:
        self._projection = _rng("dummy-embed-projection").standard_normal((8 * 8 * 3, self.dimension))

    def _text(self, text: str) -> np.ndarray:
        words = text.lower().split() or [""]
        return np.sum([_rng("word", w).standard_normal(self.dimension) for w in words], axis=0)

    def _image(self, image: Image.Image) -> np.ndarray:
        thumb = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
        return (thumb.astype(np.float64).ravel() / 255.0 - 0.5) @ self._projection

    def embed(self, items: Sequence[Output]) -> list[np.ndarray | ModelFailure]:
        return [normalise(self._text(x) if isinstance(x, str) else self._image(x)) for x in items]


def _load_t2i(spec: ModelSpec, options: LoadOptions) -> DummyTextToImage:
    return DummyTextToImage(style=spec.params["style"])


def _load_i2t(spec: ModelSpec, options: LoadOptions) -> DummyImageToText:
    return DummyImageToText(mode=spec.params["mode"])


def _load_embed(spec: ModelSpec, options: LoadOptions) -> DummyEmbedder:
    return DummyEmbedder()


SPECS = [
    ModelSpec(
        name="DummyT2I",
        kind=ModelKind.TEXT_TO_IMAGE,
        family=Family.DUMMY,
        loader=_load_t2i,
        description="Placeholder text→image: coloured rectangles from a hash of (prompt, seed).",
        params={"style": "blocks", "size": SIZE},
    ),
    ModelSpec(
        name="DummyT2I2",
        kind=ModelKind.TEXT_TO_IMAGE,
        family=Family.DUMMY,
        loader=_load_t2i,
        description="Placeholder text→image: coloured discs from a hash of (prompt, seed).",
        params={"style": "discs", "size": SIZE},
    ),
    ModelSpec(
        name="DummyI2T",
        kind=ModelKind.IMAGE_TO_TEXT,
        family=Family.DUMMY,
        loader=_load_i2t,
        description="Placeholder image→text: five words from a hash of (pixels, seed).",
        params={"mode": "hash"},
    ),
    ModelSpec(
        name="DummyI2T2",
        kind=ModelKind.IMAGE_TO_TEXT,
        family=Family.DUMMY,
        loader=_load_i2t,
        description="Placeholder lossy image→text: names the dominant colour only (gets stuck).",
        params={"mode": "lossy"},
    ),
    ModelSpec(
        name="DummyEmbed",
        kind=ModelKind.EMBEDDING,
        family=Family.DUMMY,
        loader=_load_embed,
        description="Placeholder 64-d embedding of text (bag of words) and images (thumbnail).",
        embeds=frozenset({Modality.TEXT, Modality.IMAGE}),
    ),
]
