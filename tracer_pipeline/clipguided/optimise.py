"""The CLIP-guided optimisation loop: a canvas (what is optimised, and how it becomes an image),
a guide (a CLIP model's differentiable image tower and its text tower), and the settings.

One image per call, from the call's seed alone: the canvas's initial noise and every cutout and
distortion are drawn from one CPU ``torch.Generator`` seeded with it, so the same seed, prompt and
settings give the same image. On CPU that holds bit for bit only at a fixed torch thread count
(the model pool pins it to one by default, see :class:`~tracer_pipeline.models.base.LoadOptions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from tracer_pipeline.clipguided import objective


@dataclass(frozen=True)
class GuidedSettings:
    """A CLIP-guided model's resolved options (see :data:`tracer_pipeline.clipguided.models.OPTIONS`)."""

    width: int
    height: int
    steps: int
    lr: float
    cutouts: int
    cut_min: float
    cut_max: float
    rotate_deg: float
    skew: float
    blur: float
    prompt_right: str | None
    blend: float
    tone_symmetry: float
    semantic_symmetry: float
    tv: float
    frames: int
    restarts: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GuidedSettings:
        return cls(**{f.name: params[f.name] for f in fields(cls)})

    @property
    def record_every(self) -> int:
        """k: every k-th step's image is kept as an intermediate output (and the last step's)."""
        return max(1, self.steps // self.frames)


class Guide(Protocol):
    """A CLIP model as the optimisation sees it."""

    size: int  # the square resolution its image tower reads

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit vectors (N, D) of the texts, without gradients."""
        ...

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit vectors (N, D) of images (N, 3, size, size) in [0, 1], differentiable."""
        ...


class Canvas(Protocol):
    """What is optimised, and how it becomes an image."""

    def initial(self, height: int, width: int, init: torch.Tensor | None,
                generator: torch.Generator) -> list[torch.Tensor]:
        """The leaf tensors to optimise: from ``init`` (1, 3, height, width) in [0, 1] when
        given, else from seeded noise."""
        ...

    def render(self, parameters: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """The image (1, 3, height, width) in [0, 1], differentiable in ``parameters``."""
        ...


def loss(image: torch.Tensor, guide: Guide, left: torch.Tensor, right: torch.Tensor | None,
         settings: GuidedSettings, generator: torch.Generator) -> torch.Tensor:
    """One step's objective: the cutouts' distance to the prompt (split between two prompts
    across x for a panorama), less the semantic-symmetry reward, plus the tone-symmetry and
    total-variation penalties. With semantic symmetry the cutouts come in mirrored pairs."""
    _, _, height, width = image.shape
    if settings.semantic_symmetry > 0:
        half = objective.draw_boxes(max(1, settings.cutouts // 2), height, width, settings.cut_min,
                                    settings.cut_max, generator)
        boxes = half + [b.mirrored(width) for b in half]
    else:
        boxes = objective.draw_boxes(settings.cutouts, height, width, settings.cut_min, settings.cut_max,
                                     generator)
    distortions = objective.draw_distortions(len(boxes), settings.rotate_deg, settings.skew, settings.blur,
                                             generator)
    vectors = guide.encode_images(objective.cutouts(image, boxes, distortions, guide.size))
    weights = objective.right_weights([b.x for b in boxes], width, settings.blend)
    total = objective.prompt_loss(vectors, left, right, weights)
    if settings.semantic_symmetry > 0:
        texts = objective.mixed_text(left, right, weights)
        pairs = len(boxes) // 2
        total = total - settings.semantic_symmetry * objective.semantic_symmetry(
            vectors[:pairs], vectors[pairs:], texts[:pairs], texts[pairs:])
    if settings.tone_symmetry > 0:
        total = total + settings.tone_symmetry * objective.tone_symmetry(image)
    if settings.tv > 0:
        total = total + settings.tv * objective.total_variation(image)
    return total


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] → an RGB picture."""
    array = pixels.detach()[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    return Image.fromarray(np.rint(array * 255.0).astype(np.uint8), mode="RGB")


def from_image(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """An RGB picture resized to (width, height) → (1, 3, height, width) in [0, 1]."""
    rgb = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)[None]


def optimise(guide: Guide, canvas: Canvas, prompt: str, settings: GuidedSettings, seed: int,
             init: Image.Image | None = None) -> tuple[Image.Image, list[tuple[int, Image.Image]]]:
    """The image that ``settings.steps`` Adam steps make of the canvas for ``prompt``, and the
    images it passed through: step 0 (the chosen start), every k-th step and the last."""
    generator = torch.Generator("cpu").manual_seed(seed)
    height, width = settings.height, settings.width
    texts = guide.encode_texts([prompt] if settings.prompt_right is None else [prompt, settings.prompt_right])
    left, right = texts[:1], (texts[1:] if settings.prompt_right is not None else None)
    start = from_image(init, height, width) if init is not None else None
    # "Seed superstition", made systematic: of several seeded starts, optimise the one the
    # objective likes best (a start's colour is rarely changed much by the guide's gradient).
    starts = [canvas.initial(height, width, start, generator) for _ in range(settings.restarts)]
    parameters = starts[0]
    if len(starts) > 1:
        with torch.no_grad():
            scores = [float(loss(canvas.render(p, height, width), guide, left, right, settings, generator))
                      for p in starts]
        parameters = starts[int(np.argmin(scores))]
    optimiser = torch.optim.Adam(parameters, lr=settings.lr)
    with torch.no_grad():
        frames = [(0, to_image(canvas.render(parameters, height, width)))]
    every = settings.record_every
    for step in range(1, settings.steps + 1):
        optimiser.zero_grad()
        loss(canvas.render(parameters, height, width), guide, left, right, settings, generator).backward()
        optimiser.step()
        if step % every == 0 or step == settings.steps:
            with torch.no_grad():
                frames.append((step, to_image(canvas.render(parameters, height, width))))
    return frames[-1][1], frames
