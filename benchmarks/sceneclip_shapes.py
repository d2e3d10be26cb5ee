"""SceneCLIP's attribute discrimination: does the right caption beat the same caption with another
shape (or colour), on held-out rendered scenes and on cutouts of the kind CLIPGuided scores?

    python benchmarks/sceneclip_shapes.py [--weights DIR] [--scenes N] [--json FILE]

For each picture one object is picked, and the canonical caption of the scene is scored against
the same caption with that object's shape replaced by each other shape (6 candidates; chance 1/6),
or its colour replaced by each other colour (9 candidates; chance 1/9). Figures:

- **top-1**: share of pictures (or cutouts) where the right caption has the highest cosine;
- **margin**: the mean, over pictures, of the right caption's cosine minus the best wrong one's
  (negative when a wrong caption wins).

Three picture sets:

- **held-out scenes**: ``random_scene(held_out=True)`` (1–3 objects), rendered with a seeded jitter;
- **centre objects**: the 54 pictures ``a large <colour> <shape> in the centre`` rendered without
  jitter (the prompts of ``benchmarks/clip_guided.py``; some of these scenes are training scenes);
- **cutouts**: each held-out picture and each centre picture cut 8 times as CLIPGuided's defaults
  do (box side 0.8–1.0 of the image, rotated up to ±5°, sheared up to ±0.05, blurred up to 0.5 px;
  ``clipguided.objective``), each cutout scored on its own.

Deterministic for given weights (CPU, one torch thread).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from tracer_pipeline.clipguided import objective  # noqa: E402
from tracer_pipeline.clipguided.models import SCENE_DEFAULTS  # noqa: E402
from tracer_pipeline.sceneworld.grammar import (  # noqa: E402
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    canonical_caption,
    random_scene,
)
from tracer_pipeline.sceneworld.models import WEIGHTS_DIR, SceneCLIP  # noqa: E402
from tracer_pipeline.sceneworld.networks import clip_pixels  # noqa: E402
from tracer_pipeline.sceneworld.render import image_array, jitter_from_seed, render  # noqa: E402

SEED = 20261202
CUTOUTS = 8


def variants(scene: Scene, index: int, attribute: str) -> list[str]:
    """Canonical captions of ``scene`` with object ``index``'s ``attribute`` set to each value;
    the first is the scene's own."""
    values = SHAPES if attribute == "shape" else COLOURS
    own = getattr(scene.objects[index], attribute)
    captions = []
    for value in (own, *(v for v in values if v != own)):
        changed: SceneObject = replace(scene.objects[index], **{attribute: value})
        captions.append(canonical_caption(Scene(tuple(changed if i == index else o
                                                      for i, o in enumerate(scene.objects)))))
    return captions


def cut(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``CUTOUTS`` cutouts of one (1, 3, 64, 64) picture, drawn as CLIPGuided's defaults draw them."""
    d = SCENE_DEFAULTS
    boxes = objective.draw_boxes(CUTOUTS, 64, 64, d["cut_min"], d["cut_max"], generator)
    distortions = objective.draw_distortions(CUTOUTS, d["rotate_deg"], d["skew"], d["blur"], generator)
    return objective.cutouts(pixels, boxes, distortions, 64)


def score(clip: SceneCLIP, pictures: list[torch.Tensor], captions: list[list[str]]) -> dict:
    """Top-1 and mean margin of the first caption of each list against the others, one picture each."""
    network, tokenizer = clip.network, clip.tokenizer
    with torch.inference_mode():
        images = F.normalize(network.encode_image(clip_pixels(torch.cat(pictures))), dim=-1)
        wins, margins = [], []
        for image, options in zip(images, captions, strict=True):
            texts = F.normalize(network.encode_text(torch.tensor([tokenizer.encode(t) for t in options])), dim=-1)
            cos = texts @ image
            wins.append(bool(cos[0] > cos[1:].max()))
            margins.append(float(cos[0] - cos[1:].max()))
    return {"top1": round(float(np.mean(wins)), 4), "margin": round(float(np.mean(margins)), 4), "n": len(wins)}


def measure(weights: Path, scenes: int) -> dict:
    torch.set_num_threads(1)
    clip = SceneCLIP(weights)
    rng = np.random.default_rng(SEED)
    generator = torch.Generator().manual_seed(SEED)
    held = [random_scene(rng, held_out=True) for _ in range(scenes)]
    held_pictures = [torch.from_numpy(image_array(render(s, jitter_from_seed(SEED + i))))[None]
                     for i, s in enumerate(held)]
    held_index = [int(rng.integers(len(s.objects))) for s in held]
    centre = [Scene((SceneObject(shape, colour, "large", "centre"),)) for shape in SHAPES for colour in COLOURS]
    centre_pictures = [torch.from_numpy(image_array(render(s)))[None] for s in centre]
    figures: dict = {}
    for label, group, pictures, indices in (("held-out scenes", held, held_pictures, held_index),
                                            ("centre objects", centre, centre_pictures, [0] * len(centre))):
        cutouts = [cut(p, generator) for p in pictures]
        for attribute in ("shape", "colour"):
            captions = [variants(s, i, attribute) for s, i in zip(group, indices, strict=True)]
            figures[f"{label}, {attribute}"] = score(clip, pictures, captions)
            figures[f"{label} (cutouts), {attribute}"] = score(
                clip, [c[None] for batch in cutouts for c in batch],
                [c for c in captions for _ in range(CUTOUTS)])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--scenes", type=int, default=300, help="held-out scenes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(args.weights, args.scenes)
    print("| pictures, attribute | top-1 | mean margin over the best wrong caption | pictures |")
    print("| --- | --- | --- | --- |")
    for key, f in figures.items():
        print(f"| {key} | {f['top1']:.1%} | {f['margin']:+.4f} | {f['n']} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
