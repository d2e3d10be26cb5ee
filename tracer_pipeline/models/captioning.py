"""Image-to-text models run with transformers: BLIP, Florence-2 and their tiny twins.

A real model and its tiny twin share one loader (``from_pretrained`` on a directory); only the
directory differs. Captions are decoded deterministically (greedy, or beam search where the
model's authors use it), so the seed does not change them: an image's caption depends on the
image alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from PIL import Image

from tracer_pipeline.errors import ModelLoadError
from tracer_pipeline.models import tiny
from tracer_pipeline.models.base import (
    Family,
    LoadOptions,
    ModelFailure,
    ModelKind,
    ModelSpec,
    Output,
    check_caption,
)
from tracer_pipeline.models.runtime import one_item_at_a_time, run_items, torch_dtype
from tracer_pipeline.models.weights import HubWeights

Weights = HubWeights | tiny.TinyWeights
CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


def _images(inputs: list[Output]) -> list[Image.Image]:
    if not all(isinstance(x, Image.Image) for x in inputs):
        raise TypeError("expected images, got text")
    return [x.convert("RGB") for x in inputs]  # type: ignore[union-attr]


@dataclass
class BlipCaptioner:
    """Image → caption with ``BlipForConditionalGeneration`` (unconditional captioning)."""

    processor: Any
    model: Any
    max_new_tokens: int
    num_beams: int
    one_at_a_time: bool

    def _batch(self, images: list[Output], seeds: list[int]) -> list[Output | ModelFailure]:
        import torch

        batch = self.processor(images=_images(images), return_tensors="pt")
        pixels = batch["pixel_values"].to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            tokens = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens,
                                         num_beams=self.num_beams, do_sample=False)
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [check_caption(t) for t in texts]

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return run_items(self._batch, inputs, seeds, self.one_at_a_time)


@dataclass
class Florence2Captioner:
    """Image → caption with ``Florence2ForConditionalGeneration`` and a captioning task token."""

    processor: Any
    model: Any
    task: str
    max_new_tokens: int
    num_beams: int
    one_at_a_time: bool

    def _batch(self, images: list[Output], seeds: list[int]) -> list[Output | ModelFailure]:
        import torch

        pictures = _images(images)
        batch = self.processor(text=[self.task] * len(pictures), images=pictures,
                               return_tensors="pt")
        with torch.inference_mode():
            tokens = self.model.generate(
                input_ids=batch["input_ids"].to(self.model.device),
                pixel_values=batch["pixel_values"].to(self.model.device, self.model.dtype),
                max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False)
        # Caption tasks are pure text: dropping special tokens is all that Florence-2's
        # post-processing does for them, and it also drops the padding of shorter beams.
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [check_caption(t) for t in texts]

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return run_items(self._batch, inputs, seeds, self.one_at_a_time)


def _from_pretrained(cls: Any, directory: Any, spec: ModelSpec, options: LoadOptions,
                     **kwargs: Any) -> Any:
    # Code from a model repository runs only when the user named this model explicitly.
    return cls.from_pretrained(directory, local_files_only=True,
                               trust_remote_code=spec.name in options.trust_remote_code, **kwargs)


def load_blip(weights: Weights, spec: ModelSpec, options: LoadOptions) -> BlipCaptioner:
    """Load a BLIP captioner (real or tiny) onto ``options.device``."""
    directory = weights.locate(spec, options)
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = _from_pretrained(BlipProcessor, directory, spec, options)
    model = _from_pretrained(BlipForConditionalGeneration, directory, spec, options,
                             dtype=torch_dtype(options)).to(options.device).eval()
    return BlipCaptioner(processor=processor, model=model,
                         max_new_tokens=int(spec.params["max_new_tokens"]),
                         num_beams=int(spec.params["num_beams"]),
                         one_at_a_time=one_item_at_a_time(options))


def load_florence2(weights: Weights, spec: ModelSpec, options: LoadOptions) -> Florence2Captioner:
    """Load a Florence-2 captioner (real or tiny) onto ``options.device``."""
    task = str(spec.params["task"])
    if task not in CAPTION_TASKS:
        raise ModelLoadError(f"model {spec.name}: task {task!r} is not a captioning task; "
                             f"use one of {', '.join(CAPTION_TASKS)}")
    directory = weights.locate(spec, options)
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    processor = _from_pretrained(Florence2Processor, directory, spec, options)
    model = _from_pretrained(Florence2ForConditionalGeneration, directory, spec, options,
                             dtype=torch_dtype(options)).to(options.device).eval()
    return Florence2Captioner(processor=processor, model=model, task=task,
                              max_new_tokens=int(spec.params["max_new_tokens"]),
                              num_beams=int(spec.params["num_beams"]),
                              one_at_a_time=one_item_at_a_time(options))


def _hub(repo_id: str) -> HubWeights:
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return HubWeights(repo_id, (("config.json",), weights))


def _spec(name: str, family: Family, loader: Any, weights: Weights, description: str,
          source: str, params: dict[str, Any]) -> ModelSpec:
    return ModelSpec(name=name, kind=ModelKind.IMAGE_TO_TEXT, family=family,
                     description=description, loader=partial(loader, weights), source=source,
                     params=params, weights_available=weights.available)


NOISE = "Random weights: its captions are noise (random words), not descriptions."
SPECS = [
    _spec("BLIP", Family.REAL, load_blip, _hub("Salesforce/blip-image-captioning-large"),
          "BLIP large: unconditional image captioning, greedy decoding.",
          "Salesforce/blip-image-captioning-large", {"max_new_tokens": 50, "num_beams": 1}),
    _spec("Florence2", Family.REAL, load_florence2, _hub("florence-community/Florence-2-base"),
          "Florence-2 base (transformers-native): <MORE_DETAILED_CAPTION>, beam search (3).",
          "florence-community/Florence-2-base",
          {"task": "<MORE_DETAILED_CAPTION>", "max_new_tokens": 256, "num_beams": 3}),
    _spec("TinyBLIP", Family.TINY, load_blip, tiny.TinyWeights(tiny.build_blip),
          f"Tiny twin of BLIP (BlipForConditionalGeneration, 64 px input). {NOISE}",
          "built locally (seeded random weights)", {"max_new_tokens": 20, "num_beams": 1}),
    _spec("TinyFlorence2", Family.TINY, load_florence2, tiny.TinyWeights(tiny.build_florence2),
          f"Tiny twin of Florence2 (Florence2ForConditionalGeneration, 64 px input). {NOISE}",
          "built locally (seeded random weights)",
          {"task": "<MORE_DETAILED_CAPTION>", "max_new_tokens": 20, "num_beams": 3}),
]
