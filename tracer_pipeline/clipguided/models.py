"""The CLIP-guided text→image models as registry entries, their options, and their adapter.

- **CLIPGuided** (offline): SceneCLIP guides a :class:`~.canvases.SpriteCanvas` (sprites drawn
  by SceneT2I's decoder) at 64 px (or a wider panorama).
- **CLIPGuided-ViT-B-32**, **CLIPGuided-ViT-L-14** (real): open_clip's LAION ViT-B/32 or ViT-L/14
  guides the latent of the Stable Diffusion VAE (``AutoencoderKL``, ``stabilityai/sd-vae-ft-mse``),
  both loaded from this machine's copies (never downloaded).
- **TinyCLIPGuided**: the same classes (an open_clip ``CLIP``, a diffusers ``AutoencoderKL``) built
  small with seeded weights and loaded through the same code, so the real path runs in tests.

Every option in :data:`OPTIONS` changes outputs and is part of the run's identity. Importing this
module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from tracer_pipeline.errors import ModelLoadError
from tracer_pipeline.models import tiny
from tracer_pipeline.models.base import (
    Family,
    FormedImage,
    LoadOptions,
    ModelFailure,
    ModelKind,
    ModelOption,
    ModelSpec,
    Output,
    each_item,
    output_digest,
)
from tracer_pipeline.models.options import SHA256_SUFFIX
from tracer_pipeline.models.weights import HubWeights

# Bump when the code changes what a CLIP-guided model outputs; CLIPGuided's own version also
# follows its guide's and its decoder's weights (SceneCLIP's and SceneT2I's decide its images).
# CLIPGuided version 1: SceneCLIP version 1 guiding Fourier-outlined shapes; 2: SceneCLIP
# version 2 guiding the same; 3: sprites drawn by SceneT2I's decoder.
VERSION = "1"
SCENE_VERSION = "3"
VAE_REPO = "stabilityai/sd-vae-ft-mse"

OPTIONS: dict[str, ModelOption] = {
    "width": ModelOption(int, "the image's width in pixels (wider than high: a panorama)", 16, 1024),
    "height": ModelOption(int, "the image's height in pixels", 16, 1024),
    "steps": ModelOption(int, "optimisation steps (Adam)", 1, 10_000),
    "lr": ModelOption(float, "Adam's learning rate", 1e-5, 10.0),
    "cutouts": ModelOption(int, "cutouts scored per step", 1, 256),
    "cut_min": ModelOption(float, "smallest cutout side, as a share of the image's shorter side", 0.05, 1.0),
    "cut_max": ModelOption(float, "largest cutout side, as a share of the image's shorter side", 0.05, 1.0),
    "rotate_deg": ModelOption(float, "cutouts are rotated by up to ± this many degrees", 0.0, 90.0),
    "skew": ModelOption(float, "cutouts are sheared by up to ± this factor", 0.0, 1.0),
    "blur": ModelOption(float, "cutouts are blurred by a Gaussian of up to this many pixels", 0.0, 3.0),
    "prompt_right": ModelOption(str, "a second prompt for the right-hand side (a panorama); null: none",
                                nullable=True),
    "blend": ModelOption(float, "width of the zone where the prompt changes from left to right, as a "
                                "share of the width (1: across the whole image, 0: a hard cut)", 0.0, 1.0),
    "tone_symmetry": ModelOption(float, "weight of L1(blurred greyscale image, its mirror)", 0.0, 100.0),
    "semantic_symmetry": ModelOption(float, "weight of cos(patch1 - text1, patch2 - text2) over mirrored "
                                            "cutout pairs", 0.0, 100.0),
    "tv": ModelOption(float, "weight of total variation (favours flat regions)", 0.0, 100.0),
    "frames": ModelOption(int, "about how many intermediate images to store: every "
                               "max(1, steps // frames)-th step's, plus the first and the last", 1, 1000),
    "restarts": ModelOption(int, "seeded starts scored by the objective before optimising; the best one is "
                                 "optimised", 1, 256),
    "init_image": ModelOption(Path, "an image to start from (relative to the experiment file); null: none",
                              nullable=True),
}
SHAPES_OPTION = ModelOption(int, "CLIPGuided only: sprites on the canvas, spread across the width", 1, 8)

_COMMON_DEFAULTS: dict[str, Any] = {
    "cutouts": 8, "rotate_deg": 10.0, "skew": 0.1, "blur": 1.0, "prompt_right": None, "blend": 1.0,
    "tone_symmetry": 0.0, "semantic_symmetry": 0.0, "tv": 0.0, "frames": 8, "init_image": None,
    "restarts": 1,
}
# Milder distortions than the real models': SceneCLIP reads 64 px scenes, and a 10° turn of a
# 64 px cutout already moves its edge by 5 px.
# 128 seeded starts: a start is one decoded object per sprite, cheap to score, and the guide's
# gradient then changes a start's colour or shape (BENCHMARKS.md: what the starts and the steps
# each do). A panorama's prompt changes across the middle half (blend 0.5), between the homes of
# two sprites (¼ and ¾ of the width): blended across the whole width, each sprite's cutouts are
# scored about a quarter against the other side's prompt (measured: 10 of 16 panoramas with each
# prompt on its side, against 13 of 16).
SCENE_DEFAULTS: dict[str, Any] = {**_COMMON_DEFAULTS, "width": 64, "height": 64, "steps": 100, "lr": 0.05,
                                  "cut_min": 0.8, "cut_max": 1.0, "rotate_deg": 5.0, "skew": 0.05, "blur": 0.5,
                                  "shapes": 1, "restarts": 128, "blend": 0.5}
REAL_DEFAULTS: dict[str, Any] = {**_COMMON_DEFAULTS, "width": 256, "height": 256, "steps": 300, "lr": 0.05,
                                 "cut_min": 0.4, "cut_max": 1.0, "cutouts": 16}
TINY_DEFAULTS: dict[str, Any] = {**REAL_DEFAULTS, "width": 64, "height": 64, "steps": 16}


def _check(params: Mapping[str, Any], multiple: int) -> list[str]:
    """Problems across options: a cutout range that runs backwards, a size the canvas cannot draw."""
    problems = []
    if params["cut_min"] > params["cut_max"]:
        problems.append(f"cut_min: {params['cut_min']} is larger than cut_max {params['cut_max']}")
    for key in ("width", "height"):
        if params[key] % multiple:
            problems.append(f"{key}: {params[key]} is not a multiple of {multiple} (the autoencoder's latent "
                            f"has one cell per {multiple}×{multiple} pixels)")
    if params["prompt_right"] is not None and not params["prompt_right"].strip():
        problems.append("prompt_right: is empty; give a prompt or null")
    return problems


@dataclass
class CLIPGuidedModel:
    """Text → image by optimising ``canvas`` so that ``guide`` scores its cutouts against the
    text; returns :class:`FormedImage` outputs (the image and the images it passed through)."""

    guide: Any  # a clipguided.optimise.Guide
    canvas_factory: Callable[[], Any]  # a fresh clipguided.optimise.Canvas (it holds per-image state)
    params: Mapping[str, Any]
    init: Image.Image | None

    def _one(self, prompt: str, seed: int) -> FormedImage:
        from tracer_pipeline.clipguided.optimise import GuidedSettings, optimise

        image, frames = optimise(self.guide, self.canvas_factory(), prompt, GuidedSettings.from_params(self.params),
                                 seed, self.init)
        return FormedImage(image, tuple(frames))

    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | FormedImage | ModelFailure]:
        return each_item("a CLIP-guided model", "text", inputs, seeds, self._one)


def _init_image(spec: ModelSpec) -> Image.Image | None:
    """The init image named by the options, checked against the pixel hash in the run's identity."""
    path = spec.params.get("init_image")
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except OSError as exc:
        raise ModelLoadError(f"{spec.name}: cannot read the init image {path} ({exc})") from None
    if output_digest(rgb) != spec.params.get("init_image" + SHA256_SUFFIX):
        raise ModelLoadError(f"{spec.name}: the init image {path} has changed since the run was registered "
                             "(its pixels no longer match the run's identity); restore it, or register the "
                             "experiment again for new runs")
    return rgb


