"""Runs per minute in-process and on Celery workers, and what a step costs on a worker.

    python benchmarks/cluster.py                      # 8 dummy runs of 20 invocations
    python benchmarks/cluster.py --seeds 8 --max-length 40

Starts PostgreSQL and Redis on loopback (as the tests do), then runs the same experiment on a
fresh store each time, through the CLI, and times the whole command:

1. in-process on SQLite (the laptop default);
2. in-process on PostgreSQL (both stores);
3. `run-experiment --launch` with 1 and with 2 Celery workers (one Dagster run per worker).

The overhead per step is the launched time minus the in-process PostgreSQL time, divided by the
Dagster steps the launched runs executed (four per Dagster run). Dummy models make the work itself
negligible, so what is measured is the machinery.
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

from tracer_pipeline_tests.servers import start_postgres, start_redis  # noqa: E402

STEPS_PER_DAGSTER_RUN = 4  # runs, invocations, embeddings, persistence_diagrams


def run_cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tracer_pipeline.cli", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def stop(process: subprocess.Popen, sig: int) -> None:
    os.kill(process.pid, sig)
    process.wait(timeout=120)


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

    results: list[tuple[str, float, int]] = []
    try:
        results.append(("in-process, SQLite", run_cli(fresh("sqlite", False), "run-experiment", str(config)), 0))
        results.append(("in-process, PostgreSQL", run_cli(fresh("pg", True), "run-experiment", str(config)), 0))
        for workers in (1, 2):
            env = fresh(f"celery{workers}", True) | {
                "TRACER_EXECUTOR": "celery", "TRACER_CELERY_BROKER": redis.url(workers),
                "TRACER_GPU_POOL_SIZE": str(workers)}
            services = [subprocess.Popen([sys.executable, "-m", "tracer_pipeline.cli", "worker", "--name", f"w{i}"],
                                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for i in range(workers)]
            daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run",
                                       "-w", str(ROOT / "workspace.yaml")],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(15)  # let the workers and the daemon's code server start: not the experiment's time
            try:
                seconds = run_cli(env, "run-experiment", "--launch", str(config))
            finally:
                stop(daemon, signal.SIGINT)
                for worker in services:
                    stop(worker, signal.SIGTERM)
            results.append((f"--launch, {workers} Celery worker{'s' if workers > 1 else ''}", seconds, workers))
    finally:
        postgres.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)

    in_process_pg = results[1][1]
    print(f"{runs} runs × {args.max_length} invocations, dummy models\n")
    print("| how | wall time | runs/minute | overhead per step vs in-process PostgreSQL |")
    print("|---|---|---|---|")
    for how, seconds, dagster_runs in results:
        overhead = (f"{(seconds - in_process_pg) / (dagster_runs * STEPS_PER_DAGSTER_RUN):.1f} s "
                    f"({dagster_runs * STEPS_PER_DAGSTER_RUN} steps)" if dagster_runs else "")
        print(f"| {how} | {seconds:.1f} s | {runs / seconds * 60:.1f} | {overhead} |")


if __name__ == "__main__":
    main()
