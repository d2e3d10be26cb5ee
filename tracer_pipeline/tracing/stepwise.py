"""What the engines of runs that store one record per step beside its invocation share (the
self-consuming and steering kinds): resuming from the stored prefix, and the loop that makes,
stores and reports each step until the run's target length.

A step is written after its invocation; an invocation found without its record (a crash between
the two), with an error, or made by another model version or seed is deleted with everything
after it and computed again, so a crash loses at most the step in flight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tracer_pipeline.models.base import ModelFailure, ModelSpec
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.store.schema import utcnow
from tracer_pipeline.tracing.invocations import RunOutcome

Step = TypeVar("Step")  # a kind's record of one step, with an ``invocation_id`` field


def resume_from(store: TraceStore, run: RunRecord, spec: ModelSpec, outcome: RunOutcome,
                stored: Mapping[int, Step], version: str | None = None) -> list[Step]:
    """The stored steps (``stored``: step number → record) a run continues from, after deleting
    what cannot be kept. ``version``: what the steps' invocations record as their model version
    when more than the model decides a step (default: the model's own)."""
    version = version or spec.version
    kept: list[Step] = []
    for inv in store.invocations(run.run_id):
        stale = inv.model != spec.name or inv.model_version != version or inv.seed != run.seed
        if stale or inv.error is not None or inv.sequence_number not in stored:
            deleted = store.delete_invocations_from(run.run_id, inv.sequence_number)
            if stale:
                outcome.recomputed_stale = deleted
            break
        kept.append(stored[inv.sequence_number])
    outcome.stored_before = len(kept)
    return kept


def finish(store: TraceStore, run: RunRecord, outcome: RunOutcome) -> None:
    outcome.status, outcome.stop_reason = RunStatus.COMPLETE, "max_length reached"
    store.set_run_status(run.run_id, outcome.status, outcome.stop_reason)


def fail(store: TraceStore, run: RunRecord, outcome: RunOutcome, error: str) -> None:
    outcome.status, outcome.error = RunStatus.FAILED, error
    store.set_run_status(run.run_id, RunStatus.FAILED, error=error)


def run_steps(
    store: TraceStore, run: RunRecord, spec: ModelSpec, outcome: RunOutcome, history: list[Step],
    step: Callable[[list[Step]], tuple[Step, Any]], put: Callable[[Step], None], what: str,
    on_invocation: Callable[[InvocationRecord], None] | None = None, version: str | None = None,
) -> None:
    """Make the run's next steps until its target length: ``step(history)`` gives a step's record
    and output, stored as the invocation and then, with its invocation id, by ``put``. A step
    that raises is stored as the invocation's error and fails the run (``what``: the step's name
    in that message, e.g. "generation"; ``version`` as for :func:`resume_from`)."""
    version = version or spec.version
    store.set_run_status(run.run_id, RunStatus.RUNNING)
    while len(history) < run.max_length:
        number, started = len(history), utcnow()
        previous = history[-1].invocation_id if history else None
        try:
            record, output = step(history)
        except Exception as exc:  # stored as the step's error, like a model's failure
            failure = ModelFailure.from_exception(exc)
            store.add_invocation(run.run_id, number, spec.name, version, previous, run.seed,
                                 failure, started, utcnow())
            outcome.computed += 1
            fail(store, run, outcome, f"{what} {number} ({spec.name}): {failure}")
            return
        inv = store.add_invocation(run.run_id, number, spec.name, version, previous, run.seed,
                                   output, started, utcnow())
        record = dataclasses.replace(record, invocation_id=inv.id)
        put(record)
        history.append(record)
        outcome.computed += 1
        if on_invocation:
            on_invocation(inv)
    finish(store, run, outcome)