class SceneGuide:
    """SceneCLIP as a guide: its open_clip towers over SceneWorld word ids and 64 px images."""

    def __init__(self, options: LoadOptions):
        from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, SceneCLIP
        from tracer_pipeline.sceneworld.render import IMAGE_SIZE

        clip = SceneCLIP(WEIGHTS_DIR, options)
        self.network, self.tokenizer = clip.network, clip.tokenizer
        self.network.requires_grad_(False)
        self.size = IMAGE_SIZE
        self.device = options.device

    def encode_texts(self, texts: list[str]) -> Any:
        import torch
        from torch.nn import functional as F

        with torch.no_grad():
            vectors = [self.network.encode_text(torch.tensor([self.tokenizer.encode(t)], device=self.device))
                       for t in texts]
        return F.normalize(torch.cat(vectors).float(), dim=-1)

    def encode_images(self, pixels: Any) -> Any:
        from torch.nn import functional as F

        from tracer_pipeline.sceneworld.networks import clip_pixels

        dtype = next(self.network.parameters()).dtype
        return F.normalize(self.network.encode_image(clip_pixels(pixels).to(dtype)).float(), dim=-1)


class OpenClipGuide:
    """An open_clip model as a guide: images normalised as its preprocessing does, at its
    resolution (cutouts are resampled to it, so no resize of its own)."""

    def __init__(self, directory: Path, options: LoadOptions):
        import open_clip
        import torch

        from tracer_pipeline.models.clip import PRECISION

        name = f"local-dir:{directory}"
        self.model, _, preprocess = open_clip.create_model_and_transforms(
            name, precision=PRECISION[options.dtype], device=options.device)
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(name)
        normalise = next(t for t in preprocess.transforms if hasattr(t, "mean") and hasattr(t, "std"))
        self.mean = torch.tensor(normalise.mean, device=options.device).view(1, 3, 1, 1)
        self.std = torch.tensor(normalise.std, device=options.device).view(1, 3, 1, 1)
        size = self.model.visual.image_size
        self.size = int(size[0] if isinstance(size, tuple | list) else size)
        self.device = options.device

    def encode_texts(self, texts: list[str]) -> Any:
        import torch
        from torch.nn import functional as F

        with torch.no_grad():
            return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)

    def encode_images(self, pixels: Any) -> Any:
        from torch.nn import functional as F

        dtype = next(self.model.parameters()).dtype
        normalised = ((pixels.to(self.device) - self.mean) / self.std).to(dtype)
        return F.normalize(self.model.encode_image(normalised).float(), dim=-1)


