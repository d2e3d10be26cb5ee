import dagster as dg

from tracer_pipeline.defs.assets.embeddings import embeddings
from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.metadata import combined_version, partition_checks, record_partitions, table
from tracer_pipeline.defs.partitions import run_ids_of
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.tracing.checks import diagram_problems
from tracer_pipeline.tracing.diagrams import compute_diagrams

VALID_CHECK = "diagrams_valid"


@per_run_asset(deps=[embeddings], checks=[(VALID_CHECK, diagram_problems)])
def persistence_diagrams(context: dg.AssetExecutionContext, store: TraceStoreResource):
    """Vietoris–Rips persistence diagrams (H0 and H1 by default) of each run's trajectory per
    embedding model: the whole trajectory and, where both modalities exist, its text-only and
    image-only parts, with persistent entropy and summary statistics. The infinite H0 bar is
    kept (death = inf) and excluded from the statistics."""
    trace = store.get_store()
    run_ids = run_ids_of(context.partition_keys)
    outcomes = compute_diagrams(trace, run_ids)
    stored = trace.diagrams(run_ids)
    own: dict[str, list[dict]] = {k: [] for k in run_ids}
    for d in stored:
        own[d.run_id].append({
            "embedding_model": d.embedding_model, "subset": d.subset, "points": d.n_points,
            **{f"H{dim}_bars": len(d.points[dim]) for dim in sorted(d.points)},
            **{f"H{dim}_entropy": round(float(d.summary[f"H{dim}"]["entropy"]), 4) for dim in sorted(d.points)},
        })
    record_partitions(context, {o.run_id: {
        "run_id": o.run_id, "computed": len(o.computed), "skipped_already_stored": len(o.skipped),
        "seconds": round(o.seconds, 3), "diagrams": table(own[o.run_id]),
    } for o in outcomes.values()})
    yield dg.MaterializeResult(data_version=combined_version(trace.content_hashes(run_ids, "diagrams")))
    yield from partition_checks(context, VALID_CHECK, diagram_problems(run_ids, stored))
