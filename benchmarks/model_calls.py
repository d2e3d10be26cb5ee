"""Benchmark: the cost of running model calls on another thread (what enforces their timeout).

Runs SceneWorld's two models in a cycle of ``--calls`` one-item calls, three ways, interleaved
``--repeats`` times in one process: called directly; each call on a fresh thread (the code before
calls shared a thread); each call through ``_call_with_timeout`` (one long-lived thread per
calling thread). Prints the best and the median time per call of each.

Run from the repository root:
    .venv/bin/python benchmarks/model_calls.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from tracer_pipeline.models import base
from tracer_pipeline.models.pool import ModelPool, resolve_load_options


def fresh_thread(call, args, timeout_s):
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(result=call(*args)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answer["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    pool = ModelPool(resolve_load_options("cpu", "auto", tempfile.mkdtemp(prefix="tracer-models-")))
    network = [pool.get(name) for name in ("SceneT2I", "SceneI2TSampled")]

    def cycle(wrap) -> float:
        value = "a large red circle on the left and a small blue square at the top"
        started = time.perf_counter()
        for i in range(args.calls):
            [value] = wrap(network[i % 2].generate, [[value], [0]])
        return (time.perf_counter() - started) / args.calls

    ways = {"direct (no timeout)": lambda call, a: call(*a),
            "a fresh thread per call": lambda call, a: fresh_thread(call, a, 600),
            "one long-lived thread (_call_with_timeout)": lambda call, a: base._call_with_timeout(call, a, 600)}
    cycle(ways["direct (no timeout)"])  # warm-up
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.repeats):
        for way, wrap in ways.items():
            times[way].append(cycle(wrap))
    print(f"{args.calls} one-item calls of SceneT2I and SceneI2TSampled in turn, {args.repeats} repeats\n")
    print("| how | best ms per call | median ms per call |\n| --- | --- | --- |")
    for way, measured in times.items():
        print(f"| {way} | {1000 * min(measured):.2f} | {1000 * statistics.median(measured):.2f} |")


if __name__ == "__main__":
    main()