def _load_scene(spec: ModelSpec, options: LoadOptions) -> CLIPGuidedModel:
    from tracer_pipeline.clipguided.canvases import SpriteCanvas
    from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, SceneT2I

    drawer = SceneT2I(WEIGHTS_DIR, options)  # its cycle-trained generator draws the sprites
    drawer.network.requires_grad_(False)
    shapes = int(spec.params["shapes"])
    return CLIPGuidedModel(SceneGuide(options), lambda: SpriteCanvas(drawer.network, drawer.tokenizer, shapes,
                                                                     options.device), spec.params, _init_image(spec))


def _load_autoencoder(directory: Path, options: LoadOptions) -> Any:
    from diffusers import AutoencoderKL

    from tracer_pipeline.models.runtime import torch_dtype

    vae = AutoencoderKL.from_pretrained(directory, torch_dtype=torch_dtype(options)).to(options.device)
    return vae.eval().requires_grad_(False)


def _load_open_clip(clip_dirs: Any, spec: ModelSpec, options: LoadOptions) -> CLIPGuidedModel:
    """``clip_dirs(spec, options)`` → (open_clip directory, autoencoder directory): a real
    model's local copies (or a clear error naming the missing one), or the tiny twin's, built
    on first use."""
    from tracer_pipeline.clipguided.canvases import LatentCanvas

    clip_dir, vae_dir = clip_dirs(spec, options)
    guide = OpenClipGuide(clip_dir, options)
    vae = _load_autoencoder(vae_dir, options)
    return CLIPGuidedModel(guide, lambda: LatentCanvas(vae, options.device), spec.params, _init_image(spec))


