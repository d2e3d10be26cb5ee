"""Measure the SceneWorld quality bars on held-out scenes and print them as a Markdown table.

    python -m tracer_pipeline.sceneworld.evaluate [--weights DIR]

Held-out scenes are the ones :func:`~tracer_pipeline.sceneworld.grammar.is_held_out` sets aside:
training never draws them. Figures are deterministic for given weights.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tracer_pipeline.models.base import ModelFailure
from tracer_pipeline.sceneworld.grammar import (
    canonical_caption,
    caption_matches,
    caption_matches_exactly,
    random_scene,
    varied_caption,
)
from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, SceneCLIP, SceneI2T, SceneT2I
from tracer_pipeline.sceneworld.render import jitter_from_seed, render

BARS = {"i2t_shape_colour": 0.80, "t2i_shape_colour": 0.70, "clip_top1": 0.80, "ms_per_item": 50.0}
EVAL_SEED = 20240607


def evaluate(weights_dir: Path = WEIGHTS_DIR, captions: int = 500, generations: int = 300,
             retrieval_groups: int = 5, timing_items: int = 20) -> dict:
    """The quality figures of the models in ``weights_dir``.

    - ``i2t_shape_colour``: share of held-out rendered scenes whose SceneI2T caption names every
      object's shape and colour (and nothing else); ``i2t_exact`` also needs sizes and positions.
    - ``t2i_shape_colour``: share of SceneT2I images, drawn from a held-out scene's caption (from
      the varied template family) with a per-item seed, whose SceneI2T caption names the
      prompt's shapes and colours; ``t2i_shape_colour_canonical`` for canonical prompts. Free-form
      prompts and the supervised baseline: ``benchmarks/sceneworld_cycle.py``.
    - ``clip_top1``: text→image top-1 retrieval among 100 held-out (image, caption) pairs, the
      mean over ``retrieval_groups`` groups; ``clip_top1_image_to_text`` the other way.
    - ``ms_per_item``: median milliseconds per item at batch 1, per model.
    """
    import torch

    rng = np.random.default_rng(EVAL_SEED)
    t2i, i2t, clip = SceneT2I(weights_dir), SceneI2T(weights_dir), SceneCLIP(weights_dir)
    figures: dict = {}

    scenes = [random_scene(rng, held_out=True) for _ in range(captions)]
    images = [render(s, jitter_from_seed(EVAL_SEED + i)) for i, s in enumerate(scenes)]
    texts = i2t.generate(images, [0] * len(images))
    figures["i2t_shape_colour"] = _share(caption_matches(str(t), s) for t, s in zip(texts, scenes, strict=True))
    figures["i2t_exact"] = _share(caption_matches_exactly(str(t), s) for t, s in zip(texts, scenes, strict=True))

    for key, make_prompt in (("t2i_shape_colour", lambda s: varied_caption(s, rng)),
                             ("t2i_shape_colour_canonical", canonical_caption)):
        scenes = [random_scene(rng, held_out=True) for _ in range(generations)]
        prompts = [make_prompt(s) for s in scenes]
        generated = t2i.generate(prompts, list(range(len(prompts))))
        texts = i2t.generate(generated, [0] * len(generated))
        figures[key] = _share(caption_matches(str(t), s) for t, s in zip(texts, scenes, strict=True))

    text_to_image, image_to_text = [], []
    for _ in range(retrieval_groups):
        scenes = [random_scene(rng, held_out=True) for _ in range(100)]
        image_vectors = np.stack(clip.embed(
            [render(s, np.clip(rng.standard_normal(30), -2, 2)) for s in scenes]))
        text_vectors = np.stack(clip.embed([varied_caption(s, rng) for s in scenes]))
        similarity = text_vectors @ image_vectors.T
        text_to_image.append(float(np.mean(similarity.argmax(axis=1) == np.arange(100))))
        image_to_text.append(float(np.mean(similarity.argmax(axis=0) == np.arange(100))))
    figures["clip_top1"] = round(statistics.mean(text_to_image), 4)
    figures["clip_top1_image_to_text"] = round(statistics.mean(image_to_text), 4)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prompt = canonical_caption(scenes[0])
        figures["ms_per_item"] = {
            "SceneT2I": _median_ms(lambda i: t2i.generate([prompt], [i]), timing_items),
            "SceneI2T": _median_ms(lambda i: i2t.generate([images[i]], [0]), timing_items),
            "SceneCLIP (text)": _median_ms(lambda i: clip.embed([prompt]), timing_items),
            "SceneCLIP (image)": _median_ms(lambda i: clip.embed([images[i]]), timing_items),
        }
    finally:
        torch.set_num_threads(threads)
    figures["evaluated"] = {"captions": captions, "generations": generations,
                            "retrieval_pairs": 100 * retrieval_groups, "seed": EVAL_SEED}
    return figures


def _share(flags) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4)


def _median_ms(call: Callable[[int], object], n: int) -> float:
    call(0)  # the first call pays for lazy initialisation inside torch
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def loop_captions(prompt: str, seed: int = 0, invocations: int = 6,
                  weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """The captions of a SceneT2I → SceneI2T run from ``prompt``: each caption is drawn, with the
    run's one seed, and the picture captioned again."""
    t2i, i2t = SceneT2I(weights_dir), SceneI2T(weights_dir)
    captions, text = [], prompt
    for _ in range(invocations):
        image = t2i.generate([text], [seed])[0]
        caption = i2t.generate([image], [seed])[0]
        if isinstance(image, ModelFailure) or isinstance(caption, ModelFailure):
            captions.append(f"({image if isinstance(image, ModelFailure) else caption})")
            break
        captions.append(text := caption)
    return captions


