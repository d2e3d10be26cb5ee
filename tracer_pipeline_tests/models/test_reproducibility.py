"""The same config gives the same bytes in another process, whatever its CPU thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tracer_pipeline.models.pool import ModelPool

# A few outputs of every tiny model. Among these prompts, tiny SDXL's and FLUX's images differ
# between 1 and 2 torch threads (measured), so the comparison fails if threads are not pinned.
SCRIPT = """
import hashlib, json, sys
from tracer_pipeline.settings import Settings
from tracer_pipeline.models.base import output_digest
from tracer_pipeline.models.pool import ModelPool, resolve_load_options

def trace(pool):
    prompts = [f"prompt number {i} of a red cat" for i in range(8)]
    seeds = list(range(8))
    result = {}
    for t2i in ("TinySD", "TinySDXL", "TinyFlux"):
        images = pool.get(t2i).generate(prompts, seeds)
        result[t2i] = [output_digest(x) for x in images]
    for i2t in ("TinyBLIP", "TinyFlorence2"):
        result[i2t] = pool.get(i2t).generate(images[:4], seeds[:4])
    vectors = pool.get("TinyCLIP").embed([*prompts[:2], *images[:2]])
    result["TinyCLIP"] = hashlib.sha256(b"".join(v.tobytes() for v in vectors)).hexdigest()
    return result

if __name__ == "__main__":
    settings = Settings.resolve()
    options = resolve_load_options("cpu", "auto", settings.model_dir, torch_threads=settings.torch_threads)
    print(json.dumps(trace(ModelPool(options))))
"""


def test_another_process_with_another_thread_count_stores_the_same_bytes(
        pool: ModelPool) -> None:
    namespace: dict = {}
    exec(SCRIPT, namespace)
    here = namespace["trace"](pool)  # this process: torch pinned to 1 thread by the pool
    assert len(set(here["TinyFlux"])) == 8 and all(here["TinyBLIP"])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env.pop("TRACER_TORCH_THREADS", None)  # the default, 1, is what is under test
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, text=True, capture_output=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == here
