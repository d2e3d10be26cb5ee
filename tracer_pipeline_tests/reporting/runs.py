"""Constructed runs whose answers are known, for the reporting tests."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from tracer_pipeline.reporting.data import ContactImages, ExperimentData, RunData
from tracer_pipeline.tda.persistence import persistence_diagram

DIM = 16
NETWORK = ("T2I", "I2T")


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def basis(i: int) -> np.ndarray:
    vector = np.zeros(DIM)
    vector[i] = 1.0
    return vector


def hashes_of(trajectory: np.ndarray) -> tuple[str, ...]:
    """One hash per output: equal rows (exact repeats) hash equally."""
    return tuple(hashlib.sha256(np.asarray(row, dtype=np.float32).tobytes()).hexdigest() for row in trajectory)


def make_run(
    run_id: str,
    trajectory: np.ndarray,
    *,
    network: tuple[str, ...] = NETWORK,
    prompt: str = "a cat",
    seed: int = 0,
    order: int = 0,
    status: str = "complete",
    reference: np.ndarray | None = None,
    output_hashes: tuple[str, ...] | None = None,
    with_images: bool = False,
) -> RunData:
    """A run of ``network`` whose outputs embed as the rows of ``trajectory`` (all embedded),
    alternating image and text as the network's positions do, with its real persistence diagram."""
    trajectory = np.asarray(trajectory, dtype=np.float32)
    steps = trajectory.shape[0]
    types = tuple("image" if network[t % len(network)].startswith("T2I") else "text" for t in range(steps))
    images = ContactImages()
    if with_images:
        shown = tuple((t, Image.new("RGB", (32, 32), (40 * t % 256, 80, 160))) for t in range(0, steps, 2))[:4]
        images = ContactImages(tuple((t, f"{run_id}/{t}") for t, _ in shown), lambda: shown)
    return RunData(
        run_id=run_id, network=network, prompt=prompt, seed=seed, status=status,
        stop_reason="fixed point from invocation 0" if status == "stuck" else None, order=order,
        output_types=types, output_hashes=output_hashes if output_hashes is not None else hashes_of(trajectory),
        trajectory=trajectory, trajectory_seqs=tuple(range(steps)),
        reference=basis(0).astype(np.float32) if reference is None else reference,
        diagram=persistence_diagram(trajectory, max_dim=1) if steps else {},
        last_caption=f"caption of {run_id}" if "text" in types else None,
        images=images,
        factors={"t2i_model": "+".join(m for m in network if m.startswith("T2I")),
                 "i2t_model": "+".join(m for m in network if m.startswith("I2T")),
                 "network": " → ".join(network), "prompt": prompt, "seed": str(seed)},
    )


def wander(rng: np.random.Generator, start: np.ndarray, steps: int, step_size: float) -> np.ndarray:
    """A random walk on the unit sphere from ``start``."""
    rows = [unit(start)]
    for _ in range(steps - 1):
        rows.append(unit(rows[-1] + step_size * rng.normal(size=DIM)))
    return np.stack(rows)


def fixed_point_trajectory(rng: np.random.Generator, steps: int, start: int) -> np.ndarray:
    """A walk that repeats its last two outputs exactly (image, text) from step ``start`` on,
    i.e. a fixed point of a two-model network: output t = output t − 2 for t ≥ start + 2."""
    walk = wander(rng, basis(0), start + 2, 0.3)
    repeats = [walk[start + (t - start) % 2] for t in range(start + 2, steps)]
    return np.vstack([walk, *repeats]) if repeats else walk


def small_experiment(images: bool = False) -> ExperimentData:
    """Two networks × two prompts × two seeds, 16 steps: network "T2I → I2T" wanders freely;
    "T2I-b → I2T" reaches an exact fixed point at step 4 from every prompt and seed, all of
    them at the same output. Two earlier runs from another experiment are in the store."""
    runs = []
    fixed = wander(np.random.default_rng(99), basis(3), 2, 0.3)
    for n, network in enumerate((("T2I", "I2T"), ("T2I-b", "I2T"))):
        for p, prompt in enumerate(("a cat", "a ship")):
            for seed in (1, 2):
                rng = np.random.default_rng(100 * n + 10 * p + seed)
                if n == 0:
                    trajectory = wander(rng, unit(basis(0) + 0.2 * basis(p + 1)), 16, 0.35)
                else:
                    trajectory = np.vstack([wander(rng, basis(0), 4, 0.3), np.tile(fixed, (6, 1))])
                runs.append(make_run(f"run-{n}{p}{seed}", trajectory, network=network, prompt=prompt, seed=seed,
                                     order=len(runs) + 2, with_images=images))
    earlier = [make_run(f"old-{i}", np.vstack([wander(np.random.default_rng(7 + i), basis(5), 4, 0.3),
                                               np.tile(fixed, (6, 1))]), network=("T2I-b", "I2T"),
                        prompt="a dog", seed=i, order=i)
               for i in range(2)]
    return ExperimentData("small", "embedder", runs, earlier + runs)
