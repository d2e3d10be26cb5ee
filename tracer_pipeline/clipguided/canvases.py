"""What a CLIP-guided model optimises, and how it becomes an image.

- :class:`ShapesCanvas` (offline, with SceneCLIP): a few flat-coloured shapes over the SceneWorld
  grey background (or over an init image). Each shape is a soft-edged star-shaped region whose
  radius around its centre is a low-order Fourier series in the angle, with a colour: the
  parameters are centres, radii, Fourier coefficients and colours, not pixels. Why: optimised
  as a low-resolution grid of colours upsampled to 64 px, SceneCLIP is satisfied by faint
  noise-like patterns that the captioner reads as the prompt in 1, 1 and 0 of 6 tries (see
  BENCHMARKS.md); SceneWorld pictures are flat shapes on grey, and this canvas can only draw those.
- :class:`LatentCanvas` (real and tiny): the latent of a diffusers autoencoder, decoded by it, as
  VQGAN+CLIP optimises a VQGAN's latent.
"""

from __future__ import annotations

from typing import Any

import torch

from tracer_pipeline.sceneworld.render import BACKGROUND

HARMONICS = 4  # Fourier terms of a shape's outline
OUTLINE_RANGE = 0.25  # the outline stays within ×e^(±0.25) of the shape's radius
EDGE_PX = 0.7  # softness of a shape's edge (a sigmoid's scale, in pixels)
CENTRE_JITTER = 0.05  # of the image's size: where each shape starts, around its home
# Centres move at a fifth of the other parameters' pace (Adam's steps are about lr in parameter
# units): moved as fast as colours, shapes wander off the places SceneWorld draws objects at.
CENTRE_PACE = 0.2
REFERENCE_HEIGHT = 64  # radii below are for this height and scale with the image


class ShapesCanvas:
    """``shapes`` soft shapes laid over the background in order. Shape i starts at home
    ((i + ½) / shapes of the width, the middle of the height), jittered by the seed, with a
    seeded colour and a nearly round outline."""

    def __init__(self, shapes: int, device: str = "cpu"):
        self.shapes = shapes
        self.device = device

    def initial(self, height: int, width: int, init: torch.Tensor | None,
                generator: torch.Generator) -> list[torch.Tensor]:
        n = self.shapes
        self._homes = torch.tensor([[(i + 0.5) / n, 0.5] for i in range(n)], device=self.device)
        moves = CENTRE_JITTER / CENTRE_PACE * (2 * torch.rand((n, 2), generator=generator) - 1)
        radii = 0.1 * torch.randn((n, 1), generator=generator)
        outlines = 0.05 * torch.randn((n, 2 * HARMONICS), generator=generator)
        colours = torch.randn((n, 3), generator=generator)
        self._background = (init if init is not None else
                            torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, height, width)
                            / 255.0).to(self.device)
        return [t.to(self.device).requires_grad_(True) for t in (moves, radii, outlines, colours)]

    def render(self, parameters: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        moves, radii, outlines, colours = parameters
        centres = self._homes + CENTRE_PACE * moves
        scale = height / REFERENCE_HEIGHT
        ys, xs = torch.meshgrid(torch.arange(height, device=self.device) + 0.5,
                                torch.arange(width, device=self.device) + 0.5, indexing="ij")
        k = torch.arange(1, HARMONICS + 1, device=self.device, dtype=torch.float32)
        image = self._background
        for i in range(self.shapes):
            dx, dy = xs - centres[i, 0] * width, ys - centres[i, 1] * height
            distance = torch.sqrt(dx * dx + dy * dy + 1e-6)
            angle = torch.atan2(dy, dx)[..., None] * k
            wobble = ((outlines[i, :HARMONICS] * torch.cos(angle)).sum(-1)
                      + (outlines[i, HARMONICS:] * torch.sin(angle)).sum(-1))
            # a radius from 4 to 16 px (at 64 px)
            radius = scale * (4 + 12 * torch.sigmoid(radii[i, 0])) * torch.exp(OUTLINE_RANGE * torch.tanh(wobble))
            alpha = torch.sigmoid((radius - distance) / EDGE_PX)
            colour = torch.sigmoid(colours[i]).view(1, 3, 1, 1)
            image = image * (1 - alpha) + colour * alpha
        return image


class LatentCanvas:
    """A diffusers autoencoder's latent (``AutoencoderKL``), decoded to the image; started from
    the encoded init image, or from seeded standard-normal latents scaled as the autoencoder's
    latents are (÷ its ``scaling_factor``)."""

    def __init__(self, vae: Any, device: str):
        self.vae = vae
        self.device = device
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def initial(self, height: int, width: int, init: torch.Tensor | None,
                generator: torch.Generator) -> list[torch.Tensor]:
        dtype = next(self.vae.parameters()).dtype
        if init is not None:
            with torch.no_grad():
                latent = self.vae.encode((init * 2 - 1).to(self.device, dtype)).latent_dist.mean.float()
        else:
            shape = (1, self.vae.config.latent_channels, height // self.factor, width // self.factor)
            latent = torch.randn(shape, generator=generator) / self.vae.config.scaling_factor
        return [latent.to(self.device).requires_grad_(True)]

    def render(self, parameters: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        decoded = self.vae.decode(parameters[0].to(dtype)).sample.float()
        return (decoded.clamp(-1, 1) + 1) / 2
