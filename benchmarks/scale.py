"""Research-sized grids through the CLI, measured side by side in one run.

    python benchmarks/scale.py                    # 10, 100, 1,000 runs × 20 (dummy), 20 × 1,000, SceneWorld 10 × 50
    python benchmarks/scale.py --runs 10 100 1000 10000
    python benchmarks/scale.py --only sceneworld
    python benchmarks/scale.py --only long --more-seeds
    python benchmarks/scale.py --only sceneworld --sceneworld-lengths 50 200 800

Each case is a fresh data directory and a fresh `trajectory-tracer run-experiment` process
(start-up, Dagster bookkeeping and the report included), then the same command again (everything
stored). Reported: wall time, CPU time (user + system of the process and its children), peak
resident memory, Dagster event-log bytes per run partition, and `list-runs` on the final store.
SceneWorld 10 × 50 (10 × each of ``--sceneworld-lengths``) is compared with a plain loop over the
same model objects in a fresh process (models, embeddings and persistence diagrams, nothing
stored), run just before and just after the pipeline (the ratio is against the mean of the two),
whose outputs are checked equal.
The machine is shared: compare the ratios, measured minutes apart, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SCENEWORLD = {"networks": [["SceneT2I", "SceneI2TSampled"]], "embedding_models": ["SceneCLIP"],
              "prompts": ["a large red circle on the left and a small blue square at the top",
                          "a small purple star in the centre and a large green triangle on the right"]}


@dataclass
class Measure:
    wall_s: float
    cpu_s: float
    peak_mib: float


def measured(args: list[str], env: dict[str, str]) -> tuple[Measure, str]:
    """Run a command to its end; its wall and CPU time and peak memory (children included)."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{output}")
    return Measure(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024), output


def event_log_bytes(data: Path) -> int:
    history = data / "dagster_home" / "history" / "runs"
    return sum(f.stat().st_size for f in history.glob("*.db*"))


