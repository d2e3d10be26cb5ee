"""The procedural SceneWorld renderer: draws any scene at 64×64 with seeded jitter.

It makes training data and reference images; it is never a model in a run. Jitter is a vector
of :data:`JITTER_DIM` standard-normal numbers, six per position slot (x and y offset, scale, and
an RGB colour shift), so the same vector always draws the same picture. SceneT2I is trained to
take that same vector as its noise input, which is what makes its seeded noise mean something.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from tracer_pipeline.sceneworld.grammar import POSITIONS, Scene, SceneObject

IMAGE_SIZE = 64
BACKGROUND = (128, 128, 128)
RGB = {
    "red": (215, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "purple": (135, 50, 185),
    "pink": (240, 135, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
# Slot centres in pixels of the 64×64 image; far enough apart that large objects never touch.
CENTRES = {"left": (13, 32), "right": (51, 32), "top": (32, 13), "bottom": (32, 51),
           "centre": (32, 32)}
RADII = {"small": 5.5, "large": 9.5}
JITTER_PER_SLOT = 6
JITTER_DIM = JITTER_PER_SLOT * len(POSITIONS)
# Scale of each jitter component per unit of noise: pixels, relative size, colour levels.
_OFFSET_PX, _SCALE, _COLOUR_LEVELS = 1.0, 0.06, 10.0
_SUPERSAMPLE = 4


def jitter_from_seed(seed: int) -> np.ndarray:
    """The jitter vector for a seed: standard normals, clipped to ±2 so no object leaves its
    slot."""
    return np.clip(np.random.default_rng(seed).standard_normal(JITTER_DIM), -2.0, 2.0)


def render(scene: Scene, jitter: np.ndarray | None = None) -> Image.Image:
    """Draw a scene as a 64×64 RGB image; ``jitter=None`` draws every object exactly in place."""
    noise = np.zeros(JITTER_DIM) if jitter is None else np.clip(np.asarray(jitter, float), -2, 2)
    s = _SUPERSAMPLE
    image = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for o in scene.objects:
        slot = POSITIONS.index(o.position)
        dx, dy, dscale, *dcolour = noise[slot * JITTER_PER_SLOT:(slot + 1) * JITTER_PER_SLOT]
        cx, cy = CENTRES[o.position]
        radius = RADII[o.size] * (1.0 + _SCALE * dscale) * s
        fill = tuple(int(np.clip(c + _COLOUR_LEVELS * d, 0, 255))
                     for c, d in zip(RGB[o.colour], dcolour, strict=True))
        _draw_shape(draw, o, ((cx + _OFFSET_PX * dx) * s, (cy + _OFFSET_PX * dy) * s), radius, fill)
    return image.reduce(s)


def object_masks(scene: Scene, jitter: np.ndarray | None = None) -> np.ndarray:
    """Each position slot's object alone as coverage in [0, 1], (slots, 64, 64) float32; an
    empty slot is all zeros. Training uses them to teach SceneT2I each object's exact outline."""
    noise = np.zeros(JITTER_DIM) if jitter is None else np.clip(np.asarray(jitter, float), -2, 2)
    s = _SUPERSAMPLE
    masks = np.zeros((len(POSITIONS), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for o in scene.objects:
        slot = POSITIONS.index(o.position)
        dx, dy, dscale = noise[slot * JITTER_PER_SLOT:slot * JITTER_PER_SLOT + 3]
        cx, cy = CENTRES[o.position]
        canvas = Image.new("L", (IMAGE_SIZE * s, IMAGE_SIZE * s), 0)
        radius = RADII[o.size] * (1.0 + _SCALE * dscale) * s
        _draw_shape(ImageDraw.Draw(canvas), o, ((cx + _OFFSET_PX * dx) * s, (cy + _OFFSET_PX * dy) * s),
                    radius, 255)
        masks[slot] = np.asarray(canvas.reduce(s), dtype=np.float32) / 255.0
    return masks


def _draw_shape(draw: ImageDraw.ImageDraw, o: SceneObject, centre: tuple[float, float],
                r: float, fill: tuple[int, ...] | int) -> None:
    x, y = centre
    if o.shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif o.shape == "square":
        h = r * 0.85  # a square of the same radius looks much bigger than the circle
        draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
    elif o.shape == "triangle":
        draw.polygon(_regular(x, y + r * 0.15, r * 1.1, 3), fill=fill)
    elif o.shape == "star":
        outer = _regular(x, y, r * 1.1, 5)
        inner = _regular(x, y, r * 0.45, 5, offset=math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner, strict=True) for p in pair], fill=fill)
    elif o.shape == "diamond":
        draw.polygon([(x, y - r * 1.1), (x + r * 0.8, y), (x, y + r * 1.1), (x - r * 0.8, y)],
                     fill=fill)
    elif o.shape == "cross":
        t = r * 0.35
        draw.rectangle((x - r, y - t, x + r, y + t), fill=fill)
        draw.rectangle((x - t, y - r, x + t, y + r), fill=fill)
    else:
        raise ValueError(f"no drawing for shape {o.shape!r}")


def _regular(x: float, y: float, r: float, n: int, offset: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a regular n-gon pointing up."""
    return [(x + r * math.sin(offset + 2 * math.pi * k / n), y - r * math.cos(offset + 2 * math.pi * k / n))
            for k in range(n)]


def image_array(image: Image.Image) -> np.ndarray:
    """An image as the float32 array (3, 64, 64) in [0, 1] every SceneWorld model reads; any
    other size or mode is converted first, so images from other models can be captioned."""
    rgb = image.convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