def _vae_weights() -> HubWeights:
    return HubWeights(VAE_REPO, (("config.json",),
                                 ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")))


def _clip_weights(repo_id: str) -> HubWeights:
    return HubWeights(repo_id, (("open_clip_config.json",),
                                ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")))


def _real_dirs(repo_id: str, spec: ModelSpec, options: LoadOptions) -> tuple[Path, Path]:
    return _clip_weights(repo_id).locate(spec, options), _vae_weights().locate(spec, options)


def build_tiny(directory: Path) -> None:
    """The tiny twin: the tiny open_clip CLIP in ``clip/`` and a tiny AutoencoderKL in ``vae/``."""
    (directory / "clip").mkdir()
    tiny.build_clip(directory / "clip")
    with tiny.seeded():
        vae = tiny.tiny_autoencoder()
    vae.save_pretrained(directory / "vae")


_TINY = tiny.TinyWeights(build_tiny)


def _tiny_dirs(spec: ModelSpec, options: LoadOptions) -> tuple[Path, Path]:
    directory = _TINY.locate(spec, options)
    return directory / "clip", directory / "vae"


def _real_available(repo_id: str) -> Any:
    def check(options: LoadOptions) -> bool:
        return _clip_weights(repo_id).available(options) and _vae_weights().available(options)
    return check


def _scene_available(options: LoadOptions) -> bool:
    from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, weight_files

    return all((WEIGHTS_DIR / weight_files(name)[0]).exists() for name in ("clip", "generator_cycle"))


def _real(name: str, architecture: str, repo_id: str) -> ModelSpec:
    return ModelSpec(
        name=name, kind=ModelKind.TEXT_TO_IMAGE, family=Family.REAL, loader=partial(_load_open_clip,
                                                                                    partial(_real_dirs, repo_id)),
        description=f"CLIP-guided generation: open_clip {architecture} (LAION) scores random distorted cutouts "
                    f"against the prompt while Adam optimises the latent of the Stable Diffusion VAE "
                    f"({VAE_REPO}), as VQGAN+CLIP does with a VQGAN.",
        version=VERSION, source=f"{repo_id} + {VAE_REPO}", params=REAL_DEFAULTS, options=OPTIONS,
        check_options=partial(_check, multiple=8), weights_available=_real_available(repo_id),
    )


SPECS = [
    ModelSpec(
        name="CLIPGuided", kind=ModelKind.TEXT_TO_IMAGE, family=Family.SCENEWORLD, loader=_load_scene,
        description="CLIP-guided generation offline: SceneCLIP scores random distorted cutouts against the "
                    "prompt while Adam optimises the inputs of SceneT2I's sprite decoder (each sprite's clause as "
                    "a mixture of word embeddings, its jitter, its place) over the grey SceneWorld background, "
                    "at 64 px or as a wider panorama.",
        version=SCENE_VERSION, source="shipped: weights/clip.safetensors (SceneCLIP as the guide), "
                                      "weights/generator_cycle.safetensors (SceneT2I's decoder as the canvas)",
        params=SCENE_DEFAULTS, options={**OPTIONS, "shapes": SHAPES_OPTION},
        check_options=partial(_check, multiple=1), weights_available=_scene_available,
    ),
    _real("CLIPGuided-ViT-B-32", "ViT-B/32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    _real("CLIPGuided-ViT-L-14", "ViT-L/14", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
    ModelSpec(
        name="TinyCLIPGuided", kind=ModelKind.TEXT_TO_IMAGE, family=Family.TINY,
        loader=partial(_load_open_clip, _tiny_dirs),
        description="Tiny twin of the real CLIP-guided models (open_clip CLIP with 2-layer towers guiding a "
                    "4-level AutoencoderKL). Random weights: its images are noise.",
        version=VERSION, source="built locally (seeded random weights)", params=TINY_DEFAULTS, options=OPTIONS,
        check_options=partial(_check, multiple=8),
    ),
]
