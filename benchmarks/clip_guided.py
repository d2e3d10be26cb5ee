"""CLIP-guided generation on SceneWorld: does the captioner read what the guide was asked for, and
do two-prompt panoramas put each prompt on its side?

    python benchmarks/clip_guided.py --images              # the figures and images in BENCHMARKS.md
    python benchmarks/clip_guided.py --seeds 1 --quick      # a smoke run

1. **Captions.** The network ``["CLIPGuided", "SceneI2T"]`` runs through the pipeline (a
   throwaway store, ``run_invocations``) on single-object SceneWorld prompts, one invocation pair
   per prompt and seed. A pair counts when SceneI2T's caption (the captioner is not the guide)
   names an object with the prompt's shape and colour (``parse_caption``). The same is counted
   for each run's chosen start (its step-0 intermediate output, the best of the seeded starts
   before any optimisation step), to tell what the starts do from what the optimisation does.
2. **Panoramas.** ``CLIPGuided`` at 128×64 with two sprites, ``prompt_right`` set, with and without
   semantic symmetry. A seed counts when the guide (SceneCLIP) scores the left half nearer to the
   left prompt than to the right one, and the right half the other way round. How alike the
   halves' mirrored cutout pairs are: the mean over 16 fixed mirrored pairs of
   cos(patch₁ − text₁, patch₂ − text₂) (the term's own quantity) and of cos(patch₁, patch₂).
   And, as a stricter check than the guide's: how many halves SceneI2T, shown each 64 px half
   alone, reads as its own prompt's colour and shape.

Everything runs on CPU with one torch thread, so the figures are the same on every run.
Images go to ``docs/clip_guided/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tracer_pipeline.clipguided import objective  # noqa: E402
from tracer_pipeline.clipguided.models import SceneGuide  # noqa: E402
from tracer_pipeline.clipguided.optimise import from_image  # noqa: E402
from tracer_pipeline.config import parse_experiment  # noqa: E402
from tracer_pipeline.models.pool import ModelPool, resolve_load_options  # noqa: E402
from tracer_pipeline.models.registry import get_model  # noqa: E402
from tracer_pipeline.sceneworld.grammar import COLOURS, SHAPES, parse_caption  # noqa: E402
from tracer_pipeline.store import TraceStore  # noqa: E402
from tracer_pipeline.tracing.invocations import run_invocations  # noqa: E402

DOCS = ROOT / "docs" / "clip_guided"
PANORAMA_PAIRS = [("a large red circle in the centre", "a large blue square in the centre"),
                  ("a large yellow star in the centre", "a large green triangle in the centre")]


def prompts(count: int) -> list[tuple[str, str, str]]:
    """(prompt, shape, colour): every shape in turn, colours stepping through the palette."""
    out = []
    for i in range(count):
        shape, colour = SHAPES[i % len(SHAPES)], COLOURS[(i * 4) % len(COLOURS)]
        out.append((f"a large {colour} {shape} in the centre", shape, colour))
    return out


def run_network(store: TraceStore, pool: ModelPool, name: str, network: list, texts: list[str],
                seeds: list[int]) -> dict[str, list]:
    config = {"name": name, "networks": [network], "seeds": seeds, "prompts": texts,
              "embedding_models": ["SceneCLIP"], "max_length": 2}
    experiment = parse_experiment(config, name)
    run_ids = store.register_experiment(experiment)
    run_invocations(store, pool, run_ids)
    return {r: store.invocations(r) for r in run_ids}


def captions(store: TraceStore, pool: ModelPool, count: int, seeds: list[int], steps: int | None) -> dict:
    table = prompts(count)
    entry: dict = {"model": "CLIPGuided"} if steps is None else {"model": "CLIPGuided", "steps": steps}
    started = time.perf_counter()
    runs = run_network(store, pool, "captions", [entry, "SceneI2T"], [t for t, _, _ in table], seeds)
    elapsed = time.perf_counter() - started
    by_prompt = {t: (shape, colour) for t, shape, colour in table}
    captioner = pool.get("SceneI2T")
    rows, images = [], []
    for run_id, invocations in runs.items():
        run = store.get_run(run_id)
        shape, colour = by_prompt[run.prompt]
        formed = store.intermediate_outputs([run_id])
        caption = invocations[1].output_text or ""
        [start_caption] = captioner.generate([formed[0].image], [run.seed])  # step 0: the chosen start
        read = [parse_caption(c) for c in (caption, start_caption)]
        rows.append({"prompt": run.prompt, "seed": run.seed, "caption": caption, "start_caption": start_caption,
                     **{key: any(o.shape == shape and o.colour == colour for o in objects)
                        for key, objects in zip(("hit", "start_hit"), read, strict=True)},
                     "colour": any(o.colour == colour for o in read[0]),
                     "shape": any(o.shape == shape for o in read[0])})
        images.append((invocations[0].output, formed))
    n = len(rows)
    counts = {key: sum(r[key] for r in rows) for key in ("hit", "start_hit", "colour", "shape")}
    return {"pairs": n, "hits": counts["hit"], "share": counts["hit"] / n, "start_hits": counts["start_hit"],
            "colour_hits": counts["colour"], "shape_hits": counts["shape"], "seconds_per_image": elapsed / n,
            "rows": rows, "images": images}


def half_scores(guide: SceneGuide, image: Image.Image, left: str, right: str) -> tuple[bool, list[float]]:
    """Whether the left half is nearer the left prompt and the right half the right prompt (by the
    guide), and the four cosines (left·A, left·B, right·A, right·B)."""
    pixels = from_image(image, image.height, image.width)
    halves = torch.cat([pixels[..., : image.width // 2], pixels[..., image.width // 2:]])
    with torch.no_grad():
        vectors = guide.encode_images(torch.nn.functional.interpolate(halves, size=(guide.size, guide.size),
                                                                      mode="bilinear", align_corners=False))
        texts = guide.encode_texts([left, right])
    cos = (vectors @ texts.T).tolist()
    return cos[0][0] > cos[0][1] and cos[1][1] > cos[1][0], [cos[0][0], cos[0][1], cos[1][0], cos[1][1]]


def pair_likeness(guide: SceneGuide, image: Image.Image, left: str, right: str,
                  blend: float) -> tuple[float, float]:
    """Mean over 16 fixed mirrored cutout pairs of cos(patch₁ − text₁, patch₂ − text₂), the texts
    mixed across the image as the model mixes them (``blend``), and of cos(patch₁, patch₂)."""
    pixels = from_image(image, image.height, image.width)
    generator = torch.Generator().manual_seed(0)
    boxes = objective.draw_boxes(16, image.height, image.width, 0.5, 1.0, generator)
    boxes = [b if b.x < image.width / 2 else b.mirrored(image.width) for b in boxes]
    pairs = boxes + [b.mirrored(image.width) for b in boxes]
    with torch.no_grad():
        vectors = guide.encode_images(objective.cutouts(pixels, pairs, [objective.Distortion()] * len(pairs),
                                                        guide.size))
        texts = guide.encode_texts([left, right])
        weights = objective.right_weights([b.x for b in pairs], image.width, blend)
        mixed = objective.mixed_text(texts[:1], texts[1:], weights)
    n = len(boxes)
    semantic = float(objective.semantic_symmetry(vectors[:n], vectors[n:], mixed[:n], mixed[n:]))
    plain = float(torch.nn.functional.cosine_similarity(vectors[:n], vectors[n:], dim=-1).mean())
    return semantic, plain


def halves_read(captioner: object, image: Image.Image, left: str, right: str, seed: int) -> list[bool]:
    """Whether SceneI2T, shown each half of a panorama alone, names its prompt's colour and shape."""
    half = image.width // 2
    read = []
    for box, prompt in (((0, 0, half, image.height), left), ((half, 0, image.width, image.height), right)):
        [wanted] = parse_caption(prompt)
        [caption] = captioner.generate([image.crop(box)], [seed])
        read.append(any(o.shape == wanted.shape and o.colour == wanted.colour for o in parse_caption(caption)))
    return read


