"""SceneWorld generators side by side: one text → image → text cycle through SceneI2T.

    python benchmarks/sceneworld_cycle.py [--weights DIR] [--prompts N] [--json FILE]

Three generators: SceneT2ISupervised (the supervised decoder reading the prompt's words as they
are), the same decoder behind the prompt reader (``prompts.prompt_caption``), and SceneT2I (the
cycle-trained decoder behind the prompt reader). Three prompt sets, all held out from training:

- **template**: captions from the varied template family of held-out scenes (``is_held_out``);
- **free-form**: prompts as people write them (``prompts.freeform_prompt``: attributes left out,
  synonyms from the wider lexicon, extra words from the held-out filler list, which training
  never draws) of held-out scenes, kept only if ``is_held_out_prompt`` — training rejects every
  such prompt, so no measured prompt is ever a training prompt;
- **hand-written**: ``prompts.HAND_WRITTEN_PROMPTS``, each with 8 seeds (also rejected by training).

Measures, per generator and set (item i has seed i; SceneI2T greedy):

- **cycle consistency**: the caption names the prompt's objects by shape and colour and nothing
  else; an object whose prompt gives no colour (or no shape) matches any colour (or shape);
- **strict**: the caption names the shapes and colours of the scene the prompt reader drew;
- **attribute recovery**: of the attributes the prompt names, the share read back on the object
  at that object's place (shape, colour, size; position: an object is named there);
- **diversity across seeds** (hand-written set): mean per-pixel absolute difference between the
  pictures of one prompt under two seeds, and the mean number of distinct captions over 8 seeds;
- **stray marks** (free-form set): the share of pictures with a visible mark (a pixel more than
  30 grey levels, summed over RGB, off the background) more than 3 pixels away from every object
  of the scene the prompt reader drew (rendered with the item's jitter);
- **SceneCLIP top-1** (free-form set, groups of 100): a second judge, trained apart from the
  captioner, picks the canonical caption of the scene the prompt reader drew among the group's
  100 for each picture. A generator that drew what the captioner misreads (rather than the scene)
  would gain cycle consistency and lose here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from tracer_pipeline.sceneworld.grammar import caption_matches, parse_caption, random_scene, varied_caption
from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, SceneCLIP, SceneI2T, SceneT2I
from tracer_pipeline.sceneworld.prompts import (
    FILLERS_HELD_OUT,
    HAND_WRITTEN_PROMPTS,
    freeform_prompt,
    is_held_out_prompt,
    prompt_caption,
    prompt_objects,
    prompt_scene,
)
from tracer_pipeline.sceneworld.render import BACKGROUND, jitter_from_seed, object_masks

SEED = 20261202
SEEDS_PER_HAND_WRITTEN = 8


def held_out_prompts(n: int) -> dict[str, list[tuple[str, int]]]:
    """The three prompt sets as (prompt, seed) pairs."""
    rng = np.random.default_rng(SEED)
    template = [varied_caption(random_scene(rng, held_out=True), rng) for _ in range(n)]
    freeform: list[str] = []
    while len(freeform) < n:
        prompt = freeform_prompt(random_scene(rng, held_out=True), rng, FILLERS_HELD_OUT)
        if is_held_out_prompt(prompt):
            freeform.append(prompt)
    hand = [(p, s) for p in HAND_WRITTEN_PROMPTS for s in range(SEEDS_PER_HAND_WRITTEN)]
    return {"template": list(zip(template, range(n), strict=True)),
            "free-form": list(zip(freeform, range(n), strict=True)), "hand-written": hand}


def names_prompt(caption: str, prompt: str) -> bool:
    """Cycle consistency of one item: the caption's objects are the prompt's, by shape and
    colour, with what the prompt leaves out matching anything."""
    read = [(o.shape, o.colour) for o in parse_caption(caption)]
    wanted = sorted(((o["shape"], o["colour"]) for o in prompt_objects(prompt)),
                    key=lambda sc: (sc[0] is None) + (sc[1] is None))  # most specific first
    if len(read) != len(wanted):
        return False
    for shape, colour in wanted:
        match = next((r for r in read if shape in (None, r[0]) and colour in (None, r[1])), None)
        if match is None:
            return False
        read.remove(match)
    return True


def attributes_recovered(caption: str, prompt: str, seed: int) -> dict[str, list[bool]]:
    """Per attribute the prompt names, whether the caption reads it back at the object's place."""
    scene = prompt_scene(prompt, seed)
    at = {o.position: o for o in parse_caption(caption) if o.position is not None}
    flags: dict[str, list[bool]] = {"shape": [], "colour": [], "size": [], "position": []}
    for asked, drawn in zip(prompt_objects(prompt), scene.objects, strict=True):
        read = at.get(drawn.position)
        for attribute in flags:
            if asked[attribute] is not None:
                value = read is not None if attribute == "position" else (
                    read is not None and getattr(read, attribute) == getattr(drawn, attribute))
                flags[attribute].append(value)
    return flags


