"""Text-to-image models run with diffusers: SD-Turbo, SDXL-Turbo, FLUX.1-schnell and their tiny
twins.

A real model and its tiny twin share one loader, ``AutoPipelineForText2Image.from_pretrained``
on a directory; only the directory differs (a downloaded repository, or a tiny model built
on first use, see :mod:`tracer_pipeline.models.tiny`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from tracer_pipeline.models import tiny
from tracer_pipeline.models.base import (
    Family,
    LoadOptions,
    ModelFailure,
    ModelKind,
    ModelSpec,
    Output,
)
from tracer_pipeline.models.runtime import one_item_at_a_time, run_items, torch_dtype
from tracer_pipeline.models.weights import HubWeights

Weights = HubWeights | tiny.TinyWeights


@dataclass
class DiffusionTextToImage:
    """Prompt → RGB image with a diffusers text-to-image pipeline.

    Item ``i``'s starting noise (and any noise a sampler adds) comes from its own CPU
    ``torch.Generator`` seeded with ``seeds[i]``, so an image depends on its prompt and seed
    only, and CPU generators give the same noise on every device.
    """

    pipeline: Any
    steps: int
    guidance: float
    size: int
    extra: dict[str, Any]
    one_at_a_time: bool

    def _batch(self, prompts: list[Output], seeds: list[int]) -> list[Output | ModelFailure]:
        import torch

        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("expected text prompts, got an image")
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        with torch.inference_mode():
            result = self.pipeline(prompt=prompts, num_inference_steps=self.steps,
                                   guidance_scale=self.guidance, height=self.size,
                                   width=self.size, generator=generators, output_type="np",
                                   **self.extra)
        return [_to_image(array) for array in result.images]

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return run_items(self._batch, inputs, seeds, self.one_at_a_time)


def _to_image(array: np.ndarray) -> Image.Image | ModelFailure:
    """An RGB image from the pipeline's [0, 1] float array; NaN (e.g. a float16 overflow,
    which diffusers would silently turn black) is a failure, not a picture."""
    if not np.all(np.isfinite(array)):
        return ModelFailure("NonFiniteImage", "the model produced NaN or infinite pixels")
    pixels = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels)


def load(weights: Weights, spec: ModelSpec, options: LoadOptions,
         half: str | None = None) -> DiffusionTextToImage:
    """Load ``spec`` from its directory (real or tiny) onto ``options.device``."""
    directory = weights.locate(spec, options)
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):  # diffusers' loading bar ignores it otherwise
        diffusers_logging.disable_progress_bar()
    pipeline = AutoPipelineForText2Image.from_pretrained(
        directory, dtype=torch_dtype(options, half), local_files_only=True)
    pipeline.to(options.device)
    pipeline.set_progress_bar_config(disable=True)
    extra = {k: spec.params[k] for k in ("max_sequence_length",) if k in spec.params}
    return DiffusionTextToImage(pipeline=pipeline, steps=int(spec.params["steps"]),
                                guidance=float(spec.params["guidance"]),
                                size=int(spec.params["size"]), extra=extra,
                                one_at_a_time=one_item_at_a_time(options))


def _spec(name: str, family: Family, weights: Weights, description: str, source: str,
          params: dict[str, Any], half: str | None = None) -> ModelSpec:
    return ModelSpec(name=name, kind=ModelKind.TEXT_TO_IMAGE, family=family,
                     description=description, loader=partial(load, weights, half=half),
                     source=source, params=params,
                     weights_available=weights.available)


def _hub(repo_id: str) -> HubWeights:
    return HubWeights(repo_id, (("model_index.json",),))


NOISE = "Random weights: its images are noise, not pictures of the prompt."
SPECS = [
    _spec("SDTurbo", Family.REAL, _hub("stabilityai/sd-turbo"),
          "Stable Diffusion Turbo (SD 2.1 distilled): 1 step, no guidance, 512 px.",
          "stabilityai/sd-turbo", {"steps": 1, "guidance": 0.0, "size": 512}),
    _spec("SDXLTurbo", Family.REAL, _hub("stabilityai/sdxl-turbo"),
          "SDXL-Turbo: 1 step, no guidance, 512 px.",
          "stabilityai/sdxl-turbo", {"steps": 1, "guidance": 0.0, "size": 512}),
    _spec("FluxSchnell", Family.REAL, _hub("black-forest-labs/FLUX.1-schnell"),
          "FLUX.1-schnell: 4 steps, no guidance, 1024 px; bfloat16 for half precision "
          "(float16 overflows). Needs about 34 GB of GPU memory.",
          "black-forest-labs/FLUX.1-schnell",
          {"steps": 4, "guidance": 0.0, "size": 1024, "max_sequence_length": 256},
          half="bfloat16"),
    _spec("TinySD", Family.TINY, tiny.TinyWeights(tiny.build_sd),
          f"Tiny twin of SDTurbo (StableDiffusionPipeline, 64 px, 1 step). {NOISE}",
          "built locally (seeded random weights)", {"steps": 1, "guidance": 0.0, "size": tiny.SIZE}),
    _spec("TinySDXL", Family.TINY, tiny.TinyWeights(tiny.build_sdxl),
          f"Tiny twin of SDXLTurbo (StableDiffusionXLPipeline, 64 px, 1 step). {NOISE}",
          "built locally (seeded random weights)", {"steps": 1, "guidance": 0.0, "size": tiny.SIZE}),
    _spec("TinyFlux", Family.TINY, tiny.TinyWeights(tiny.build_flux),
          f"Tiny twin of FluxSchnell (FluxPipeline, 64 px, 4 steps). {NOISE}",
          "built locally (seeded random weights)",
          {"steps": 4, "guidance": 0.0, "size": tiny.SIZE, "max_sequence_length": 64},
          half="bfloat16"),
]
