"""Noise-to-image generators: what a steering run searches. Registry entries and adapters.

An action is a float32 array of the generator's ``action_shape`` (a standard-normal draw is a
typical one); :meth:`NoiseGenerator.decode` turns a batch of actions into pictures,
deterministically. Three entries:

- **SceneGen**: the unconditional SceneWorld generator (:mod:`tracer_pipeline.sceneworld.scenegen`),
  a 16-d noise vector → a 64×64 one-object scene; shipped weights, runs on CPU in milliseconds.
- **DDPMCifar10**: google/ddpm-cifar10-32, a diffusers ``UNet2DModel`` sampled with a
  deterministic DDIM schedule (η = 0) from the action as its initial noise, as ``DDIMPipeline``
  does. Loaded with ``DDIMPipeline.from_pretrained`` from a local copy or the Hugging Face cache;
  absent weights are a :class:`WeightsNotFoundError` saying where it looked and what to do.
- **TinyDDIM**: its tiny twin, the same classes with a small config and seeded random weights,
  built on first use. Its pictures are noise, honestly.

Importing this module never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from tracer_pipeline.models import tiny
from tracer_pipeline.models.base import Family, LoadOptions, ModelKind, ModelSpec
from tracer_pipeline.models.runtime import torch_dtype
from tracer_pipeline.models.weights import HubWeights

# Bump when the code changes what a generator draws from an action.
VERSION = "1"


@runtime_checkable
class NoiseGenerator(Protocol):
    """An unconditional generator: actions (noise) in, one picture per action out."""

    action_shape: tuple[int, ...]

    def decode(self, actions: np.ndarray) -> list[Image.Image]:
        """Pictures of ``actions`` (N, *action_shape) float32, in order; the same actions always
        give the same pictures."""
        ...


def _pictures(pixels: Any) -> list[Image.Image]:
    """(N, 3, H, W) tensor in [0, 1] → RGB pictures."""
    array = pixels.float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1)
    return [Image.fromarray(np.rint(a * 255.0).astype(np.uint8), mode="RGB") for a in array]


class SceneGen:
    """The SceneWorld decoder behind the :class:`NoiseGenerator` interface."""

    def __init__(self, options: LoadOptions):
        from tracer_pipeline.sceneworld.models import WEIGHTS_DIR
        from tracer_pipeline.sceneworld.scenegen import load_decoder

        self.decoder = load_decoder(WEIGHTS_DIR, options.device, torch_dtype(options))
        self.action_shape = (self.decoder.config.latent,)

    def decode(self, actions: np.ndarray) -> list[Image.Image]:
        import torch

        parameter = next(self.decoder.parameters())
        with torch.inference_mode():
            return _pictures(self.decoder(torch.from_numpy(np.asarray(actions, np.float32)).to(parameter)))


@dataclass
class DiffusionNoiseGenerator:
    """A diffusers unconditional UNet sampled by DDIM with η = 0: the action is the initial noise,
    and nothing else is random, so an action always gives the same picture."""

    unet: Any
    scheduler: Any
    steps: int
    action_shape: tuple[int, ...]

    def decode(self, actions: np.ndarray) -> list[Image.Image]:
        import torch

        parameter = next(self.unet.parameters())
        sample = torch.from_numpy(np.asarray(actions, np.float32)).to(parameter)
        self.scheduler.set_timesteps(self.steps)
        with torch.inference_mode():
            for t in self.scheduler.timesteps:
                noise = self.unet(sample, t).sample
                sample = self.scheduler.step(noise, t, sample, eta=0.0).prev_sample
        return _pictures(sample / 2 + 0.5)


def _load_scenegen(spec: ModelSpec, options: LoadOptions) -> SceneGen:
    return SceneGen(options)


def _load_diffusion(weights: HubWeights | tiny.TinyWeights, spec: ModelSpec,
                    options: LoadOptions) -> DiffusionNoiseGenerator:
    directory = weights.locate(spec, options)
    from diffusers import DDIMPipeline, DDIMScheduler
    from diffusers.utils import logging as diffusers_logging

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):  # diffusers' loading bar ignores it otherwise
        diffusers_logging.disable_progress_bar()
    pipeline = DDIMPipeline.from_pretrained(directory, dtype=torch_dtype(options), local_files_only=True)
    unet = pipeline.unet.to(options.device).eval()
    config = unet.config
    return DiffusionNoiseGenerator(
        unet=unet, scheduler=DDIMScheduler.from_config(pipeline.scheduler.config),
        steps=int(spec.params["steps"]),
        action_shape=(int(config.in_channels), int(config.sample_size), int(config.sample_size)))


def build_tiny_ddim(directory: Any) -> None:
    """ddpm-cifar10-32's shape, small: a two-level UNet2DModel at 32 px and a DDIM scheduler."""
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    with tiny.seeded():
        unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                           block_out_channels=(16, 32), norm_num_groups=8,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(directory)


def _scenegen_available(options: LoadOptions) -> bool:
    from tracer_pipeline.sceneworld.models import WEIGHTS_DIR

    return (WEIGHTS_DIR / "scenegen.safetensors").exists()


_DDPM = HubWeights("google/ddpm-cifar10-32", (("model_index.json",), ("unet/config.json",)))
_TINY_DDIM = tiny.TinyWeights(build_tiny_ddim)

SPECS = [
    ModelSpec(
        name="SceneGen", kind=ModelKind.NOISE_TO_IMAGE, family=Family.SCENEWORLD, loader=_load_scenegen,
        description="Unconditional SceneWorld generator: a 16-d noise vector → a 64×64 scene of one "
                    "shape (the decoder of a small VAE trained on rendered scenes).",
        version=VERSION, source="shipped: weights/scenegen.safetensors", params={"size": 64},
        weights_available=_scenegen_available,
    ),
    ModelSpec(
        name="DDPMCifar10", kind=ModelKind.NOISE_TO_IMAGE, family=Family.REAL,
        loader=partial(_load_diffusion, _DDPM),
        description="google/ddpm-cifar10-32 (UNet2DModel, 32 px) sampled by deterministic DDIM "
                    "(η = 0, 20 steps) from the action as its initial noise.",
        version=VERSION, source="google/ddpm-cifar10-32", params={"steps": 20, "size": 32},
        weights_available=_DDPM.available,
    ),
    ModelSpec(
        name="TinyDDIM", kind=ModelKind.NOISE_TO_IMAGE, family=Family.TINY,
        loader=partial(_load_diffusion, _TINY_DDIM),
        description="Tiny twin of DDPMCifar10 (UNet2DModel + DDIMScheduler, 32 px, 2 steps). "
                    "Random weights: its images are noise.",
        version=VERSION, source="built locally (seeded random weights)", params={"steps": 2, "size": 32},
        weights_available=_TINY_DDIM.available,
    ),
]
