"""The SceneWorld models as registry entries and adapters: SceneT2I (and its supervised
baseline SceneT2ISupervised), SceneI2T, SceneCLIP.

Small learned models of the SceneWorld grammar, trained by :mod:`tracer_pipeline.sceneworld.train`
and shipped in ``weights/``, so offline CPU runs show real drift and collapse. torch is imported
only when a model loads. Every item is computed on its own, so a batch gives exactly what the
items give one by one, and a generator's noise (and what it draws for attributes a prompt leaves
out) comes from the item's seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tracer_pipeline.errors import WeightsNotFoundError
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

WEIGHTS_DIR = Path(__file__).parent / "weights"
# Bump when retrained weights or changed code change what a model outputs: VERSION for
# SceneT2ISupervised, SceneI2T and SceneI2TSampled, T2I_VERSION for SceneT2I (version 1 was the
# supervised generator reading prompts word by word), CLIP_VERSION for SceneCLIP (version 1, a ViT
# image tower trained without hard-negative captions and cutouts, barely told shapes apart).
VERSION = "1"
T2I_VERSION = "2"
CLIP_VERSION = "2"
# What train_all writes; the sceneworld_models asset's code version.
TRAINING_VERSION = "3"
# The seed's stream for the cycle generator's latent noise, apart from the jitter's and the
# prompt reader's.
_LATENT_STREAM = 0x1A7E
_CPU = LoadOptions()
TOKENIZER_FILE = "tokenizer.json"


def weight_files(name: str) -> tuple[str, str]:
    """(weights, config) file names of one network (generator, captioner, clip) in a directory."""
    return f"{name}.safetensors", f"{name}.json"


def check_weights(weights_dir: Path, name: str) -> None:
    """A clear error naming what of one network is missing in ``weights_dir``, and how to get it."""
    missing = [f for f in (*weight_files(name), TOKENIZER_FILE) if not (weights_dir / f).exists()]
    if missing:
        raise WeightsNotFoundError(
            f"SceneWorld weights missing in {weights_dir}: {', '.join(missing)}; retrain them with "
            f"`python -m tracer_pipeline.sceneworld.train --out {weights_dir}`")


def _load_network(weights_dir: Path, name: str, options: LoadOptions) -> Any:
    """(network in eval mode on the requested device and dtype, tokenizer)."""
    import torch
    from safetensors.torch import load_file

    from tracer_pipeline.sceneworld import networks as nets
    from tracer_pipeline.sceneworld.tokenizer import WordTokenizer

    check_weights(weights_dir, name)
    weights, config_file = weight_files(name)
    if name in ("generator", "generator_cycle"):
        kind = nets.SceneGenerator if name == "generator" else nets.CycleSceneGenerator
        network = kind(nets.load_config(nets.GeneratorConfig, weights_dir / config_file))
    elif name == "captioner":
        network = nets.SceneCaptioner(nets.load_config(nets.CaptionerConfig, weights_dir / config_file))
    else:
        network = nets.build_clip(nets.load_config(nets.ClipConfig, weights_dir / config_file))
    network.load_state_dict(load_file(str(weights_dir / weights)))
    network.to(device=options.device, dtype=getattr(torch, options.dtype)).eval()
    return network, WordTokenizer.load(weights_dir / TOKENIZER_FILE)


class SceneT2I:
    """Caption → 64×64 scene. The seed draws the noise vector (the renderer's jitter, and the
    cycle generator's latent noise), so one prompt gives a family of slightly different pictures
    of the same scene.

    With ``read_prompts`` a prompt is first read as people write it
    (:func:`~tracer_pipeline.sceneworld.prompts.prompt_caption`: synonyms, extra and unknown
    words, attributes left out drawn by the seed) and the network draws that scene's canonical
    caption; without, the network reads the prompt's words as they are."""

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, options: LoadOptions = _CPU,
                 network: str = "generator_cycle", read_prompts: bool = True):
        self.network, self.tokenizer = _load_network(weights_dir, network, options)
        self.read_prompts = read_prompts

    def _one(self, text: str, seed: int) -> Image.Image:
        import torch

        from tracer_pipeline.sceneworld.prompts import prompt_caption
        from tracer_pipeline.sceneworld.render import jitter_from_seed

        parameter = next(self.network.parameters())
        caption = prompt_caption(text, seed) if self.read_prompts else text
        tokens = torch.tensor([self.tokenizer.encode(caption)], device=parameter.device)
        noise = jitter_from_seed(seed)
        latent_size = getattr(self.network, "latent_size", 0)
        if latent_size:
            latent = np.random.default_rng([_LATENT_STREAM, seed]).standard_normal(latent_size)
            noise = np.concatenate([noise, latent])
        with torch.inference_mode():
            pixels = self.network(tokens, torch.from_numpy(noise[None]).to(parameter))[0].float().cpu().numpy()
        array = np.clip(np.rint(pixels.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="RGB")

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return each_item("SceneT2I", "text", inputs, seeds, self._one)


class SceneI2T:
    """Image → caption: any image is first resized to 64×64. Greedy when ``temperature`` is 0
    (the seed is then unused), else each word is sampled with a generator seeded by the run's
    seed: a lossier captioner whose misreadings make runs drift."""

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, options: LoadOptions = _CPU, temperature: float = 0.0):
        self.network, self.tokenizer = _load_network(weights_dir, "captioner", options)
        self.temperature = temperature

    def _one(self, image: Image.Image, seed: int) -> str:
        import torch

        from tracer_pipeline.sceneworld.render import image_array

        parameter = next(self.network.parameters())
        pixels = torch.from_numpy(image_array(image)[None]).to(parameter)
        generator = torch.Generator("cpu").manual_seed(seed) if self.temperature > 0 else None
        with torch.inference_mode():
            ids = self.network.decode(pixels, self.tokenizer.bos_id, self.tokenizer.eos_id,
                                      self.temperature, generator)
        return self.tokenizer.decode(ids)

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        return each_item("SceneI2T", "image", inputs, seeds, lambda image, seed: check_caption(self._one(image, seed)))


