"""Benchmark: all-pairs H1 diagram distances, plain persim loop vs diagram_distance_matrix.

Builds H1 persistence diagrams of synthetic trajectories (walks on S^{d−1}, half of them
getting stuck on an attractor), then, on the same diagrams and in one process, times for each
bank size and metric:

* the plain loop ``persim.bottleneck`` / ``persim.wasserstein`` over all pairs, in a random
  order; when it would run past ``--persim-budget`` seconds it stops there and the full time is
  extrapolated from the measured per-pair mean (marked "~" in the table);
* ``diagram_distance_matrix`` over all pairs, on 1 thread and on every core, after one warm-up
  call so that JIT compilation (or loading the compiled cache) is not counted;

and reports the largest absolute difference between the two on the pairs persim computed.
Prints a Markdown table.

With ``--h0`` it times instead, on H0 diagrams (every bar born at 0) of the same trajectories,
the sorted kernels against the general matching of the same module
(``h0_by_sorting=False``): the sorted ones over all pairs, the general one over random pairs
for at most ``--general-budget`` seconds (extrapolated like the persim loop), and the largest
difference on the pairs both computed.

Run from the repository root:
    .venv/bin/python benchmarks/diagram_distances.py
    .venv/bin/python benchmarks/diagram_distances.py --h0 --points 100 300 1000 --sizes 50
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import persim

from tracer_pipeline.analysis.diagram_distances import (
    DiagramMetric,
    diagram_distance,
    diagram_distance_matrix,
)
from tracer_pipeline.tda.persistence import persistence_diagram

PERSIM = {"bottleneck": persim.bottleneck, "wasserstein": persim.wasserstein}


def synthetic_trajectory(seed: int, points: int, dim: int) -> np.ndarray:
    """A walk x_{t+1} = normalise(x_t + σ g), g ~ N(0, I/d), σ ∈ [0.15, 0.6]. Odd seeds get
    stuck after 40% of the steps: x_{t+1} = normalise(x_t + 0.2 (a − x_t) + 0.01 g) towards an
    attractor a, and 30% of the stuck steps repeat the previous output exactly."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.15, 0.6)
    x = rng.normal(size=dim)
    x /= np.linalg.norm(x)
    stuck_from = int(0.4 * points) if seed % 2 else points
    attractor = rng.normal(size=dim)
    attractor /= np.linalg.norm(attractor)
    trajectory = np.empty((points, dim))
    for t in range(points):
        if t < stuck_from:
            x = x + sigma * rng.normal(size=dim) / np.sqrt(dim)
            x /= np.linalg.norm(x)
        elif t == stuck_from or rng.uniform() >= 0.3:
            x = x + 0.2 * (attractor - x) + 0.01 * rng.normal(size=dim) / np.sqrt(dim)
            x /= np.linalg.norm(x)
        # Otherwise x is left as it was: an exact repeat of the previous output.
        trajectory[t] = x
    return trajectory.astype(np.float32)


def h1_diagram(args: tuple[int, int, int]) -> np.ndarray:
    return persistence_diagram(synthetic_trajectory(*args), max_dim=1)[1]


def h0_diagram(args: tuple[int, int, int]) -> np.ndarray:
    return persistence_diagram(synthetic_trajectory(*args), max_dim=0)[0]


