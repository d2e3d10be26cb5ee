import dagster as dg

from tracer_pipeline.defs.assets.invocations import invocations
from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.metadata import combined_version, partition_checks, record_partitions
from tracer_pipeline.defs.partitions import run_ids_of
from tracer_pipeline.defs.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.tracing.checks import embedding_problems
from tracer_pipeline.tracing.embeddings import embed_runs

VALID_CHECK = "embeddings_finite_unit_norm_right_dimension"


@per_run_asset(deps=[invocations], runs_models=True, checks=[(VALID_CHECK, embedding_problems)])
def embeddings(context: dg.AssetExecutionContext, store: TraceStoreResource, models: ModelPoolResource):
    """Every stored output embedded by every embedding model the run's experiments ask for
    (text by text-capable models, images by image-capable ones). Skips what is stored; replaces
    embeddings made by an older model version."""
    trace = store.get_store()
    run_ids = run_ids_of(context.partition_keys)
    outcomes = embed_runs(trace, models.get_pool(), run_ids)
    for o in outcomes.values():
        for failure in o.failures[:5]:
            context.log.error(f"run {o.run_id}: {failure}")
    record_partitions(context, {o.run_id: {
        "run_id": o.run_id, "computed": o.computed, "skipped_already_stored": o.skipped,
        "stale_replaced": o.stale_replaced, "failures": len(o.failures),
    } for o in outcomes.values()})
    yield dg.MaterializeResult(data_version=combined_version(trace.content_hashes(run_ids, "embeddings")))
    problems = embedding_problems(trace, run_ids)
    for o in outcomes.values():
        problems[o.run_id] = [*o.failures, *problems.get(o.run_id, [])]
    yield from partition_checks(context, VALID_CHECK, problems)
