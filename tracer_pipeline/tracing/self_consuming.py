"""The self-consuming engine: each generation of a run is one invocation (a grid of its
samples) plus its figures in the generation tables.

Resume: every generation stores the generator's and the classifier's weights (and its data), so
a run continues from its last stored generation without retraining the prefix: what a generation
computes depends only on what earlier generations stored (:mod:`tracer_pipeline.selfconsuming.loop`),
so a resumed run stores the same bytes as an uninterrupted one. Retraining the prefix
deterministically instead would make extending a run of g generations cost all g again. A
generation is written after its invocation; an invocation found without its generation (a crash
between the two), with an error, or from another generator version is deleted with everything
after it and computed again, so a crash loses at most the generation in flight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import ModelFailure, ModelSpec
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.selfconsuming.loop import next_generation
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import GenerationRecord, InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.store.schema import utcnow
from tracer_pipeline.tracing.invocations import RunOutcome


def _resume_from(store: TraceStore, run: RunRecord, spec: ModelSpec, outcome: RunOutcome) -> list[GenerationRecord]:
    """The stored generations a run continues from, after deleting what cannot be kept."""
    generations = {g.generation: g for g in store.generations(run.run_id)}
    kept: list[GenerationRecord] = []
    for inv in store.invocations(run.run_id):
        stale = inv.model != spec.name or inv.model_version != spec.version or inv.seed != run.seed
        if stale or inv.error is not None or inv.sequence_number not in generations:
            deleted = store.delete_invocations_from(run.run_id, inv.sequence_number)
            if stale:
                outcome.recomputed_stale = deleted
            break
        kept.append(generations[inv.sequence_number])
    outcome.stored_before = len(kept)
    return kept


def _finish(store: TraceStore, run: RunRecord, outcome: RunOutcome) -> None:
    outcome.status, outcome.stop_reason = RunStatus.COMPLETE, "max_length reached"
    store.set_run_status(run.run_id, outcome.status, outcome.stop_reason)


def _fail(store: TraceStore, run: RunRecord, outcome: RunOutcome, error: str) -> None:
    outcome.status, outcome.error = RunStatus.FAILED, error
    store.set_run_status(run.run_id, RunStatus.FAILED, error=error)


def run_generations(
    store: TraceStore,
    pool: ModelPool,
    run_ids: list[str],
    *,
    on_invocation: Callable[[InvocationRecord], None] | None = None,
) -> dict[str, RunOutcome]:
    """Bring every self-consuming run up to its target number of generations, one run after
    another (a generation trains two networks: there is nothing to batch across runs)."""
    outcomes = {run_id: RunOutcome(run_id) for run_id in run_ids}
    for run in store.get_runs(run_ids):
        outcome = outcomes[run.run_id]
        spec = get_model(run.network[0])
        history = _resume_from(store, run, spec, outcome)
        if len(history) >= run.max_length:
            _finish(store, run, outcome)
            continue
        try:
            generator = pool.get(spec.name)
        except TracerError as exc:
            _fail(store, run, outcome, f"{spec.name}: {exc}")
            continue
        store.set_run_status(run.run_id, RunStatus.RUNNING)
        params = run.spec["generator"]["params"]
        while len(history) < run.max_length:
            generation, started = len(history), utcnow()
            previous = history[-1].invocation_id if history else None
            try:
                record, grid = next_generation(generator, params, run.run_id, run.seed, history)
            except Exception as exc:  # stored as the generation's error, like a model's failure
                failure = ModelFailure.from_exception(exc)
                store.add_invocation(run.run_id, generation, spec.name, spec.version, previous, run.seed,
                                     failure, started, utcnow())
                outcome.computed += 1
                _fail(store, run, outcome, f"generation {generation} ({spec.name}): {failure}")
                break
            inv = store.add_invocation(run.run_id, generation, spec.name, spec.version, previous, run.seed,
                                       grid, started, utcnow())
            record = dataclasses.replace(record, invocation_id=inv.id)
            store.add_generation(record)
            history.append(record)
            outcome.computed += 1
            if on_invocation:
                on_invocation(inv)
        else:
            _finish(store, run, outcome)
    return outcomes
