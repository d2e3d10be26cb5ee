"""Benchmark: the invocation step's peak memory and time, runs advanced in cohorts or all at once.

Registers one experiment of ``--runs`` runs of ``--invocations`` invocations (one network of the
dummy models, drawing ``--size``-pixel images instead of their usual 64, as a real text-to-image
model's 512) in a throwaway SQLite store, then runs ``run_invocations`` on it in a fresh child
process for each cohort size (``0`` for all the runs in one lockstep, the code before cohorts),
and prints each one's wall time, CPU time and peak resident memory, side by side in one run. The
stored outputs of every child are compared: they must be the same.

Run from the repository root:
    .venv/bin/python benchmarks/cohorts.py
    .venv/bin/python benchmarks/cohorts.py --runs 2000 --cohorts 0 256 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def child(store_path: str, size: int, cohort: int) -> None:
    from tracer_pipeline.models import dummy
    from tracer_pipeline.models.pool import ModelPool, resolve_load_options
    from tracer_pipeline.store import TraceStore
    from tracer_pipeline.tracing.invocations import run_invocations

    dummy.SIZE = size  # the dummy models draw at call time from this module constant
    store = TraceStore(f"sqlite:///{store_path}")
    ids = [run.run_id for run in store.get_runs()]
    pool = ModelPool(resolve_load_options("cpu", "auto", os.path.join(os.path.dirname(store_path), "models")))
    started, cpu = time.perf_counter(), time.process_time()
    run_invocations(store, pool, ids, cohort_runs=cohort or len(ids))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    content = store.content_hashes(ids, "invocations")  # of each run's stored outputs
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "content": sorted(content.items())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--invocations", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cohorts", type=int, nargs="+", default=[0, 256])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return

    from tracer_pipeline.config import parse_experiment
    from tracer_pipeline.store import TraceStore

    config = {"name": "cohorts", "networks": [["DummyT2I", "DummyI2T"]], "prompts": ["a red balloon"],
              "seeds": list(range(args.runs)), "embedding_models": ["DummyEmbed"],
              "max_length": args.invocations}
    print(f"{args.runs} runs × {args.invocations} invocations, {args.size}-px images; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| cohort (runs) | wall s | CPU s | peak MiB |\n| --- | --- | --- | --- |")
    contents = set()
    for cohort in args.cohorts:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "trace.sqlite")
            TraceStore(f"sqlite:///{path}").register_experiment(parse_experiment(config, "cohorts"))
            result = json.loads(subprocess.run(
                [sys.executable, __file__, "--child", path, str(args.size), str(cohort)],
                check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        contents.add(json.dumps(result["content"]))
        label = f"all {args.runs} at once" if cohort == 0 else str(cohort)
        print(f"| {label} | {result['wall']:.1f} | {result['cpu']:.1f} | {result['peak_mib']:,.0f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}; the same stored outputs in every case: "
          f"{len(contents) == 1}")


if __name__ == "__main__":
    main()
