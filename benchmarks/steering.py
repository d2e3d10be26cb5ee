"""Steering: does the output move toward its target, and does the learned reward beat random
search with the same number of preference queries?

    python benchmarks/steering.py                       # experiments/steering-scenes.json
    python benchmarks/steering.py --config FILE --out results.json

Runs the experiment twice, each time into a fresh store (the same engine, embedding step and
SceneCLIP embeddings the pipeline uses; no Dagster), and checks that both stores hold the same
bytes (every output's sha256, every round's figures and preferences). Per run: the cosine of
each round's output to the run's reference embedding (its target caption, sequence −1) by
SceneCLIP, and the gain from the first round to the last.

Random search of the same query budget (rounds × pairs preference queries, answered by the same
artificial user): the first query compares two standard-normal actions, every later one the
incumbent (the last winner) with a fresh action; the incumbent after a round's queries is that
round's output. Its similarity is measured by SceneCLIP against the same reference.

One torch thread, as everywhere in this project: results are bit-identical only at a fixed
thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracer_pipeline.config import load_experiment  # noqa: E402
from tracer_pipeline.models.base import LoadOptions  # noqa: E402
from tracer_pipeline.models.pool import ModelPool  # noqa: E402
from tracer_pipeline.selfconsuming.training import derived_seed  # noqa: E402
from tracer_pipeline.steering.feedback import Choice, embed_one_each  # noqa: E402
from tracer_pipeline.steering.loop import draw_actions  # noqa: E402
from tracer_pipeline.store import TraceStore  # noqa: E402
from tracer_pipeline.tracing.embeddings import embed_runs  # noqa: E402
from tracer_pipeline.tracing.engines import run_engines  # noqa: E402
from tracer_pipeline.tracing.steering import artificial_user  # noqa: E402

EMBEDDER = "SceneCLIP"


def traced(config: Path, folder: Path, pool: ModelPool) -> tuple[TraceStore, list[str], float]:
    store = TraceStore(f"sqlite:///{folder / 'trace.sqlite'}")
    run_ids = store.register_experiment(load_experiment(config))
    start = time.perf_counter()
    run_engines(store, pool, run_ids)
    embed_runs(store, pool, run_ids)
    return store, run_ids, time.perf_counter() - start


def fingerprint(store: TraceStore, run_ids: list[str]) -> list:
    return [([i.output_sha256 for i in store.invocations(r)], store.steering_figures([r]), store.preferences([r]))
            for r in run_ids]


def similarities(store: TraceStore, run_id: str) -> np.ndarray:
    _, vector = store.reference_embedding(run_id, EMBEDDER)
    return store.trajectory(run_id, EMBEDDER)[2].astype(np.float64) @ vector.astype(np.float64)


def random_search(pool: ModelPool, store: TraceStore, run_id: str) -> np.ndarray:
    """Similarity to the reference of the incumbent after each round's queries."""
    run = store.get_run(run_id)
    options = run.spec["options"]
    generator, user = pool.get(run.network[0]), artificial_user(pool, run)
    embedder = pool.get(EMBEDDER)
    _, reference = store.reference_embedding(run_id, EMBEDDER)
    incumbent, picture, result = None, None, []
    for r in range(run.max_length):
        fresh = draw_actions(generator, 2 * int(options["pairs"]), run.seed, r, "random-search")
        for q in range(int(options["pairs"])):
            if incumbent is None:
                incumbent, challenger = fresh[0], fresh[1]
            else:
                challenger = fresh[q]
            a, b = generator.decode(np.stack([incumbent, challenger]))
            [answer] = user.judge([(a, b)], derived_seed(run.seed, r * 1000 + q, "random-search-feedback"))
            incumbent, picture = (challenger, b) if answer.choice is Choice.SECOND else (incumbent, a)
        result.append(float(embed_one_each(embedder, [picture])[0] @ reference))
    return np.array(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "steering-scenes.json")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pool = ModelPool(LoadOptions(torch_threads=1))
    with tempfile.TemporaryDirectory(prefix="steering-") as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        store, run_ids, seconds = traced(args.config, Path(tmp) / "a", pool)
        other, _, seconds_again = traced(args.config, Path(tmp) / "b", pool)
        identical = fingerprint(store, run_ids) == fingerprint(other, run_ids)
        rows = []
        for run_id in run_ids:
            run = store.get_run(run_id)
            learned, random = similarities(store, run_id), random_search(pool, store, run_id)
            rows.append({"run_id": run_id, "target": run.prompt, "seed": run.seed,
                         "queries": len(store.preferences([run_id])),
                         "learned_first": learned[0], "learned_last": learned[-1],
                         "learned_gain": learned[-1] - learned[0],
                         "learned_best": learned.max(), "random_first": random[0], "random_last": random[-1],
                         "random_gain": random[-1] - random[0],
                         "heldout_accuracy": float(np.nanmean([np.nan if f["heldout_accuracy"] is None
                                                               else f["heldout_accuracy"]
                                                               for f in store.steering_figures([run_id])[1:]]))})
    gains = np.array([r["learned_gain"] for r in rows])
    summary = {
        "runs": len(rows), "identical_in_two_fresh_stores": identical,
        "seconds_per_trace": [round(seconds, 1), round(seconds_again, 1)],
        "moved_toward_target": int((gains > 0).sum()), "share_moved": float((gains > 0).mean()),
        "mean_gain": float(gains.mean()),
        "learned_mean_last": float(np.mean([r["learned_last"] for r in rows])),
        "random_mean_last": float(np.mean([r["random_last"] for r in rows])),
        "random_mean_gain": float(np.mean([r["random_gain"] for r in rows])),
        "learned_beats_random": int(sum(r["learned_last"] > r["random_last"] for r in rows)),
        "mean_heldout_accuracy": float(np.mean([r["heldout_accuracy"] for r in rows])),
    }
    print(f"{'target':36} seed  learned first→last (gain)   random first→last (gain)  held-out acc")
    for r in rows:
        print(f"{r['target']:36} {r['seed']:>4}  {r['learned_first']:.3f}→{r['learned_last']:.3f} "
              f"({r['learned_gain']:+.3f})        {r['random_first']:.3f}→{r['random_last']:.3f} "
              f"({r['random_gain']:+.3f})      {r['heldout_accuracy']:.2f}")
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
