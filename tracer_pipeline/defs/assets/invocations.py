import time

import dagster as dg

from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.assets.runs import runs
from tracer_pipeline.defs.metadata import (
    PREVIEW_INVOCATIONS,
    combined_version,
    partition_checks,
    record_partitions,
    run_header,
    table,
    trajectory_preview,
)
from tracer_pipeline.defs.partitions import run_ids_of
from tracer_pipeline.defs.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.status import RunStatus
from tracer_pipeline.tracing.checks import invocation_problems, stuck_problems
from tracer_pipeline.tracing.engines import run_engines

COMPLETE_CHECK = "every_invocation_present_in_order"
NOT_STUCK_CHECK = "not_stuck"
PROGRESS_LOG_EVERY = 1000


@per_run_asset(deps=[runs], runs_models=True,
               checks=[(COMPLETE_CHECK, invocation_problems), (NOT_STUCK_CHECK, stuck_problems)])
def invocations(
    context: dg.AssetExecutionContext, store: TraceStoreResource, models: ModelPoolResource
):
    """Invoke each run's network from its prompt (or image) and seed, up to the largest
    max_length any experiment asks for, storing every invocation as it completes. Resumes from
    the stored prefix; stops early at an exact fixed point or cycle unless asked to continue.
    Several runs in one Dagster run advance in lockstep, one batched model call per step.
    Self-consuming runs store one invocation per generation (tracing/engines.py dispatches by
    kind)."""
    trace = store.get_store()
    run_ids = run_ids_of(context.partition_keys)
    started = time.perf_counter()
    done = [0]

    def progress(inv) -> None:
        done[0] += 1
        if done[0] % PROGRESS_LOG_EVERY == 0:
            context.log.info(f"{done[0]} invocations computed")

    outcomes = run_engines(trace, models.get_pool(), run_ids, on_invocation=progress)
    context.log.info(f"{sum(o.computed for o in outcomes.values())} invocations computed "
                     f"in {time.perf_counter() - started:.1f} s")
    failed = [o for o in outcomes.values() if o.status == RunStatus.FAILED]
    for outcome in failed[:20]:
        context.log.error(f"run {outcome.run_id} failed: {outcome.error}")
    if len(failed) == len(outcomes):
        raise dg.Failure(
            description="every run in this step failed; what was computed is stored",
            metadata={"runs": table([{"run_id": o.run_id, "error": o.error or ""} for o in failed[:50]])},
        )
    metadata = {}
    counts = trace.counts(run_ids)
    first = trace.invocations_of(run_ids, limit=PREVIEW_INVOCATIONS + 1)
    for run in trace.get_runs(run_ids):
        outcome = outcomes[run.run_id]
        shown = first[run.run_id]
        metadata[run.run_id] = {
            **run_header(run), "invocations": counts[run.run_id]["invocations"], "max_length": run.max_length,
            "computed": outcome.computed, "skipped_already_stored": outcome.stored_before,
            "stale_recomputed": outcome.recomputed_stale,
            "preview": dg.MetadataValue.md(trajectory_preview(
                run.prompt or "(initial image)", shown, counts[run.run_id]["invocations"])),
        }
    record_partitions(context, metadata)
    yield dg.MaterializeResult(data_version=combined_version(trace.content_hashes(run_ids, "invocations")))
    yield from partition_checks(context, COMPLETE_CHECK, invocation_problems(trace, run_ids))
    yield from partition_checks(context, NOT_STUCK_CHECK, stuck_problems(trace, run_ids),
                                severity=dg.AssetCheckSeverity.WARN)