class SceneCLIP:
    """Text and images → one 64-d space, trained contrastively on SceneWorld (scene, caption)
    pairs: a caption lies near the pictures it describes."""

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, options: LoadOptions = _CPU):
        self.network, self.tokenizer = _load_network(weights_dir, "clip", options)
        self.dimension = int(self.network.text_projection.shape[1])

    def _one(self, item: Output) -> np.ndarray:
        import torch

        from tracer_pipeline.sceneworld.networks import clip_pixels
        from tracer_pipeline.sceneworld.render import image_array

        parameter = next(self.network.parameters())
        with torch.inference_mode():
            if isinstance(item, str):
                tokens = torch.tensor([self.tokenizer.encode(item)], device=parameter.device)
                vector = self.network.encode_text(tokens)
            else:
                pixels = torch.from_numpy(image_array(item)[None]).to(parameter)
                vector = self.network.encode_image(clip_pixels(pixels))
        return vector[0].float().cpu().numpy()

    def embed(self, items: Sequence[Output]) -> list[np.ndarray | ModelFailure]:
        results: list[np.ndarray | ModelFailure] = []
        for item in items:
            try:
                results.append(normalise(self._one(item)))
            except Exception as exc:  # one bad item must not fail the batch
                results.append(ModelFailure.from_exception(exc))
        return results


def _load_t2i(spec: ModelSpec, options: LoadOptions) -> SceneT2I:
    return SceneT2I(WEIGHTS_DIR, options)


def _load_t2i_supervised(spec: ModelSpec, options: LoadOptions) -> SceneT2I:
    return SceneT2I(WEIGHTS_DIR, options, network="generator", read_prompts=False)


def _load_i2t(spec: ModelSpec, options: LoadOptions) -> SceneI2T:
    return SceneI2T(WEIGHTS_DIR, options, temperature=float(spec.params["temperature"]))


def _load_clip(spec: ModelSpec, options: LoadOptions) -> SceneCLIP:
    return SceneCLIP(WEIGHTS_DIR, options)


def _available(name: str) -> Any:
    def check(options: LoadOptions) -> bool:
        return (WEIGHTS_DIR / weight_files(name)[0]).exists()
    return check


SPECS = [
    ModelSpec(
        name="SceneT2I", kind=ModelKind.TEXT_TO_IMAGE, family=Family.SCENEWORLD, loader=_load_t2i,
        description="SceneWorld text→image: reads prompts as people write them (attributes left "
                    "out drawn by the seed, synonyms, unknown words ignored), drawn by a small "
                    "decoder trained by text→image→text consistency through SceneI2T; 1–3 "
                    "shapes at 64×64, the seed jitters position, size and colour.",
        version=T2I_VERSION, source=f"shipped: {WEIGHTS_DIR.name}/generator_cycle.safetensors",
        params={"size": 64}, weights_available=_available("generator_cycle"),
    ),
    ModelSpec(
        name="SceneT2ISupervised", kind=ModelKind.TEXT_TO_IMAGE, family=Family.SCENEWORLD,
        loader=_load_t2i_supervised,
        description="SceneWorld text→image, the baseline: the decoder trained on rendered scenes "
                    "alone, reading the prompt's words as they are (SceneT2I before version 2).",
        version=VERSION, source=f"shipped: {WEIGHTS_DIR.name}/generator.safetensors",
        params={"size": 64}, weights_available=_available("generator"),
    ),
    ModelSpec(
        name="SceneI2T", kind=ModelKind.IMAGE_TO_TEXT, family=Family.SCENEWORLD, loader=_load_i2t,
        description="SceneWorld image→text: a small trained captioner (conv encoder, GRU "
                    "decoder with attention), greedy: the faithful setting.",
        version=VERSION, source=f"shipped: {WEIGHTS_DIR.name}/captioner.safetensors",
        params={"decoding": "greedy", "temperature": 0.0}, weights_available=_available("captioner"),
    ),
    ModelSpec(
        name="SceneI2TSampled", kind=ModelKind.IMAGE_TO_TEXT, family=Family.SCENEWORLD, loader=_load_i2t,
        description="SceneWorld image→text, the same captioner sampling each word at temperature 2 with "
                    "the run's seed: the lossy setting, whose misreadings make runs drift.",
        version=VERSION, source=f"shipped: {WEIGHTS_DIR.name}/captioner.safetensors",
        params={"decoding": "sampled", "temperature": 2.0}, weights_available=_available("captioner"),
    ),
    ModelSpec(
        name="SceneCLIP", kind=ModelKind.EMBEDDING, family=Family.SCENEWORLD, loader=_load_clip,
        description="SceneWorld joint text–image embedding: a small open_clip CLIP trained "
                    "contrastively on (scene, caption) pairs, with captions that differ only in one "
                    "object's shape, colour, size or position as hard negatives, and on CLIPGuided's "
                    "cutouts as well as whole scenes; 64-d.",
        version=CLIP_VERSION, source=f"shipped: {WEIGHTS_DIR.name}/clip.safetensors",
        embeds=frozenset({Modality.TEXT, Modality.IMAGE}), weights_available=_available("clip"),
    ),
]
