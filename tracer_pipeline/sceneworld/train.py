"""Train the SceneWorld models (and SceneGen) from scratch, reproducibly, on one CPU thread.

    python -m tracer_pipeline.sceneworld.train --out DIR [--seed N] [--only MODEL]

Training data is drawn on the fly from the grammar and the renderer (held-out scenes and
held-out prompts are never drawn), each model from its own seeded random stream, so a model
trains to the same bytes whether it is trained alone or with the others. The cycle-trained
generator (SceneT2I) is fine-tuned from the supervised one (SceneT2ISupervised) through the
captioner (SceneI2T), so it needs those two in ``DIR`` first (``train_all`` trains them in that
order). One thread is used because results differ between thread counts and a shared machine
gains little from more.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from tracer_pipeline.sceneworld import networks as nets
from tracer_pipeline.sceneworld.grammar import (
    CLAUSE_SEPARATORS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    canonical_caption,
    is_held_out,
    random_scene,
    varied_caption,
)
from tracer_pipeline.sceneworld.models import TOKENIZER_FILE, check_weights, weight_files
from tracer_pipeline.sceneworld.prompts import (
    FILLERS_TRAIN,
    freeform_prompt,
    is_held_out_prompt,
    prompt_scene,
)
from tracer_pipeline.sceneworld.render import (
    BACKGROUND,
    CENTRES,
    IMAGE_SIZE,
    JITTER_DIM,
    image_array,
    object_masks,
    render,
)
from tracer_pipeline.sceneworld.scenegen import train_scenegen
from tracer_pipeline.sceneworld.tokenizer import WordTokenizer

Progress = Callable[[str, int, int, float], None]
MODELS = ("captioner", "clip", "generator", "generator_cycle", "scenegen")
# (steps, batch size, peak learning rate) per model: 40–50 CPU-minutes in all on a busy
# shared core, of which the cycle fine-tuning takes a few and SceneGen 3–10.
SCHEDULE = {"captioner": (800, 48, 2e-3), "clip": (800, 128, 1e-3), "generator": (1200, 32, 2e-3),
            "generator_cycle": (300, 24, 3e-4), "scenegen": (2000, 32, 3e-3)}
# Weights of the cycle generator's loss terms besides the captioner's cross-entropy: the
# renderer-supervised structure term and the bottleneck's KL term (per item, summed over slots).
CYCLE_STRUCTURE, CYCLE_KL = 1.0, 1e-3
# The share of SceneCLIP's training pictures cut as CLIPGuided cuts its canvas.
CLIP_CUT_SHARE = 0.5
BACKGROUND_PIXEL = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1) / 255.0


class _Batches:
    """Random training examples: rendered scene, its jitter, and its captions as token ids."""

    def __init__(self, seed: int, stream: int, tokenizer: WordTokenizer):
        self.rng = np.random.default_rng([seed, stream])
        self.tokenizer = tokenizer

    def __call__(self, n: int, caption: str, masks: bool = False) -> tuple[torch.Tensor, ...]:
        """(images, jitters, tokens), and each slot's object mask when ``masks``."""
        images, jitters, tokens, slot_masks = [], [], [], []
        for _ in range(n):
            scene = random_scene(self.rng, held_out=False)
            jitter = np.clip(self.rng.standard_normal(JITTER_DIM), -2.0, 2.0)
            # Runs feed the captioner's canonical captions onward: train on both forms.
            use_canonical = caption == "canonical" or self.rng.random() < 0.25
            text = canonical_caption(scene) if use_canonical else varied_caption(scene, self.rng)
            images.append(image_array(render(scene, jitter)))
            jitters.append(jitter)
            tokens.append(self.tokenizer.encode(text))
            if masks:
                slot_masks.append(object_masks(scene, jitter))
        batch = (torch.from_numpy(np.stack(images)),
                 torch.from_numpy(np.stack(jitters).astype(np.float32)), torch.tensor(tokens))
        return (*batch, torch.from_numpy(np.stack(slot_masks))) if masks else batch


