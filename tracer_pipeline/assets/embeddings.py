import time

import dagster as dg
import numpy as np

from tracer_pipeline.assets.invocations import invocations
from tracer_pipeline.assets.metadata import combined_version, problem_list, table
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.partitions import runs_partitions
from tracer_pipeline.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.tracing.embeddings import embed_runs

VALID_CHECK = "embeddings_finite_unit_norm_right_dimension"


@dg.asset(
    partitions_def=runs_partitions,
    deps=[invocations],
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version="1",
    group_name="trace",
    pool="gpu",
    kinds={"pytorch", "sqlite"},
    check_specs=[dg.AssetCheckSpec(
        VALID_CHECK, asset="embeddings",
        description="Every stored output has an embedding from each embedding model that can embed it; "
                    "vectors are finite, of the model's dimension and of unit norm.")],
)
def embeddings(context: dg.AssetExecutionContext, store: TraceStoreResource, models: ModelPoolResource):
    """Every stored output embedded by every embedding model the run's experiments ask for
    (text by text-capable models, images by image-capable ones). Skips what is stored; replaces
    embeddings made by an older model version."""
    trace = store.get_store()
    keys = list(context.partition_keys)
    started = time.perf_counter()
    outcomes = embed_runs(trace, models.get_pool(), keys)
    seconds = time.perf_counter() - started
    rows = [{"run_id": o.run_id, "computed": o.computed, "already_stored": o.skipped,
             "stale_replaced": o.stale_replaced, "failures": len(o.failures)} for o in outcomes.values()]
    for o in outcomes.values():
        for failure in o.failures[:5]:
            context.log.error(f"run {o.run_id}: {failure}")
    yield dg.MaterializeResult(
        metadata={
            "runs": table(rows),
            "computed": sum(o.computed for o in outcomes.values()),
            "skipped_already_stored": sum(o.skipped for o in outcomes.values()),
            "failures": sum(len(o.failures) for o in outcomes.values()),
            "seconds": round(seconds, 3),
        },
        data_version=combined_version([trace.content_hash(k, "embeddings") for k in keys]),
    )
    problems = [f"{o.run_id}: {f}" for o in outcomes.values() for f in o.failures]
    for run in trace.get_runs(keys):
        for model in run.embedding_models:
            spec = get_model(model)
            seqs, types, vectors = trace.trajectory(run.run_id, model)
            expected = sum(1 for inv in trace.invocations(run.run_id) if inv.output_type in spec.embeds)
            if len(seqs) != expected:
                problems.append(f"{run.run_id}/{model}: {len(seqs)} of {expected} outputs embedded")
            if len(seqs) == 0:
                continue
            if not np.all(np.isfinite(vectors)):
                problems.append(f"{run.run_id}/{model}: non-finite values")
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                problems.append(f"{run.run_id}/{model}: norms from {norms.min():.4f} to {norms.max():.4f}")
    yield dg.AssetCheckResult(
        check_name=VALID_CHECK, passed=not problems,
        metadata={"problems": problem_list(problems)},
    )
