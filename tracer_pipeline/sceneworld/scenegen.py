"""SceneGen: the unconditional SceneWorld generator, a noise vector → a 64×64 scene.

A noise vector of :data:`LATENT` standard normals codes one object: its first four numbers pick
the position, shape, colour and size (each by equal-probability bins of the standard normal, so
standard-normal noise draws every kind of scene equally often), and the other six are the
renderer's jitter of that object (offset, scale, colour shift). The network is a small decoder
trained to draw, from the noise vector alone, what the renderer draws for the scene the vector
codes: so it is smooth where the code is not, and a noise vector between two bins draws a blend,
which is what lets a reward's gradient move an action from one kind of scene to another.

Why a prescribed code rather than a VAE's learned one: a conv VAE of this size, trained on one
CPU thread, sat at an empty grey picture for its first hundreds of steps (the object covers a few
percent of the pixels) and would have needed far more than a few minutes; a decoder of a fixed
code trains in about two minutes and draws every one of the 540 kinds of scene (6 shapes ×
9 colours × 2 sizes × 5 places).

Only the decoder ships (``weights/scenegen.safetensors``). Trained reproducibly on one CPU thread
by :func:`train_scenegen` (part of ``python -m tracer_pipeline.sceneworld.train`` and of
``trajectory-tracer train-sceneworld``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tracer_pipeline.sceneworld.grammar import COLOURS, POSITIONS, SHAPES, SIZES, Scene, SceneObject
from tracer_pipeline.sceneworld.render import BACKGROUND, JITTER_DIM, JITTER_PER_SLOT, image_array, render

CODED = (POSITIONS, SHAPES, COLOURS, SIZES)  # what the first numbers of a noise vector pick
LATENT = len(CODED) + JITTER_PER_SLOT
NAME = "scenegen"
POOL = 4000  # (noise, scene) pairs drawn once (fewer for a short schedule): rendering costs more than a step


@dataclass(frozen=True)
class SceneGenConfig:
    latent: int = LATENT
    channels: tuple[int, ...] = (48, 32, 16)


class SceneGenDecoder(nn.Module):
    """Noise (B, latent) → images (B, 3, 64, 64) in [0, 1]: a linear map to 8×8 features, two
    doublings (nearest upsampling and a 3×3 convolution each), and a sub-pixel convolution for
    the last doubling, so that no convolution runs at full resolution."""

    def __init__(self, config: SceneGenConfig):
        super().__init__()
        self.config = config
        c0, c1, c2 = config.channels
        self.project = nn.Sequential(nn.Linear(config.latent, 128), nn.SiLU(), nn.Linear(128, c0 * 8 * 8))
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c0, c1, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c2, 3 * 4, 3, padding=1), nn.PixelShuffle(2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = F.silu(self.project(z)).view(z.shape[0], self.config.channels[0], 8, 8)
        return torch.sigmoid(self.body(features))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(float(x) / math.sqrt(2.0)))


def scene_of(noise: np.ndarray) -> tuple[Scene, np.ndarray]:
    """The scene a noise vector codes, and the renderer's jitter vector for it."""
    picks = [values[min(int(_normal_cdf(x) * len(values)), len(values) - 1)]
             for x, values in zip(noise, CODED, strict=False)]
    position, shape, colour, size = picks
    jitter = np.zeros(JITTER_DIM)
    slot = POSITIONS.index(position)
    jitter[slot * JITTER_PER_SLOT:(slot + 1) * JITTER_PER_SLOT] = np.clip(noise[len(CODED):], -2.0, 2.0)
    return Scene((SceneObject(shape=shape, colour=colour, size=size, position=position),)), jitter


def _pool(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, 4])
    noise = rng.standard_normal((count, LATENT))
    images = [image_array(render(*scene_of(z))) for z in noise]
    return torch.from_numpy(noise.astype(np.float32)), torch.from_numpy(np.stack(images))


def train_scenegen(out_dir: Path, seed: int, tokenizer: object = None,
                   progress: Callable[[str, int, int, float], None] | None = None) -> float:
    """Train the decoder and save it to ``out_dir``; the final loss. ``tokenizer`` is unused:
    the signature is the other SceneWorld trainers'."""
    from safetensors.torch import save_file

    from tracer_pipeline.sceneworld.networks import save_config
    from tracer_pipeline.sceneworld.train import SCHEDULE, _learning_rate

    steps, batch, peak = SCHEDULE[NAME]  # (2000, 32, 3e-3): a few CPU-minutes on one thread
    torch.manual_seed(seed * 1000 + 4)
    config = SceneGenConfig()
    decoder = SceneGenDecoder(config)
    noise, images = _pool(seed, min(POOL, steps * batch))
    background = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    generator = torch.Generator().manual_seed(seed * 1000 + 14)
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=peak, weight_decay=0.01)
    loss_value = float("nan")
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, steps, peak)
        index = torch.randint(len(noise), (batch,), generator=generator)
        target = images[index]
        # The object covers a few percent of the pixels: unweighted, the loss is least at an
        # empty grey picture, where training stalls (as SceneT2I's did).
        weight = 1.0 + 9.0 * ((target - background).abs().sum(dim=1, keepdim=True) > 0.05)
        error = decoder(noise[index]) - target
        loss = (weight * (error.abs() + 4.0 * error.pow(2))).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        loss_value = loss.item()
        if progress is not None and (step % 50 == 0 or step == steps - 1):
            progress(NAME, step + 1, steps, loss_value)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in decoder.state_dict().items()},
              str(out_dir / f"{NAME}.safetensors"))
    save_config(config, out_dir / f"{NAME}.json")
    return loss_value


def load_decoder(weights_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> SceneGenDecoder:
    """The shipped decoder in eval mode; :class:`WeightsNotFoundError` naming what to do when absent."""
    from safetensors.torch import load_file

    from tracer_pipeline.errors import WeightsNotFoundError
    from tracer_pipeline.sceneworld.networks import load_config

    missing = [f for f in (f"{NAME}.safetensors", f"{NAME}.json") if not (weights_dir / f).exists()]
    if missing:
        raise WeightsNotFoundError(
            f"SceneGen weights missing in {weights_dir}: {', '.join(missing)}; retrain them with "
            f"`python -m tracer_pipeline.sceneworld.train --out {weights_dir} --only {NAME}`")
    decoder = SceneGenDecoder(load_config(SceneGenConfig, weights_dir / f"{NAME}.json"))
    decoder.load_state_dict(load_file(str(weights_dir / f"{NAME}.safetensors")))
    return decoder.to(device=device, dtype=dtype).eval()
