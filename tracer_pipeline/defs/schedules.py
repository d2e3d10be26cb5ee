"""Seed schedules: experiments that set ``seed_schedule`` get fresh seeds on a cron.

Each tick adds ``new_seeds`` seeds to the experiment (chosen deterministically from the
experiment's name and how many were added before, recorded in the trace store; the user's
file is left untouched) and launches one run covering just those runs. One schedule per such
config in the experiments folder, named ``seeds_<experiment>``; they are read when the code
location loads (reload it in the UI after adding a schedule to a config).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from tracer_pipeline.config import MAX_SEED, Experiment, load_experiment
from tracer_pipeline.defs.jobs import trace_job
from tracer_pipeline.defs.partitions import range_tags, runs_partitions
from tracer_pipeline.defs.registration import contiguous_ranges, register_experiment
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.errors import ConfigError


def next_seeds(experiment_name: str, taken: set[int], count: int, start_index: int) -> list[int]:
    """``count`` seeds not in ``taken``, the same for the same name and history on any machine."""
    seeds: list[int] = []
    index = start_index
    while len(seeds) < count:
        digest = hashlib.sha256(f"{experiment_name}:seed:{index}".encode()).digest()
        seed = int.from_bytes(digest[:8], "little") % (2**31)
        index += 1
        if seed not in taken and seed not in seeds and seed <= MAX_SEED:
            seeds.append(seed)
    return seeds


def add_scheduled_seeds(
    context: dg.ScheduleEvaluationContext, store: TraceStoreResource, path: Path
) -> list[dg.RunRequest] | dg.SkipReason:
    """One tick of a seed schedule: register new seeds, request their runs."""
    try:
        experiment: Experiment = load_experiment(path)
    except ConfigError as exc:
        return dg.SkipReason(str(exc))
    if experiment.seed_schedule is None:
        return dg.SkipReason(f"{path} no longer has a seed_schedule")
    trace = store.get_store()
    earlier = trace.scheduled_seeds(experiment.name)
    fresh = next_seeds(experiment.name, set(experiment.seeds) | set(earlier),
                       experiment.seed_schedule.new_seeds, start_index=len(earlier))
    registration = register_experiment(trace, context.instance, experiment, extra_seeds=[*earlier, *fresh])
    order = context.instance.get_dynamic_partitions(runs_partitions.name)
    return [
        dg.RunRequest(run_key=f"{experiment.name}:seeds:{len(earlier)}:{first}", tags=range_tags(first, last))
        for first, last in contiguous_ranges(registration.new_partitions, order)
    ]


def seed_schedules(folder: Path) -> list[dg.ScheduleDefinition]:
    """A schedule for every valid config in the folder that sets ``seed_schedule``."""
    schedules = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            experiment = load_experiment(path)
        except ConfigError:
            continue  # the experiments sensor reports invalid configs
        if experiment.seed_schedule is None:
            continue

        def evaluate(context: dg.ScheduleEvaluationContext, store: TraceStoreResource, _path: Path = path):
            return add_scheduled_seeds(context, store, _path)

        schedules.append(dg.ScheduleDefinition(
            name=f"seeds_{experiment.name.replace('-', '_')}",
            cron_schedule=experiment.seed_schedule.cron,
            job=trace_job,
            execution_fn=evaluate,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Adds {experiment.seed_schedule.new_seeds} new seeds to {experiment.name} "
                        f"({path.name}) and runs them.",
        ))
    return schedules