def _learning_rate(step: int, steps: int, peak: float) -> float:
    warmup = max(1, steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def _trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop padding columns no caption in the batch reaches: the captioner's cost is per step."""
    return tokens[:, : int((tokens != 0).sum(dim=1).max())]


def _degrade(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Mild blur and noise on half the captioner's inputs, so generated (softer) images read."""
    n = images.shape[0]
    blurred = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    pick = (torch.rand(n, 1, 1, 1, generator=rng) < 0.3).float()
    images = pick * blurred + (1 - pick) * images
    sigma = torch.rand(n, 1, 1, 1, generator=rng) * 0.05 * (torch.rand(n, 1, 1, 1, generator=rng) < 0.5)
    return (images + sigma * torch.randn(images.shape, generator=rng)).clamp(0, 1)


def _train(name: str, model: torch.nn.Module, loss_fn: Callable[[int], torch.Tensor],
           progress: Progress | None) -> float:
    steps, _, peak = SCHEDULE[name]
    optimiser = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    model.train()
    loss_value = float("nan")
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, steps, peak)
        loss = loss_fn(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        loss_value = loss.item()
        if progress is not None and (step % 50 == 0 or step == steps - 1):
            progress(name, step + 1, steps, loss_value)
    model.eval()
    return loss_value


def train_captioner(out_dir: Path, seed: int, tokenizer: WordTokenizer,
                    progress: Progress | None = None) -> float:
    torch.manual_seed(seed * 1000 + 1)
    config = nets.CaptionerConfig(vocab_size=len(tokenizer), context_length=tokenizer.context_length)
    model = nets.SceneCaptioner(config)
    batches = _Batches(seed, 1, tokenizer)
    noise = torch.Generator().manual_seed(seed * 1000 + 11)
    batch = SCHEDULE["captioner"][1]

    def loss_fn(step: int) -> torch.Tensor:
        images, _, tokens = batches(batch, "canonical")
        tokens = _trim(tokens)
        logits = model(_degrade(images, noise), tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=tokenizer.pad_id)

    loss = _train("captioner", model, loss_fn, progress)
    _save(out_dir, "captioner", model, config)
    return loss


class _ClipBatches:
    """SceneCLIP's training examples: rendered scenes (half of them cut as CLIPGuided cuts its
    canvas), a caption of each (a quarter canonical, as runs feed them onward), and four
    captions per scene that differ from its own only in one object's shape (two of them), colour, or size or position.

    Without the hard negatives a batch of random scenes is told apart by colours and places
    alone, and SceneCLIP picked the right shape among six captions for 31 % of held-out scenes.
    A negative is worded as its scene's caption (the same draws), and is never the caption of a
    held-out scene."""

    def __init__(self, seed: int, stream: int, tokenizer: WordTokenizer):
        self.rng = np.random.default_rng([seed, stream])
        self.cut_rng = torch.Generator().manual_seed(seed * 1000 + 12)
        self.tokenizer = tokenizer

    def __call__(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (n, 3, 64, 64), tokens (n, L), hard negatives' tokens (n, K, L))."""
        images, tokens, negatives = [], [], []
        for _ in range(n):
            scene = random_scene(self.rng, held_out=False)
            jitter = np.clip(self.rng.standard_normal(JITTER_DIM), -2.0, 2.0)
            index = int(self.rng.integers(len(scene.objects)))
            wording = None if self.rng.random() < 0.25 else int(self.rng.integers(2**63))
            images.append(image_array(render(scene, jitter)))
            tokens.append(self._caption(scene, wording))
            negatives.append([self._caption(other, wording) for other in self._altered(scene, index)])
        pixels = torch.from_numpy(np.stack(images))
        cut = torch.rand(n, generator=self.cut_rng) < CLIP_CUT_SHARE
        for i in torch.nonzero(cut)[:, 0].tolist():
            pixels[i] = self._cutout(pixels[i:i + 1])[0]
        return pixels, torch.tensor(tokens), torch.tensor(negatives)

    def _caption(self, scene: Scene, wording: int | None) -> list[int]:
        """The canonical caption (``wording`` None) or the varied one drawn with ``wording``."""
        text = canonical_caption(scene) if wording is None else varied_caption(scene, np.random.default_rng(wording))
        return self.tokenizer.encode(text)

    def _altered(self, scene: Scene, index: int) -> list[Scene]:
        """The hard negatives' scenes: object ``index`` with another shape (twice), another
        colour, and another size or another free position; never a held-out scene."""
        target = scene.objects[index]
        free = tuple(p for p in POSITIONS if p not in {o.position for o in scene.objects})
        kinds = ([("shape", v) for v in SHAPES], [("shape", v) for v in SHAPES], [("colour", v) for v in COLOURS],
                 [("size", v) for v in SIZES] + [("position", v) for v in free])
        out: list[Scene] = []
        used = {getattr(target, a) for a in ("shape", "colour", "size", "position")}
        for candidates in kinds:
            options = [(a, v) for a, v in candidates if v not in used]
            other = None
            while options and other is None:
                attribute, value = options.pop(int(self.rng.integers(len(options))))
                objects = [replace(target, **{attribute: value}) if o == target else o for o in scene.objects]
                other = Scene(tuple(objects))
                used.add(value)
                if is_held_out(other):
                    other = None
            # Every variant held out (rare): any training scene is still a negative.
            out.append(other or random_scene(self.rng, held_out=False))
        return out

    def _cutout(self, pixels: torch.Tensor) -> torch.Tensor:
        """One cutout of a (1, 3, 64, 64) picture as CLIPGuided's defaults draw it (box side
        0.8–1.0, up to ±5° turn, ±0.05 shear, 0.5 px blur), resampled to 64 px."""
        from tracer_pipeline.clipguided import objective
        from tracer_pipeline.clipguided.models import SCENE_DEFAULTS as d

        box = objective.draw_boxes(1, IMAGE_SIZE, IMAGE_SIZE, d["cut_min"], d["cut_max"], self.cut_rng)
        distortion = objective.draw_distortions(1, d["rotate_deg"], d["skew"], d["blur"], self.cut_rng)
        return objective.cutouts(pixels, box, distortion, IMAGE_SIZE)


def train_clip(out_dir: Path, seed: int, tokenizer: WordTokenizer,
               progress: Progress | None = None) -> float:
    """Contrastive training: each image against every caption of the batch and its own hard
    negatives, each caption against every image of the batch."""
    torch.manual_seed(seed * 1000 + 2)
    config = nets.ClipConfig(vocab_size=len(tokenizer), eos_id=tokenizer.eos_id,
                             context_length=tokenizer.context_length)
    model = nets.build_clip(config)
    batches = _ClipBatches(seed, 2, tokenizer)
    batch = SCHEDULE["clip"][1]
    labels = torch.arange(batch)

    def loss_fn(step: int) -> torch.Tensor:
        images, tokens, negatives = batches(batch)
        image_features, text_features, scale = model(nets.clip_pixels(images), tokens)
        hard = F.normalize(model.encode_text(negatives.flatten(0, 1)), dim=-1).view(batch, -1, text_features.shape[1])
        logits = scale * image_features @ text_features.T
        image_logits = torch.cat([logits, scale * torch.einsum("bd,bkd->bk", image_features, hard)], dim=1)
        return (F.cross_entropy(image_logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    loss = _train("clip", model, loss_fn, progress)
    _save(out_dir, "clip", model, config)
    return loss


def train_generator(out_dir: Path, seed: int, tokenizer: WordTokenizer,
                    progress: Progress | None = None) -> float:
    torch.manual_seed(seed * 1000 + 3)
    config = nets.GeneratorConfig(vocab_size=len(tokenizer),
                                  separator_ids=tuple(tokenizer.ids[w] for w in CLAUSE_SEPARATORS))
    model = nets.SceneGenerator(config)
    batches = _Batches(seed, 3, tokenizer)
    batch = SCHEDULE["generator"][1]

    def loss_fn(step: int) -> torch.Tensor:
        images, jitters, tokens, masks = batches(batch, "varied", masks=True)
        return _structure_loss(model, model.sprites(tokens, jitters), images, masks)

    loss = _train("generator", model, loss_fn, progress)
    _save(out_dir, "generator", model, config)
    return loss


def _structure_loss(model: nets.SceneGenerator, sprites: torch.Tensor, images: torch.Tensor,
                    masks: torch.Tensor) -> torch.Tensor:
    """The renderer-supervised loss: pixels of the composed picture against the rendered scene,
    and each sprite's opacity against its object's mask."""
    # Objects cover a few percent of the pixels: unweighted, the loss is least at an empty
    # grey picture and training stalls there. The L1 term keeps edges sharp, which the
    # captioner needs to tell shapes apart.
    weight = 1.0 + 9.0 * ((images - BACKGROUND_PIXEL).abs().sum(dim=1, keepdim=True) > 0.05)
    error = model.compose(torch.sigmoid(sprites)) - images
    # Supervising each sprite's opacity with the renderer's mask of its object teaches
    # outlines directly; from pixels alone, shapes stayed blobs after 1,500 steps.
    outline = F.binary_cross_entropy_with_logits(sprites[:, :, 3], _slot_crops(masks, model))
    return (weight * (error.abs() + 4.0 * error.pow(2))).mean() + outline


class _PromptBatches:
    """Training examples for the cycle generator: a prompt as people write it (half from the
    caption templates, half free-form), read with a drawn seed into a scene, and that scene
    rendered with a drawn jitter. Held-out prompts and held-out scenes (as prompted or as drawn)
    are never used."""

    def __init__(self, seed: int, stream: int, tokenizer: WordTokenizer):
        self.rng = np.random.default_rng([seed, stream])
        self.tokenizer = tokenizer

    def __call__(self, n: int) -> tuple[torch.Tensor, ...]:
        """(images, jitters, canonical caption tokens, masks)."""
        images, jitters, tokens, masks = [], [], [], []
        while len(tokens) < n:
            scene = random_scene(self.rng, held_out=False)
            if self.rng.random() < 0.5:
                prompt = varied_caption(scene, self.rng)
            else:
                prompt = freeform_prompt(scene, self.rng, FILLERS_TRAIN)
            drawn = prompt_scene(prompt, int(self.rng.integers(2**31)))
            # What the seed fills in may make a held-out scene of a training prompt: skip it too.
            if is_held_out_prompt(prompt) or is_held_out(drawn):
                continue
            jitter = np.clip(self.rng.standard_normal(JITTER_DIM), -2.0, 2.0)
            images.append(image_array(render(drawn, jitter)))
            jitters.append(jitter)
            tokens.append(self.tokenizer.encode(canonical_caption(drawn)))
            masks.append(object_masks(drawn, jitter))
        return (torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(jitters).astype(np.float32)),
                torch.tensor(tokens), torch.from_numpy(np.stack(masks)))


def train_generator_cycle(out_dir: Path, seed: int, tokenizer: WordTokenizer,
                          progress: Progress | None = None) -> float:
    """Fine-tune the supervised generator in ``out_dir`` by circular consistency.

    Each step draws prompts, reads them into scenes (:func:`~.prompts.prompt_scene`) and draws
    each scene's canonical caption with the generator; the frozen captioner, teacher-forced on
    that caption, scores the picture, and its cross-entropy is the cycle term (text → image →
    text, differentiable through the picture). The structure term (the supervised loss against
    the rendered scene) keeps pictures made of shapes at their places and the noise meaning the
    renderer's jitter, and the KL term of the slots' bottleneck limits what a slot carries."""
    for name in ("generator", "captioner"):
        check_weights(out_dir, name)
    torch.manual_seed(seed * 1000 + 4)
    config = nets.load_config(nets.GeneratorConfig, out_dir / weight_files("generator")[1])
    model = nets.CycleSceneGenerator(config)
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(out_dir / weight_files("generator")[0])),
                                                strict=False)
    assert not unexpected and all(k.startswith("slot_log_variance") for k in missing), (missing, unexpected)
    captioner = nets.SceneCaptioner(nets.load_config(nets.CaptionerConfig, out_dir / weight_files("captioner")[1]))
    captioner.load_state_dict(load_file(str(out_dir / weight_files("captioner")[0])))
    captioner.eval().requires_grad_(False)
    batches = _PromptBatches(seed, 4, tokenizer)
    latent = torch.Generator().manual_seed(seed * 1000 + 14)
    batch = SCHEDULE["generator_cycle"][1]

    def loss_fn(step: int) -> torch.Tensor:
        images, jitters, tokens, masks = batches(batch)
        epsilon = torch.randn(batch, model.latent_size, generator=latent)
        sprites, kl = model.sample(tokens, torch.cat([jitters, epsilon], dim=1))
        target = _trim(tokens)
        logits = captioner(model.compose(torch.sigmoid(sprites)), target)
        cycle = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target[:, 1:].reshape(-1),
                                ignore_index=tokenizer.pad_id)
        return cycle + CYCLE_STRUCTURE * _structure_loss(model, sprites, images, masks) + CYCLE_KL * kl

    loss = _train("generator_cycle", model, loss_fn, progress)
    _save(out_dir, "generator_cycle", model, config)
    return loss


def _slot_crops(masks: torch.Tensor, model: nets.SceneGenerator) -> torch.Tensor:
    """Each slot's (B, slots, 64, 64) mask cut to the sprite that slot's decoder draws."""
    size = model.config.sprite
    half = size // 2
    padded = F.pad(masks, (half, half, half, half))
    return torch.stack([padded[:, slot, cy:cy + size, cx:cx + size]
                        for slot, (cx, cy) in enumerate(CENTRES[p] for p in POSITIONS)], dim=1)


def _save(out_dir: Path, name: str, model: torch.nn.Module, config: object) -> None:
    from safetensors.torch import save_file

    weights, config_file = weight_files(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / weights))
    nets.save_config(config, out_dir / config_file)


