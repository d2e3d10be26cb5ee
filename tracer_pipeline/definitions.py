"""Everything Dagster sees: assets, job, sensor, schedules, resources, executor."""

import dagster as dg

from tracer_pipeline.assets.analysis import experiment_report, store_comparison
from tracer_pipeline.assets.sceneworld import sceneworld_models
from tracer_pipeline.jobs import TRACE_ASSETS, report_job, trace_job
from tracer_pipeline.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.schedules import seed_schedules
from tracer_pipeline.sensors import experiments_sensor, reports_sensor

defs = dg.Definitions(
    assets=[*TRACE_ASSETS, store_comparison, experiment_report, sceneworld_models],
    jobs=[trace_job, report_job],
    sensors=[experiments_sensor, reports_sensor],
    schedules=seed_schedules(),
    resources={
        "store": TraceStoreResource.from_environment(),
        "models": ModelPoolResource.from_environment(),
    },
    # In-process: models stay loaded for the whole Dagster run (a step in its own process
    # would reload every model and cost about 2 s more).
    executor=dg.in_process_executor,
)
