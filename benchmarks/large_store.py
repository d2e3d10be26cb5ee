"""A store too large for all pairs: what its report costs with and without what the store
comparison keeps (the fixed sample's matrices and each run's nearest earlier run), side by side.

    python benchmarks/large_store.py                      # 400 runs × 100 invocations, limit 200
    python benchmarks/large_store.py --runs 1000 --invocations 200 --limit 500

The store is made through the CLI (`run-experiment`, dummy models); the rest runs in this process
with ``MAX_ALL_PAIRS_RUNS`` lowered to ``--limit`` (and ``NEAREST_CANDIDATES`` to
``--candidates``), so that a store of a few hundred runs is "too large" the way one of thousands
is with the defaults. Reported: the comparison's cost (from scratch, and again after
``--new-runs`` more runs, reusing the first), and the report built from a comparison that keeps
them against one that does not (what a comparison above the limit held before: attractors only),
with the findings checked equal; and the report of an experiment that is half the store (its own
runs' distances, outside the comparison's sample) computing them against reading those its
previous report kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--invocations", type=int, default=100)
    parser.add_argument("--limit", type=int, default=200, help="MAX_ALL_PAIRS_RUNS for the measurement")
    parser.add_argument("--candidates", type=int, default=64, help="NEAREST_CANDIDATES for the measurement")
    parser.add_argument("--new-runs", type=int, default=20, help="runs added after the first comparison")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tracer-large-store-"))
    prompts = ["a red balloon", "a quiet harbour"]
    config = {"name": "large", "networks": [["DummyT2I", "DummyI2T"]], "prompts": prompts,
              "seeds": list(range(args.runs // len(prompts))), "embedding_models": ["DummyEmbed"],
              "max_length": args.invocations, "stop_when_stuck": False}
    (root / "large.json").write_text(json.dumps(config))
    env = {**os.environ, "TRACER_DATA_DIR": str(root / "data")}
    env.pop("DAGSTER_HOME", None)
    print(f"load average before: {os.getloadavg()[0]:.1f}; data in {root}")
    _, made = _timed(lambda: subprocess.run(
        [sys.executable, "-m", "tracer_pipeline.cli", "run-experiment", str(root / "large.json")],
        env=env, check=True, capture_output=True))
    print(f"store: {args.runs} runs × {args.invocations} dummy invocations, made in {made:.0f} s")

    from tracer_pipeline.reporting import compare
    from tracer_pipeline.reporting.distance_cache import DistanceCache
    from tracer_pipeline.reporting.gather import experiment_data, store_runs
    from tracer_pipeline.reporting.report import build_report
    from tracer_pipeline.store import TraceStore

    compare.MAX_ALL_PAIRS_RUNS = args.limit
    compare.NEAREST_CANDIDATES = args.candidates
    store = TraceStore(f"sqlite:///{root / 'data' / 'tracer.sqlite'}")
    runs = store_runs(store, "DummyEmbed")
    bars = sorted(len(r.diagram.get(1, ())) for r in runs)
    print(f"H1 bars per run: median {bars[len(bars) // 2]}; limit {args.limit} runs, {args.candidates} candidates")

    earlier, first_s = _timed(lambda: compare.compare_store(runs[:-args.new_runs], embedding_model="DummyEmbed"))
    comparison, again_s = _timed(lambda: compare.compare_store(runs, previous=earlier))
    _, attractors_s = _timed(lambda: compare._attractors(runs, compare.DEFAULT_ATTRACTOR_THRESHOLD))
    print(f"comparison of {len(runs) - args.new_runs} runs from scratch: {first_s:.1f} s; with {args.new_runs} "
          f"more, reusing it: {again_s:.1f} s (the attractors alone, all a comparison above the limit held "
          f"before: {attractors_s:.1f} s)")

    data = experiment_data(store, "large", "DummyEmbed")
    bare = dataclasses.replace(comparison, matrices={}, matrix_run_ids=None, nearest=None, unproven=frozenset())
    build_report(data, comparison)  # once first: imports and matplotlib's caches are not what is measured
    without, without_s = _timed(lambda: build_report(data, bare))
    kept, kept_s = _timed(lambda: build_report(data, comparison))
    same = all(kept.sections[name].figures == without.sections[name].figures
               for name in ("diagram_distances", "nearest_by_shape"))
    same &= kept.tables["nearest_earlier_runs"] == without.tables["nearest_earlier_runs"]
    print(f"report of {len(data.runs)} runs: comparison without what it keeps {without_s:.1f} s, with it "
          f"{kept_s:.1f} s ({without_s / kept_s:.1f}×); same findings: {same}")

    # An experiment that is part of the store: its runs' pairs are not all in the comparison's
    # sample. Its report computes them once and keeps them beside it (DistanceCache).
    part = dataclasses.replace(data, runs=data.runs[: len(data.runs) // 2])
    cache = DistanceCache()
    build_report(part, comparison, distances=cache)
    plain_report, plain_s = _timed(lambda: build_report(part, comparison))
    cached_report, cached_s = _timed(lambda: build_report(part, comparison, distances=DistanceCache(cache.current)))
    same = cached_report.sections["diagram_distances"].figures == plain_report.sections["diagram_distances"].figures
    print(f"report of an experiment of {len(part.runs)} of the store's runs: computing its runs' distances "
          f"{plain_s:.1f} s, with those kept by its previous report {cached_s:.1f} s ({plain_s / cached_s:.1f}×); "
          f"same findings: {same}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