def has_stray_mark(image, prompt: str, seed: int) -> bool:
    """Whether the picture shows something away from every object the prompt's scene holds."""
    covered = object_masks(prompt_scene(prompt, seed), jitter_from_seed(seed)).max(axis=0) > 0
    away = ~binary_dilation(covered, iterations=3)
    off = np.abs(np.asarray(image, dtype=int) - np.array(BACKGROUND)).sum(axis=-1) > 30
    return bool((off & away).any())


def measure(generator: SceneT2I, captioner: SceneI2T, clip: SceneCLIP, sets: dict) -> dict:
    figures: dict = {}
    for name, items in sets.items():
        images = [generator.generate([p], [s])[0] for p, s in items]
        captions = [str(c) for c in captioner.generate(images, [0] * len(images))]
        recovered: dict[str, list[bool]] = {"shape": [], "colour": [], "size": [], "position": []}
        for caption, (prompt, seed) in zip(captions, items, strict=True):
            for attribute, flags in attributes_recovered(caption, prompt, seed).items():
                recovered[attribute] += flags
        figures[name] = {
            "cycle_consistency": _share(names_prompt(c, p) for c, (p, _) in zip(captions, items, strict=True)),
            "strict": _share(caption_matches(c, prompt_scene(p, s)) for c, (p, s) in zip(captions, items, strict=True)),
            "attribute_recovery": {a: _share(f) for a, f in recovered.items() if f},
            "items": len(items),
        }
        if name == "free-form":
            figures[name]["stray_marks"] = _share(
                has_stray_mark(im, p, s) for im, (p, s) in zip(images, items, strict=True))
            top1 = []
            for i in range(0, len(items) - 99, 100):
                group = items[i:i + 100]
                pictures = np.stack(clip.embed(images[i:i + 100]))
                texts = np.stack(clip.embed([prompt_caption(p, s) for p, s in group]))
                top1.append(float(np.mean((pictures @ texts.T).argmax(axis=1) == np.arange(100))))
            figures[name]["clip_top1"] = round(statistics.mean(top1), 4)
        if name == "hand-written":
            figures[name]["examples"] = {p: c for c, (p, s) in zip(captions, items, strict=True) if s == 0}
            pixel, distinct = [], []
            for i in range(0, len(items), SEEDS_PER_HAND_WRITTEN):
                arrays = [np.asarray(im, dtype=np.float32) / 255 for im in images[i:i + SEEDS_PER_HAND_WRITTEN]]
                pixel += [float(np.abs(a - b).mean()) for a, b in itertools.combinations(arrays, 2)]
                distinct.append(len(set(captions[i:i + SEEDS_PER_HAND_WRITTEN])))
            figures["diversity"] = {"mean_pixel_difference": round(statistics.mean(pixel), 4),
                                    "distinct_captions_of_8_seeds": round(statistics.mean(distinct), 2)}
    start_items = sets["free-form"][:20]
    generator.generate(*map(list, zip(*start_items[:1], strict=True)))
    times = []
    for prompt, seed in start_items:
        start = time.perf_counter()
        generator.generate([prompt], [seed])
        times.append(time.perf_counter() - start)
    figures["ms_per_item"] = round(1000 * statistics.median(times), 2)
    return figures


def _share(flags) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--prompts", type=int, default=300, help="prompts in the template and free-form sets")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sets = held_out_prompts(args.prompts)
    captioner, clip = SceneI2T(args.weights), SceneCLIP(args.weights)
    generators: dict[str, Callable[[], SceneT2I]] = {
        "SceneT2ISupervised (prompt words as they are)":
            lambda: SceneT2I(args.weights, network="generator", read_prompts=False),
        "supervised decoder + prompt reader": lambda: SceneT2I(args.weights, network="generator"),
        "SceneT2I (cycle-trained decoder + prompt reader)": lambda: SceneT2I(args.weights),
    }
    results = {name: measure(make(), captioner, clip, sets) for name, make in generators.items()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{args.prompts} template and {args.prompts} free-form held-out prompts, "
          f"{len(HAND_WRITTEN_PROMPTS)} hand-written × {SEEDS_PER_HAND_WRITTEN} seeds; seed {SEED}\n")
    print("| generator | template | free-form | hand-written | free-form strict | free-form attributes "
          "(shape / colour / size / position) | free-form SceneCLIP top-1 | free-form stray marks "
          "| pixel diff. across seeds | distinct captions / 8 seeds | ms per item |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, f in results.items():
        a = f["free-form"]["attribute_recovery"]
        print(f"| {name} | {f['template']['cycle_consistency']:.1%} | {f['free-form']['cycle_consistency']:.1%} "
              f"| {f['hand-written']['cycle_consistency']:.1%} | {f['free-form']['strict']:.1%} "
              f"| {a['shape']:.0%} / {a['colour']:.0%} / {a['size']:.0%} / {a['position']:.0%} "
              f"| {f['free-form']['clip_top1']:.1%} | {f['free-form']['stray_marks']:.1%} "
              f"| {f['diversity']['mean_pixel_difference']:.3f} "
              f"| {f['diversity']['distinct_captions_of_8_seeds']:.2f} | {f['ms_per_item']:.1f} |")
    print()
    for name, f in results.items():
        print(f"{name}, hand-written prompts with seed 0:", file=sys.stderr)
        for prompt, caption in f["hand-written"]["examples"].items():
            print(f"  {prompt!r} → {caption!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
