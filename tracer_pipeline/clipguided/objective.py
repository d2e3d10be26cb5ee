"""The CLIP-guided objective as pure torch functions of tensors: cutouts, their augmentations,
the prompt weights across a panorama, and the symmetry terms. No models, no I/O.

Images are (1, 3, H, W) tensors in [0, 1]; every random draw comes from the ``generator`` passed
in, so that the same seed draws the same cutouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

BLUR_KERNEL = 5  # taps of the cutouts' Gaussian blur (sigma up to ~1.5 px fits in it)
TONE_BLUR_SIGMA = 2.0  # the tone-symmetry term compares broad tones, not edges


@dataclass(frozen=True)
class Box:
    """A square cutout: centre (x, y) and side, in pixels of the image."""

    x: float
    y: float
    side: float

    def mirrored(self, width: int) -> Box:
        """The same box reflected about the image's vertical centre line."""
        return Box(width - self.x, self.y, self.side)


def draw_boxes(count: int, height: int, width: int, cut_min: float, cut_max: float,
               generator: torch.Generator) -> list[Box]:
    """``count`` square boxes inside the image, sides uniform in [cut_min, cut_max] × the shorter
    side, centres uniform over the places where the whole box fits."""
    short = min(height, width)
    boxes = []
    for _ in range(count):
        u = torch.rand(3, generator=generator).tolist()
        side = short * (cut_min + (cut_max - cut_min) * u[0])
        boxes.append(Box(side / 2 + (width - side) * u[1], side / 2 + (height - side) * u[2], side))
    return boxes


@dataclass(frozen=True)
class Distortion:
    """How one cutout is distorted: rotated by ``angle`` radians, sheared by ``shear``, blurred
    with a Gaussian of ``sigma`` pixels (at the guide's resolution)."""

    angle: float = 0.0
    shear: float = 0.0
    sigma: float = 0.0


def draw_distortions(count: int, rotate_deg: float, skew: float, blur: float,
                     generator: torch.Generator) -> list[Distortion]:
    """Uniform draws within ±``rotate_deg`` degrees, ±``skew`` shear and [0, ``blur``] pixels."""
    out = []
    for _ in range(count):
        u = torch.rand(3, generator=generator).tolist()
        out.append(Distortion(math.radians(rotate_deg) * (2 * u[0] - 1), skew * (2 * u[1] - 1), blur * u[2]))
    return out


def cutouts(image: torch.Tensor, boxes: list[Box], distortions: list[Distortion], size: int) -> torch.Tensor:
    """Each box of ``image`` (1, 3, H, W), rotated and sheared about its centre, resampled to
    ``size``×``size`` and blurred: (len(boxes), 3, size, size), differentiable in ``image``.

    The affine map sends the output's [-1, 1]² to the box in the image's normalised coordinates
    (``grid_sample`` with ``align_corners=False``); parts of a rotated box outside the image read
    the border pixels."""
    _, _, height, width = image.shape
    thetas = []
    for box, d in zip(boxes, distortions, strict=True):
        cos, sin = math.cos(d.angle), math.sin(d.angle)
        sx, sy = box.side / width, box.side / height
        # rotation · shear, scaled to the box and moved to its centre
        a = torch.tensor([[cos, -sin], [sin, cos]]) @ torch.tensor([[1.0, d.shear], [0.0, 1.0]])
        a = a * torch.tensor([[sx, sx], [sy, sy]])
        centre = torch.tensor([[2 * box.x / width - 1], [2 * box.y / height - 1]])
        thetas.append(torch.cat([a, centre], dim=1))
    theta = torch.stack(thetas).to(image)
    grid = F.affine_grid(theta, [len(boxes), 3, size, size], align_corners=False)
    crops = F.grid_sample(image.expand(len(boxes), -1, -1, -1), grid, mode="bilinear",
                          padding_mode="border", align_corners=False)
    return torch.cat([gaussian_blur(crops[i:i + 1], d.sigma) for i, d in enumerate(distortions)])


def gaussian_blur(images: torch.Tensor, sigma: float, taps: int = BLUR_KERNEL) -> torch.Tensor:
    """A separable Gaussian blur of (N, C, H, W) images (reflect padding); none below 0.05 px."""
    if sigma < 0.05:
        return images
    x = torch.arange(taps, dtype=images.dtype, device=images.device) - (taps - 1) / 2
    kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    pad = taps // 2
    out = F.conv2d(F.pad(images, (pad, pad, 0, 0), mode="reflect"),
                   kernel.view(1, 1, 1, taps).expand(channels, 1, 1, taps), groups=channels)
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"),
                    kernel.view(1, 1, taps, 1).expand(channels, 1, taps, 1), groups=channels)


def right_weights(xs: list[float], width: int, blend: float) -> torch.Tensor:
    """The weight of the right-hand prompt for cutouts centred at ``xs``: 0 left of the blend
    zone, 1 right of it, linear across it. The zone is ``blend`` × the width, centred; 1 blends
    across the whole panorama, 0 is a hard cut at the middle."""
    u = torch.tensor(xs, dtype=torch.float32) / width
    if blend <= 0:
        return (u >= 0.5).float()
    return ((u - (0.5 - blend / 2)) / blend).clamp(0.0, 1.0)


def prompt_loss(image_vectors: torch.Tensor, left: torch.Tensor, right: torch.Tensor | None,
                weights: torch.Tensor) -> torch.Tensor:
    """Mean over cutouts of (1 − cos) to the prompt, each cutout's loss split between the left
    and right prompts by its weight. Vectors are unit rows; ``left``/``right`` are (1, D)."""
    loss = 1 - (image_vectors @ left.T)[:, 0]
    if right is not None:
        weights = weights.to(image_vectors)
        loss = (1 - weights) * loss + weights * (1 - (image_vectors @ right.T)[:, 0])
    return loss.mean()


def mixed_text(left: torch.Tensor, right: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
    """Per cutout, the unit vector between the two prompts at its weight (the left prompt alone
    when there is no right one): (N, D)."""
    if right is None:
        return left.expand(len(weights), -1)
    weights = weights.to(left)[:, None]
    return F.normalize((1 - weights) * left + weights * right, dim=-1)


def semantic_symmetry(first: torch.Tensor, second: torch.Tensor, first_text: torch.Tensor,
                      second_text: torch.Tensor) -> torch.Tensor:
    """Mean cos(patch₁ − text₁, patch₂ − text₂) over mirrored pairs of cutouts: high when what
    each half shows beyond its own prompt is the same, so that objects of one prompt's context
    reappear, translated, in the other's. All (N, D) unit rows."""
    return F.cosine_similarity(first - first_text, second - second_text, dim=-1).mean()


def tone_symmetry(image: torch.Tensor) -> torch.Tensor:
    """L1 distance between the blurred greyscale image and its left-right mirror."""
    grey = (image * torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
            .view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    blurred = gaussian_blur(grey, TONE_BLUR_SIGMA, taps=9)
    return (blurred - blurred.flip(-1)).abs().mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels: favours flat regions."""
    return ((image[..., 1:, :] - image[..., :-1, :]).abs().mean()
            + (image[..., :, 1:] - image[..., :, :-1]).abs().mean())
