"""Embedding models run with open_clip: CLIP ViT-B/32, ViT-L/14 and a tiny twin.

Every one loads with ``open_clip.create_model_and_transforms("local-dir:<directory>")``, the
same code as ``hf-hub:<repository>`` minus the download: the directory holds the repository's
``open_clip_config.json`` and weights (a real download, or a tiny model built on first use).
Texts and images land in one joint space; vectors are returned as float32 unit vectors.
"""

from __future__ import annotations

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
    Modality,
    ModelFailure,
    ModelKind,
    ModelSpec,
    Output,
    normalise,
)
from tracer_pipeline.models.runtime import one_item_at_a_time, run_items
from tracer_pipeline.models.weights import HubWeights

Weights = HubWeights | tiny.TinyWeights
PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass
class OpenClipEmbedder:
    """Text or image → unit vector in CLIP's joint space."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    dimension: int
    one_at_a_time: bool

    def _batch(self, items: list[Output], seeds: list[int]) -> list[np.ndarray | ModelFailure]:
        import torch

        text_at = [i for i, x in enumerate(items) if isinstance(x, str)]
        image_at = [i for i, x in enumerate(items) if isinstance(x, Image.Image)]
        if len(text_at) + len(image_at) != len(items):
            raise TypeError("expected text or images")
        dtype = next(self.model.parameters()).dtype
        vectors: dict[int, Any] = {}
        with torch.inference_mode():
            if text_at:
                tokens = self.tokenizer([items[i] for i in text_at]).to(self.device)
                vectors.update(zip(text_at, self.model.encode_text(tokens), strict=True))
            if image_at:
                pixels = torch.stack([self.preprocess(items[i].convert("RGB"))  # type: ignore[union-attr]
                                      for i in image_at])
                vectors.update(zip(image_at, self.model.encode_image(pixels.to(self.device, dtype)),
                                   strict=True))
        return [normalise(vectors[i].float().cpu().numpy()) for i in range(len(items))]

    def embed(self, items: Sequence[Output]) -> list[np.ndarray | ModelFailure]:
        # Embeddings use no randomness; the seeds only satisfy run_items' signature.
        return run_items(self._batch, items, [0] * len(items), self.one_at_a_time)


def load(weights: Weights, spec: ModelSpec, options: LoadOptions) -> OpenClipEmbedder:
    """Load an open_clip model (real or tiny) from its directory onto ``options.device``."""
    directory = weights.locate(spec, options)
    import open_clip

    name = f"local-dir:{directory}"
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, precision=PRECISION[options.dtype], device=options.device)
    model.eval()
    return OpenClipEmbedder(model=model, preprocess=preprocess,
                            tokenizer=open_clip.get_tokenizer(name), device=options.device,
                            dimension=int(model.visual.output_dim),
                            one_at_a_time=one_item_at_a_time(options))


def _hub(repo_id: str) -> HubWeights:
    # local-dir: needs both the config and a checkpoint: with the config alone, open_clip
    # would warn and carry on with random weights.
    return HubWeights(repo_id, (("open_clip_config.json",),
                                ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")))


def _spec(name: str, family: Family, weights: Weights, description: str, source: str,
          params: dict[str, Any], aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(name=name, kind=ModelKind.EMBEDDING, family=family, description=description,
                     loader=partial(load, weights), source=source, params=params,
                     embeds=frozenset({Modality.TEXT, Modality.IMAGE}), aliases=aliases,
                     weights_available=weights.available)


SPECS = [
    _spec("CLIP-ViT-B-32", Family.REAL,
          _hub("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
          "CLIP ViT-B/32 trained by LAION on LAION-2B (open_clip tag laion2b_s34b_b79k): "
          "512-d joint text-image embedding.",
          "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
          {"architecture": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
          aliases=("clip-vit-base-patch32",)),
    _spec("CLIP-ViT-L-14", Family.REAL,
          _hub("laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
          "CLIP ViT-L/14 trained by LAION on LAION-2B (open_clip tag laion2b_s32b_b82k): "
          "768-d joint text-image embedding.",
          "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
          {"architecture": "ViT-L-14", "pretrained": "laion2b_s32b_b82k"}),
    _spec("TinyCLIP", Family.TINY, tiny.TinyWeights(tiny.build_clip),
          "Tiny twin of the CLIP models (open_clip CLIP, 2-layer towers, 32-d). Random "
          "weights: its vectors are noise, and text-image similarities mean nothing.",
          "built locally (seeded random weights)", {"architecture": "tiny", "dimension": 32}),
]
