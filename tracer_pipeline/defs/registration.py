"""Registering an experiment: its runs in the trace store and as Dagster partitions.

The one place the sensor, the seed schedule and the CLI go through, so that they agree on
what is new and what needs recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from tracer_pipeline.config import Experiment
from tracer_pipeline.defs.partitions import (
    experiments_partitions,
    partition_keys_by_run,
    run_id_of,
    run_partition_key,
    runs_partitions,
)
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore


@dataclass(frozen=True)
class Registration:
    experiment: str
    run_ids: list[str]
    partition_keys: list[str]  # each run's partition key, in ``run_ids`` order
    new_partitions: list[str]  # keys of runs Dagster did not know yet
    extended: list[str]  # keys of known runs whose target length grew: invocations to add
    reembed: list[str]  # keys of known runs with a new embedding model or homology dimension

    @property
    def changed(self) -> bool:
        return bool(self.new_partitions or self.extended or self.reembed)


def register_experiment(
    store: TraceStore, instance: dg.DagsterInstance, experiment: Experiment, extra_seeds: Sequence[int] = ()
) -> Registration:
    """Record the experiment and its runs in the store, then add the missing partitions (a run
    Dagster already knows keeps its key)."""
    before = {r.run_id: r for r in store.get_runs([s.run_id for s in experiment.runs(tuple(extra_seeds))])}
    run_ids = list(dict.fromkeys(store.register_experiment(experiment, extra_seeds)))
    after = {r.run_id: r for r in store.get_runs(run_ids)}
    known = partition_keys_by_run(instance)
    keys = {run_id: known.get(run_id) or run_partition_key(after[run_id]) for run_id in run_ids}
    new = [keys[r] for r in run_ids if r not in known]
    extended, reembed = [], []
    for run_id, old in before.items():
        if run_id not in known:
            continue
        now = after[run_id]
        if now.max_length > old.max_length or (now.stop_when_stuck is False and old.stop_when_stuck):
            extended.append(keys[run_id])
        elif set(now.embedding_models) - set(old.embedding_models) or now.max_homology_dim > old.max_homology_dim:
            reembed.append(keys[run_id])
    for key in extended:
        store.set_run_status(run_id_of(key), RunStatus.PENDING)
    if new:
        instance.add_dynamic_partitions(runs_partitions.name, new)
    instance.add_dynamic_partitions(experiments_partitions.name, [experiment.name])
    return Registration(experiment.name, run_ids, [keys[r] for r in run_ids], new, extended, reembed)


def contiguous_ranges(keys: Sequence[str], order: Sequence[str]) -> list[tuple[str, str]]:
    """Cover ``keys`` with the fewest (first, last) ranges of consecutive keys in ``order``
    (the partitions' order), so that each range can be one Dagster run."""
    wanted = set(keys)
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for key in order:
        if key in wanted:
            start = start or key
            previous = key
        elif start is not None:
            ranges.append((start, previous))
            start = None
    if start is not None:
        ranges.append((start, previous))
    return ranges


def split_ranges(keys: Sequence[str], order: Sequence[str], parts: int) -> list[tuple[str, str]]:
    """Cover ``keys`` with at least ``parts`` (first, last) ranges of consecutive keys in ``order``
    where there are enough keys, halving the longest range until there are: one Dagster run per
    range, so that ``parts`` workers each get one to run."""
    position = {key: i for i, key in enumerate(order)}
    segments = [list(order[position[a]:position[b] + 1]) for a, b in contiguous_ranges(keys, order)]
    while len(segments) < parts:
        longest = max(range(len(segments)), key=lambda i: len(segments[i]), default=None)
        if longest is None or len(segments[longest]) < 2:
            break
        segment = segments.pop(longest)
        half = (len(segment) + 1) // 2
        segments[longest:longest] = [segment[:half], segment[half:]]
    return [(segment[0], segment[-1]) for segment in segments]
