"""Everything Dagster sees, assembled by :func:`build_defs` from one :class:`Settings` object.

Nothing outside this package (and the CLI's launcher) imports dagster: the pipeline's work is
done by plain functions in ``tracing/``, ``analysis/`` and ``reporting/`` that the assets call.
"""

from __future__ import annotations

import warnings

import dagster as dg

from tracer_pipeline.settings import Settings

# BackfillPolicy is beta in Dagster 1.13; single-run backfills are how runs advance in lockstep.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")


def build_defs(settings: Settings) -> dg.Definitions:
    """The code location: assets, jobs, sensors, seed schedules, resources and executor."""
    from tracer_pipeline.defs.assets.analysis import experiment_report, store_comparison
    from tracer_pipeline.defs.assets.clusters import clusters
    from tracer_pipeline.defs.assets.sceneworld import sceneworld_models
    from tracer_pipeline.defs.jobs import TRACE_ASSETS, report_job, trace_job
    from tracer_pipeline.defs.resources import build_resources
    from tracer_pipeline.defs.schedules import seed_schedules
    from tracer_pipeline.defs.sensors import experiments_sensor, reports_sensor

    return dg.Definitions(
        assets=[*TRACE_ASSETS, store_comparison, clusters, experiment_report, sceneworld_models],
        jobs=[trace_job, report_job],
        sensors=[experiments_sensor, reports_sensor],
        schedules=seed_schedules(settings.experiments_dir),
        resources=build_resources(settings),
        executor=build_executor(settings),
    )


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor ``settings.executor`` names. In-process by default: models stay loaded for the
    whole Dagster run (a step in its own process would reload every model and cost about 2 s
    more); ``celery`` sends steps to workers that keep their models loaded between steps."""
    if settings.executor == "celery":
        from tracer_pipeline.defs.workers import celery_executor

        return celery_executor(settings)
    return dg.in_process_executor if settings.executor == "in_process" else dg.multiprocess_executor