TRAINERS = {"captioner": train_captioner, "clip": train_clip, "generator": train_generator,
            "generator_cycle": train_generator_cycle, "scenegen": train_scenegen}


def train_all(out_dir: Path, seed: int = 0, progress: Progress | None = None,
              only: tuple[str, ...] = MODELS) -> dict:
    """Train the models named in ``only`` into ``out_dir``, then measure the quality bars on
    held-out scenes (when all four are there) and return the figures, also written to
    ``out_dir/metrics.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = WordTokenizer.for_grammar()
    tokenizer.save(out_dir / TOKENIZER_FILE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures: dict = {"seed": seed, "training_seconds": {}, "final_loss": {}}
        for name in only:
            start = time.perf_counter()
            figures["final_loss"][name] = TRAINERS[name](out_dir, seed, tokenizer, progress)
            figures["training_seconds"][name] = round(time.perf_counter() - start, 1)
        if all((out_dir / weight_files(m)[0]).exists() for m in MODELS):
            from tracer_pipeline.sceneworld.evaluate import evaluate

            figures.update(evaluate(out_dir))
    finally:
        torch.set_num_threads(threads)
    (out_dir / "metrics.json").write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def _print_progress(name: str, step: int, steps: int, loss: float) -> None:
    print(f"{name}: step {step}/{steps} loss {loss:.4f}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write weights to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=MODELS, action="append",
                        help="train only this model (repeatable); default: all")
    args = parser.parse_args(argv)
    figures = train_all(args.out, args.seed, _print_progress, tuple(args.only or MODELS))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
