import dagster as dg

from tracer_pipeline.defs.assets.embeddings import embeddings
from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.metadata import combined_version, problem_list, table
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.tracing.checks import diagram_problems
from tracer_pipeline.tracing.diagrams import compute_diagrams

VALID_CHECK = "diagrams_valid"


@per_run_asset(deps=[embeddings], check=(VALID_CHECK, diagram_problems))
def persistence_diagrams(context: dg.AssetExecutionContext, store: TraceStoreResource):
    """Vietoris–Rips persistence diagrams (H0 and H1 by default) of each run's trajectory per
    embedding model: the whole trajectory and, where both modalities exist, its text-only and
    image-only parts, with persistent entropy and summary statistics. The infinite H0 bar is
    kept (death = inf) and excluded from the statistics."""
    trace = store.get_store()
    keys = list(context.partition_keys)
    outcomes = compute_diagrams(trace, keys)
    rows = [{"run_id": o.run_id, "computed": len(o.computed), "already_stored": len(o.skipped),
             "seconds": round(o.seconds, 3)} for o in outcomes.values()]
    stored = trace.diagrams(keys)
    summary_rows = [{
        "run_id": d.run_id, "embedding_model": d.embedding_model, "subset": d.subset, "points": d.n_points,
        **{f"H{dim}_bars": len(d.points.get(dim, [])) for dim in sorted(d.points)},
        **{f"H{dim}_entropy": round(float(d.summary[f"H{dim}"]["entropy"]), 4) for dim in sorted(d.points)},
    } for d in stored[:30]]
    yield dg.MaterializeResult(
        metadata={
            "runs": table(rows),
            "computed": sum(len(o.computed) for o in outcomes.values()),
            "skipped_already_stored": sum(len(o.skipped) for o in outcomes.values()),
            "seconds": round(sum(o.seconds for o in outcomes.values()), 3),
            "diagrams": table(summary_rows),
        },
        data_version=combined_version([trace.content_hash(k, "diagrams") for k in keys]),
    )
    problems = diagram_problems(stored)
    yield dg.AssetCheckResult(
        check_name=VALID_CHECK, passed=not problems,
        metadata={"problems": problem_list(problems)},
    )