def panoramas(store: TraceStore, pool: ModelPool, seeds: list[int], steps: int | None, weight: float) -> dict:
    guide = SceneGuide(pool.options)
    captioner = pool.get("SceneI2T")
    results: dict = {}
    for label, semantic in (("without", 0.0), ("with", weight)):
        rows, images = [], []
        for left, right in PANORAMA_PAIRS:
            entry = {"model": "CLIPGuided", "width": 128, "shapes": 2, "prompt_right": right,
                     "semantic_symmetry": semantic}
            if steps is not None:
                entry["steps"] = steps
            runs = run_network(store, pool, f"panorama-{label}-{len(rows)}", [entry, "SceneI2T"], [left], seeds)
            for run_id, invocations in runs.items():
                image = invocations[0].output
                placed, cosines = half_scores(guide, image, left, right)
                semantic_alike, plain_alike = pair_likeness(guide, image, left, right,
                                                            get_model("CLIPGuided").params["blend"])
                seed = store.get_run(run_id).seed
                rows.append({"left": left, "right": right, "seed": seed, "placed": placed,
                             "cosines": [round(c, 3) for c in cosines], "pair_semantic": semantic_alike,
                             "pair_cos": plain_alike, "halves_read": halves_read(captioner, image, left, right, seed)})
                images.append(image)
        n = len(rows)
        results[label] = {"seeds_placed": sum(r["placed"] for r in rows), "runs": n,
                          "share_placed": sum(r["placed"] for r in rows) / n,
                          "pair_semantic": sum(r["pair_semantic"] for r in rows) / n,
                          "pair_cos": sum(r["pair_cos"] for r in rows) / n,
                          "halves_read": sum(sum(r["halves_read"]) for r in rows), "halves": 2 * n,
                          "rows": rows, "images": images}
    return results