def dummy_config(name: str, runs: int, length: int) -> dict:
    prompts = ["a red balloon", "a quiet harbour"]
    return {"name": name, "networks": [["DummyT2I", "DummyI2T"]], "prompts": prompts,
            "seeds": list(range(runs // len(prompts))), "embedding_models": ["DummyEmbed"],
            "max_length": length, "stop_when_stuck": False}


def run_case(root: Path, config: dict, more_seeds: bool = False) -> dict:
    data = root / config["name"]
    path = root / f"{config['name']}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "TRACER_DATA_DIR": str(data)}
    env.pop("DAGSTER_HOME", None)
    cli = [sys.executable, "-m", "tracer_pipeline.cli"]
    first, _ = measured([*cli, "run-experiment", str(path)], env)
    events = event_log_bytes(data)
    again, output = measured([*cli, "run-experiment", str(path)], env)
    listing, _ = measured([*cli, "list-runs"], env)
    runs = len(config["seeds"]) * len(config["prompts"]) * len(config["networks"])
    result = {"case": config["name"], "runs": runs, "first": first, "again": again, "list_runs": listing,
              "event_bytes_per_partition": events / runs, "summary": output.strip().splitlines()[-2]}
    if more_seeds:  # a backfill: one new seed in the config, its runs computed and the report redone
        path.write_text(json.dumps({**config, "seeds": [*config["seeds"], max(config["seeds"]) + 1]}))
        result["one_more_seed"], _ = measured([*cli, "run-experiment", str(path)], env)
    return result


PLAIN_LOOP = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from tracer_pipeline.models.base import output_digest
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.tda.persistence import persistence_diagram
config = json.loads(sys.argv[1])
pool = ModelPool(resolve_load_options("cpu", "auto", sys.argv[2]))
network = [pool.get(m) for m in config["networks"][0]]
phases = {"start and load the network's models": time.perf_counter() - started}
mark = time.perf_counter()
embedder = pool.get(config["embedding_models"][0])
phases["load the embedding model"] = time.perf_counter() - mark
phases.update({"generate": 0.0, "embed": 0.0, "diagrams": 0.0})
digests = {}
for prompt in config["prompts"]:
    for seed in config["seeds"]:
        value, outputs = prompt, []
        mark = time.perf_counter()
        for i in range(config["max_length"]):
            [value] = network[i % len(network)].generate([value], [seed])
            outputs.append(value)
        phases["generate"] += time.perf_counter() - mark
        mark = time.perf_counter()
        vectors = np.stack(embedder.embed(outputs))
        phases["embed"] += time.perf_counter() - mark
        mark = time.perf_counter()
        persistence_diagram(vectors, max_dim=1)
        phases["diagrams"] += time.perf_counter() - mark
        digests[f"{prompt}|{seed}"] = [output_digest(o) for o in outputs]
print(json.dumps(phases))
print(json.dumps(digests))
"""


def sceneworld_against_plain_loop(root: Path, runs: int, length: int) -> dict:
    """The pipeline between two plain loops (before and after), so that neither side alone pays
    the cold start of the file cache (torch, diffusers and open_clip are read from disk by the
    first process that imports them); the ratio is against their mean."""
    config = {"name": f"sceneworld{length}", **SCENEWORLD, "seeds": list(range(runs // len(SCENEWORLD["prompts"]))),
              "max_length": length, "stop_when_stuck": False}
    loop = [sys.executable, "-c", PLAIN_LOOP, json.dumps(config), str(root / "plain-models")]
    before, _ = measured(loop, {**os.environ})
    pipeline = run_case(root, config)
    after, output = measured(loop, {**os.environ})
    plain = Measure(*((getattr(before, f) + getattr(after, f)) / 2 for f in ("wall_s", "cpu_s", "peak_mib")))
    loop_phases, loop_digests = (json.loads(line) for line in output.strip().splitlines()[-2:])
    from tracer_pipeline.store import TraceStore

    store = TraceStore(f"sqlite:///{root / config['name'] / 'tracer.sqlite'}")
    stored = {f"{r.prompt}|{r.seed}": [i.output_sha256 for i in store.invocations(r.run_id)] for r in store.get_runs()}
    return {**pipeline, "plain": plain, "plain_before_after": (before.wall_s, after.wall_s),
            "same_outputs": stored == loop_digests, "plain_phases": loop_phases,
            "pipeline_jobs": dagster_steps(root / config["name"])}


def dagster_steps(data: Path) -> list[tuple[str, float, dict[str, float]]]:
    """The first run-experiment's Dagster runs, in order, from its event log: (job, seconds from
    its first event to its last, {step: seconds from its start to its success})."""
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = [(run, instance.all_logs(run.run_id)) for run in instance.get_runs()]
        jobs = []
        for run, events in sorted(runs, key=lambda pair: pair[1][0].timestamp):
            starts, steps = {}, {}
            for event in events:
                kind = event.dagster_event.event_type_value if event.dagster_event else None
                if kind == "STEP_START":
                    starts[event.step_key] = event.timestamp
                elif kind == "STEP_SUCCESS":
                    steps[event.step_key] = event.timestamp - starts[event.step_key]
            jobs.append((run.job_name, events[-1].timestamp - events[0].timestamp, steps))
    os.environ.pop("DAGSTER_HOME")
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--only", choices=["grid", "long", "sceneworld"], nargs="+",
                        default=["grid", "long", "sceneworld"])
    parser.add_argument("--more-seeds", action="store_true",
                        help="20 × 1,000: then one more seed in its config (a backfill), timed")
    parser.add_argument("--sceneworld-lengths", type=int, nargs="+", default=[50],
                        help="invocations per SceneWorld run, one case of 10 runs each")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tracer-scale-"))
    print(f"load average before: {os.getloadavg()[0]:.1f}; data in {root}\n")
    rows = []
    if "grid" in args.only:
        rows += [run_case(root, dummy_config(f"grid{n}", n, 20)) for n in args.runs]
    if "long" in args.only:
        rows.append(run_case(root, dummy_config("long20", 20, 1000), more_seeds=args.more_seeds))
    print("| case | runs × invocations | first: wall / CPU s | peak MiB | per run (CPU ms) "
          "| again (all stored): wall s | again / first | event log bytes per partition | list-runs wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        length = 1000 if r["case"] == "long20" else 20
        print(f"| {r['case']} | {r['runs']} × {length} | {r['first'].wall_s:.1f} / {r['first'].cpu_s:.1f} "
              f"| {r['first'].peak_mib:.0f} | {1000 * r['first'].cpu_s / r['runs']:.0f} | {r['again'].wall_s:.1f} "
              f"| {r['again'].wall_s / r['first'].wall_s:.2f} | {r['event_bytes_per_partition']:.0f} "
              f"| {r['list_runs'].wall_s:.2f} |")
        if "one_more_seed" in r:
            print(f"\n{r['case']}, one more seed (its runs computed, the report redone): "
                  f"{r['one_more_seed'].wall_s:.1f} s wall / {r['one_more_seed'].cpu_s:.1f} s CPU")
    if "sceneworld" in args.only:
        for length in args.sceneworld_lengths:
            s = sceneworld_against_plain_loop(root, 10, length)
            first, plain = s["first"], s["plain"]
            print(f"\nSceneWorld 10 × {length} (SceneT2I → SceneI2TSampled, SceneCLIP): run-experiment "
                  f"{first.wall_s:.1f} s wall / {first.cpu_s:.1f} s CPU; plain loop {plain.wall_s:.1f} s "
                  f"wall (before {s['plain_before_after'][0]:.1f}, after {s['plain_before_after'][1]:.1f}) "
                  f"/ {plain.cpu_s:.1f} s CPU; ratio {first.wall_s / plain.wall_s:.2f} (wall), "
                  f"{first.cpu_s / plain.cpu_s:.2f} (CPU); difference {first.wall_s - plain.wall_s:.1f} s "
                  f"(wall); same outputs: {s['same_outputs']}; again (all stored) {s['again'].wall_s:.1f} s")
            first_jobs = s["pipeline_jobs"][:2]  # the first run-experiment's trace and report jobs
            outside = first.wall_s - sum(span for _, span, _ in first_jobs)
            print("  plain loop (after), s: " + ", ".join(f"{k} {v:.2f}" for k, v in s["plain_phases"].items()))
            print("  run-experiment, s: " + "; ".join(
                f"{job} job {span:.2f} (" + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()) + ")"
                for job, span, steps in first_jobs) + f"; outside Dagster's jobs {outside:.2f}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
