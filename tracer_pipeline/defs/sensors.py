"""The experiments sensor: configs in the experiments folder become run partitions.

For each valid config it records the experiment, adds the partitions of runs Dagster does not
know yet and requests only those (so adding seeds to a config backfills just the new runs).
Known runs whose target length grew get their whole chain requested (invocations resume from
what is stored); known runs with a new embedding model get embeddings and diagrams only.
An invalid config is reported in the tick's log and never stops the others.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tracer_pipeline.config import load_experiment
from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.assets.embeddings import embeddings
from tracer_pipeline.defs.jobs import report_job, trace_job
from tracer_pipeline.defs.partitions import range_tags, runs_partitions
from tracer_pipeline.defs.registration import contiguous_ranges, register_experiment
from tracer_pipeline.defs.resources import DataFoldersResource, TraceStoreResource
from tracer_pipeline.errors import ConfigError


def experiment_run_requests(
    context: dg.SensorEvaluationContext, store: TraceStoreResource, folder: Path
) -> tuple[list[dg.RunRequest], list[str]]:
    """Register every config in ``folder``; return the run requests and the problems found."""
    trace = store.get_store()
    requests: list[dg.RunRequest] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.json")):
        try:
            experiment = load_experiment(path)
            registration = register_experiment(trace, context.instance, experiment)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if not registration.changed:
            continue
        order = context.instance.get_dynamic_partitions(runs_partitions.name)
        stamp = f"{experiment.name}:{experiment.config_hash[:12]}"
        for first, last in contiguous_ranges(registration.new_partitions + registration.extended, order):
            requests.append(dg.RunRequest(run_key=f"{stamp}:trace:{first}:{last}", tags=range_tags(first, last)))
        for first, last in contiguous_ranges(registration.reembed, order):
            requests.append(dg.RunRequest(
                run_key=f"{stamp}:embed:{first}:{last}", tags=range_tags(first, last),
                asset_selection=[embeddings.key, persistence_diagrams.key]))
    return requests, problems


@dg.sensor(
    job=trace_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the experiments folder (TRACER_EXPERIMENTS_DIR, default ./experiments) and "
                "materializes only runs that are new or need more work.",
)
def experiments_sensor(
    context: dg.SensorEvaluationContext, store: TraceStoreResource, folders: DataFoldersResource
):
    folder = Path(folders.experiments_dir)
    if not folder.is_dir():
        return dg.SkipReason(f"experiments folder {folder} does not exist")
    requests, problems = experiment_run_requests(context, store, folder)
    for problem in problems:
        context.log.error(problem)
    if not requests:
        reason = "no new runs" + (f"; {len(problems)} invalid config(s), see the tick's log" if problems else "")
        return dg.SkipReason(reason)
    return dg.SensorResult(run_requests=requests)


@dg.sensor(
    job=report_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes the store-wide comparison and an experiment's report when what the "
                "report is computed from changed since its latest materialization (its runs' outputs "
                "and diagrams, its config, the analysis code); a report that is current is left alone.",
)
def reports_sensor(context: dg.SensorEvaluationContext, store: TraceStoreResource):
    from tracer_pipeline.defs.assets.analysis import ALL_MODELS, experiment_report, latest_inputs
    from tracer_pipeline.reporting.freshness import comparison_fingerprint, report_fingerprint

    trace = store.get_store()
    comparison = comparison_fingerprint(trace)
    requests = []
    for name in trace.experiment_names():
        if trace.diagrams_fingerprint(trace.experiment_run_ids(name)).startswith("0:"):
            continue  # nothing to report on yet
        fingerprint = f"{report_fingerprint(trace, name, comparison)}:{ALL_MODELS}"
        if latest_inputs(context.instance, experiment_report.key, name) != fingerprint:
            requests.append(dg.RunRequest(partition_key=name, run_key=f"report:{name}:{fingerprint}"))
    return requests or dg.SkipReason("every experiment's report is current")