def contact_sheet(images: list[Image.Image], columns: int, scale: int = 2) -> Image.Image:
    width, height = images[0].width * scale, images[0].height * scale
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (width + 2), rows * (height + 2)), (255, 255, 255))
    for i, image in enumerate(images):
        sheet.paste(image.resize((width, height), Image.Resampling.NEAREST),
                    ((i % columns) * (width + 2), (i // columns) * (height + 2)))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--panorama-seeds", type=int, default=4)
    parser.add_argument("--semantic-weight", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="20 optimisation steps instead of the default")
    parser.add_argument("--images", action="store_true", help=f"write example images to {DOCS}")
    parser.add_argument("--part", choices=("captions", "panoramas", "all"), default="all",
                        help="measure one part only (the two can run side by side)")
    args = parser.parse_args()
    steps = 20 if args.quick else None
    torch.set_num_threads(1)
    summary: dict = {}
    with tempfile.TemporaryDirectory(prefix="clip-guided-") as folder:
        store = TraceStore(f"sqlite:///{Path(folder) / 'trace.sqlite'}")
        pool = ModelPool(resolve_load_options("cpu", "float32", Path(folder) / "models", torch_threads=1))
        if args.images:
            DOCS.mkdir(parents=True, exist_ok=True)
        if args.part in ("captions", "all"):
            caption = captions(store, pool, args.prompts, list(range(1, args.seeds + 1)), steps)
            summary["captions"] = {k: v for k, v in caption.items() if k != "images"}
            if args.images:
                contact_sheet([image for image, _ in caption["images"][:12]], 6).save(DOCS / "captions.png")
                formed = [record.image for record in caption["images"][0][1]]
                contact_sheet(formed, len(formed)).save(DOCS / "formation.png")
        if args.part in ("panoramas", "all"):
            panorama = panoramas(store, pool, list(range(1, args.panorama_seeds + 1)), steps, args.semantic_weight)
            summary["panoramas"] = {label: {k: v for k, v in p.items() if k != "images"}
                                    for label, p in panorama.items()}
            if args.images:
                for label in ("without", "with"):  # one row per prompt pair, its first three seeds
                    per_pair = len(panorama[label]["images"]) // len(PANORAMA_PAIRS)
                    shown = [image for i, image in enumerate(panorama[label]["images"]) if i % per_pair < 3]
                    contact_sheet(shown, min(3, per_pair)).save(DOCS / f"panoramas-{label}-semantic.png")
        store.close()
    print(json.dumps(summary, indent=1))

if __name__ == "__main__":
    main()