def general_h0_loop(
    diagrams: list[np.ndarray], metric: DiagramMetric, budget: float, seed: int
) -> tuple[float, bool, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs by the general matching, one pair at a time in a random order, until done or
    ``budget`` seconds have passed. Returns what ``persim_loop`` returns."""
    first, second = np.triu_indices(len(diagrams), k=1)
    order = np.random.default_rng(seed).permutation(first.size)
    first, second = first[order], second[order]
    values = []
    start = time.perf_counter()
    for i, j in zip(first, second, strict=True):
        values.append(diagram_distance(diagrams[i], diagrams[j], metric, h0_by_sorting=False))
        if time.perf_counter() - start > budget:
            break
    elapsed = time.perf_counter() - start
    done = len(values)
    return elapsed * first.size / done, done < first.size, first[:done], second[:done], np.array(values)


def h0_table(args: argparse.Namespace, cores: int) -> None:
    """Sorted H0 kernels against the general matching, per trajectory length and bank size."""
    for metric in PERSIM:  # compile, or load the compiled cache, before timing
        diagram_distance(np.array([[0.0, 1.0]]), np.array([[0.0, 2.0]]), metric)
        diagram_distance(np.array([[0.0, 1.0]]), np.array([[0.0, 2.0]]), metric, h0_by_sorting=False)
    print(f"{platform.processor() or platform.machine()}, {cores} cores, "
          f"load average at start {os.getloadavg()[0]:.1f}.\n")
    print("| points | H0 bars (median) | diagrams | pairs | metric | general matching, 1 thread | sorted, "
          "1 thread | speed-up | max abs diff (pairs checked) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for points in args.points:
        with ProcessPoolExecutor(max_workers=cores) as pool:
            diagrams = list(pool.map(h0_diagram, [(s, points, args.dim) for s in range(max(args.sizes))]))
        bars = int(np.median([d.shape[0] for d in diagrams]))
        for size in args.sizes:
            bank = diagrams[:size]
            pairs = size * (size - 1) // 2
            for metric in PERSIM:
                general_s, extrapolated, first, second, reference = general_h0_loop(
                    bank, metric, args.general_budget, seed=size
                )
                sorted_s, matrix = timed_matrix(bank, metric, threads=1)
                diff = float(np.max(np.abs(matrix[first, second] - reference)))
                mark = "~" if extrapolated else ""
                print(f"| {points} | {bars} | {size} | {pairs:,} | {metric} | {mark}{general_s:,.2f} s | "
                      f"{sorted_s:,.3f} s | {mark}{general_s / sorted_s:,.0f}× | {diff:.1e} ({first.size:,}) |",
                      flush=True)
    print("\n~ = extrapolated from the measured per-pair mean of the general matching (the pairs it "
          f"reached in {args.general_budget:.0f} s, random order).")


def persim_loop(
    diagrams: list[np.ndarray], metric: DiagramMetric, budget: float, seed: int
) -> tuple[float, bool, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with persim in a random order until done or ``budget`` seconds have passed.

    Returns (seconds for all pairs, whether extrapolated, first, second, values computed).
    """
    first, second = np.triu_indices(len(diagrams), k=1)
    order = np.random.default_rng(seed).permutation(first.size)
    first, second = first[order], second[order]
    distance = PERSIM[metric]
    values = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, j in zip(first, second, strict=True):
            values.append(distance(diagrams[i], diagrams[j]))
            if time.perf_counter() - start > budget:
                break
    elapsed = time.perf_counter() - start
    done = len(values)
    total = elapsed * first.size / done
    return total, done < first.size, first[:done], second[:done], np.array(values)


def timed_matrix(
    diagrams: list[np.ndarray], metric: DiagramMetric, threads: int
) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    matrix = diagram_distance_matrix(diagrams, metric, threads=threads)
    return time.perf_counter() - start, matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--points", type=int, nargs="+", default=[300],
                        help="points per trajectory (several with --h0)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension")
    parser.add_argument(
        "--persim-budget", type=float, default=120.0, help="seconds per persim loop"
    )
    parser.add_argument("--h0", action="store_true",
                        help="H0 diagrams: sorted kernels against the general matching")
    parser.add_argument("--general-budget", type=float, default=60.0,
                        help="seconds per general-matching loop (--h0)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    if args.h0:
        h0_table(args, cores)
        return
    args.points = args.points[0]

    start = time.perf_counter()
    count = max(args.sizes)
    with ProcessPoolExecutor(max_workers=cores) as pool:
        diagrams = list(
            pool.map(h1_diagram, [(s, args.points, args.dim) for s in range(count)], chunksize=8)
        )
    sizes = np.array([d.shape[0] for d in diagrams])
    print(
        f"Built {count} H1 diagrams of {args.points}-point trajectories in "
        f"{time.perf_counter() - start:.0f} s ({cores} processes): median {np.median(sizes):.0f} "
        f"bars, max {sizes.max()}, {np.count_nonzero(sizes == 0)} empty."
    )
    start = time.perf_counter()
    for metric in PERSIM:
        diagram_distance_matrix(diagrams[:3], metric)
    print(f"Warm-up (JIT compile or compiled-cache load): {time.perf_counter() - start:.1f} s.")
    print(f"{platform.processor() or platform.machine()}, {cores} cores, "
          f"load average at start {os.getloadavg()[0]:.1f}.\n")

    print("| diagrams | pairs | metric | persim loop | ours, 1 thread | ours, "
          f"{cores} threads | speed-up ({cores} thr.) | max abs diff (pairs checked) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        bank = diagrams[:size]
        pairs = size * (size - 1) // 2
        for metric in PERSIM:
            persim_s, extrapolated, first, second, reference = persim_loop(
                bank, metric, args.persim_budget, seed=size
            )
            one_s, _ = timed_matrix(bank, metric, threads=1)
            many_s, matrix = timed_matrix(bank, metric, threads=cores)
            diff = float(np.max(np.abs(matrix[first, second] - reference)))
            mark = "~" if extrapolated else ""
            print(
                f"| {size} | {pairs:,} | {metric} | {mark}{persim_s:,.1f} s | {one_s:,.2f} s | "
                f"{many_s:,.2f} s | {mark}{persim_s / many_s:,.0f}× | {diff:.1e} "
                f"({first.size:,}) |",
                flush=True,
            )
    print("\n~ = extrapolated from the measured per-pair mean of the plain loop (the pairs it "
          f"reached in {args.persim_budget:.0f} s, random order).")


if __name__ == "__main__":
    main()