def markdown_table(figures: dict) -> str:
    """The quality bars, measured figures and pass/fail as a Markdown table."""
    ms = figures["ms_per_item"]
    worst = max(ms.values())
    rows = [
        ("SceneI2T: captions naming every object's shape and colour", BARS["i2t_shape_colour"],
         figures["i2t_shape_colour"], f"(with sizes and positions: {figures['i2t_exact']:.1%})"),
        ("SceneT2I: images whose SceneI2T caption recovers the prompt's shapes and colours",
         BARS["t2i_shape_colour"], figures["t2i_shape_colour"],
         f"(canonical prompts: {figures['t2i_shape_colour_canonical']:.1%})"),
        ("SceneCLIP: text→image top-1 among 100 held-out pairs", BARS["clip_top1"],
         figures["clip_top1"], f"(image→text: {figures['clip_top1_image_to_text']:.1%})"),
    ]
    lines = ["| measure | bar | measured | pass | note |", "|---|---|---|---|---|"]
    for name, bar, value, note in rows:
        lines.append(f"| {name} | ≥ {bar:.0%} | {value:.1%} | {'yes' if value >= bar else 'NO'} "
                     f"| {note} |")
    per_model = ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
    lines.append(f"| slowest model, ms per item at batch 1 (1 CPU thread) | ≤ {BARS['ms_per_item']:.0f}"
                 f" ms | {worst:.1f} ms | {'yes' if worst <= BARS['ms_per_item'] else 'NO'} "
                 f"| {per_model} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR,
                        help="directory of trained weights (default: the shipped ones)")
    parser.add_argument("--loop", metavar="PROMPT",
                        help="instead of the bars, print the captions of a SceneT2I → SceneI2T run")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (with --loop)")
    parser.add_argument("--invocations", type=int, default=6, help="captions to print (with --loop)")
    args = parser.parse_args(argv)
    if args.loop is not None:
        print(args.loop)
        for caption in loop_captions(args.loop, args.seed, args.invocations, args.weights):
            print(f"  → {caption}")
        return
    figures = evaluate(args.weights)
    e = figures["evaluated"]
    print(f"SceneWorld quality bars ({e['captions']} captions, {e['generations']} generations, "
          f"{e['retrieval_pairs']} retrieval pairs; held-out scenes, seed {e['seed']}):\n")
    print(markdown_table(figures))


if __name__ == "__main__":
    main()
