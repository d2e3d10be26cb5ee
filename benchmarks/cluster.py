"""Runs per minute in-process and on Celery workers, and what a step costs on a worker.

    python benchmarks/cluster.py                      # 8 dummy runs of 20 invocations
    python benchmarks/cluster.py --seeds 8 --max-length 40

Starts PostgreSQL and Redis on loopback (as the tests do), then runs the same experiment on a
fresh store each time, through the CLI, and times the whole command:

1. in-process on SQLite (the laptop default);
2. in-process on PostgreSQL (both stores);
3. `run-experiment --launch` with 1 and with 2 Celery workers (one Dagster run per worker).

From the Dagster event log of the `trace` runs: the mean time a step runs (STEP_START to
STEP_SUCCESS), the mean gap before it starts (after the previous step or the run's start: sending
it to a worker and the worker picking it up), and how long launched runs waited in the queue. The
overhead per step is a launched step's (step + gap) minus its share of the in-process PostgreSQL
(step + gap): with K Dagster runs each step does 1/K of the work. Dummy models keep the work
itself small, so what is measured is mostly the machinery.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from tracer_pipeline_tests.servers import start_postgres, start_redis, start_service, stop_service  # noqa: E402


def run_cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tracer_pipeline.cli", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def step_timings(env: dict[str, str]) -> dict[str, float]:
    """Mean step time, mean gap before a step, mean queue wait, over the instance's trace runs."""
    os.environ["TRACER_DAGSTER_STORAGE_URL"] = env.get("TRACER_DAGSTER_STORAGE_URL", "")  # dagster.yaml reads it
    home = env.get("DAGSTER_HOME") or str(Path(env["TRACER_DATA_DIR"]) / "dagster_home")
    steps, gaps, waits = [], [], []
    with dg.DagsterInstance.from_config(home) as instance:
        for record in instance.get_run_records(dg.RunsFilter(job_name="trace")):
            run = record.dagster_run
            waits.append(record.start_time - record.create_timestamp.timestamp())
            previous = record.start_time
            events = instance.all_logs(run.run_id, of_type={dg.DagsterEventType.STEP_START,
                                                            dg.DagsterEventType.STEP_SUCCESS})
            started: dict[str, float] = {}
            for entry in sorted(events, key=lambda e: e.timestamp):
                if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                    gaps.append(entry.timestamp - previous)
                else:
                    steps.append(entry.timestamp - started[entry.step_key])
                    previous = entry.timestamp
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"dagster_runs": len(waits), "steps": len(steps), "step": mean(steps), "gap": mean(gaps),
            "wait": mean(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="seeds per network (2 networks)")
    parser.add_argument("--max-length", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tracer-cluster-bench-"))
    config = work / "bench.json"
    config.write_text(json.dumps({
        "name": "bench", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I2", "DummyI2T"]],
        "seeds": list(range(args.seeds)), "prompts": ["a red balloon over the sea"],
        "embedding_models": ["DummyEmbed"], "max_length": args.max_length,
    }))
    runs = 2 * args.seeds
    postgres, redis = start_postgres(), start_redis()
    if isinstance(postgres, str) or isinstance(redis, str):
        sys.exit(f"cannot start the servers: {postgres if isinstance(postgres, str) else redis}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "DAGSTER_"))}
    base |= {"PYTHONPATH": str(ROOT), "TRACER_DEVICE": "cpu"}

    def fresh(name: str, on_postgres: bool) -> dict[str, str]:
        data = work / name
        env = {**base, "TRACER_DATA_DIR": str(data), "TRACER_EXPERIMENTS_DIR": str(work)}
        if on_postgres:
            home = data / "dagster_home"
            home.mkdir(parents=True)
            shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
            env |= {"DAGSTER_HOME": str(home), "TRACER_DB_URL": postgres.url(postgres.create_database(name)),
                    "TRACER_DAGSTER_STORAGE_URL": postgres.url(postgres.create_database(f"{name}_dagster"),
                                                               driver="psycopg2")}
        return env

    results: list[tuple[str, float, dict[str, float]]] = []
    try:
        for how, env in (("in-process, SQLite", fresh("sqlite", False)), ("in-process, PostgreSQL", fresh("pg", True))):
            results.append((how, run_cli(env, "run-experiment", str(config)), step_timings(env)))
        for workers in (1, 2):
            env = fresh(f"celery{workers}", True) | {
                "TRACER_EXECUTOR": "celery", "TRACER_CELERY_BROKER": redis.url(workers),
                "TRACER_GPU_POOL_SIZE": str(workers)}
            services = [start_service([sys.executable, "-m", "tracer_pipeline.cli", "worker", "--name", f"w{i}"],
                                      ROOT, env, work / f"w{workers}{i}.log") for i in range(workers)]
            daemon = start_service([sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                                   ROOT, env, work / f"daemon{workers}.log")
            time.sleep(15)  # let the workers and the daemon's code server start: not the experiment's time
            try:
                seconds = run_cli(env, "run-experiment", "--launch", str(config))
            finally:
                stop_service(daemon, signal.SIGINT)
                for worker in services:
                    stop_service(worker, signal.SIGTERM)
            how = f"--launch, {workers} Celery worker{'s' if workers > 1 else ''}"
            results.append((how, seconds, step_timings(env)))
    finally:
        postgres.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)

    base_step = results[1][2]["step"] + results[1][2]["gap"]
    print(f"{runs} runs × {args.max_length} invocations, dummy models\n")
    print("| how | wall time | runs/minute | Dagster runs (steps) | step | gap before a step | queue wait "
          "| overhead per step |")
    print("|---|---|---|---|---|---|---|---|")
    for how, seconds, t in results:
        launched = how.startswith("--launch")
        wait = f"{t['wait']:.1f} s" if launched else ""
        overhead = f"{t['step'] + t['gap'] - base_step / t['dagster_runs']:+.2f} s" if launched else ""
        print(f"| {how} | {seconds:.1f} s | {runs / seconds * 60:.1f} | {t['dagster_runs']} ({t['steps']}) "
              f"| {t['step']:.2f} s | {t['gap']:.2f} s | {wait} | {overhead} |")


if __name__ == "__main__":
    main()
