import time

import dagster as dg

from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.assets.runs import runs
from tracer_pipeline.defs.metadata import combined_version, problem_list, table, trajectory_preview
from tracer_pipeline.defs.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.status import RunStatus
from tracer_pipeline.tracing.checks import invocation_problems
from tracer_pipeline.tracing.engines import run_engines

COMPLETE_CHECK = "every_invocation_present_in_order"


@per_run_asset(deps=[runs], runs_models=True, check=(COMPLETE_CHECK, invocation_problems))
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
    keys = list(context.partition_keys)
    started = time.perf_counter()
    done = [0]

    def progress(inv) -> None:
        done[0] += 1
        if done[0] % 25 == 0:
            context.log.info(f"{done[0]} invocations computed")

    outcomes = run_engines(trace, models.get_pool(), keys, on_invocation=progress)
    seconds = time.perf_counter() - started
    for outcome in outcomes.values():
        if outcome.error:
            context.log.error(f"run {outcome.run_id} failed: {outcome.error}")
    rows = [{"run_id": o.run_id, "computed": o.computed, "already_stored": o.stored_before,
             "stale_recomputed": o.recomputed_stale, "status": o.status, "stop_reason": o.stop_reason or "",
             "error": o.error or ""} for o in outcomes.values()]
    if all(o.status == RunStatus.FAILED for o in outcomes.values()):
        raise dg.Failure(
            description="every run in this step failed; what was computed is stored",
            metadata={"runs": table(rows)},
        )
    first = trace.get_run(keys[0])
    preview = trajectory_preview(first.run_id, first.prompt or "(initial image)", trace.invocations(first.run_id))
    yield dg.MaterializeResult(
        metadata={
            "runs": table(rows),
            "computed": sum(o.computed for o in outcomes.values()),
            "skipped_already_stored": sum(o.stored_before for o in outcomes.values()),
            "failed_runs": sum(o.status == RunStatus.FAILED for o in outcomes.values()),
            "stuck_runs": sum(o.status == RunStatus.STUCK for o in outcomes.values()),
            "seconds": round(seconds, 3),
            "preview": dg.MetadataValue.md(preview),
        },
        data_version=combined_version([trace.content_hash(k, "invocations") for k in keys]),
    )
    problems = invocation_problems(trace, keys)
    yield dg.AssetCheckResult(
        check_name=COMPLETE_CHECK, passed=not problems,
        metadata={"problems": problem_list(problems)},
    )

