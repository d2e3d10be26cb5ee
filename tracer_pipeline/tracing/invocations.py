"""Invoke each run's network, one invocation after another, storing each as it completes.

Runs advance in lockstep: at every round, the runs whose next model is the same are batched
into one model call (per-item seeds, so a run's outputs do not depend on what it is batched
with). A run resumes from its stored prefix; stored invocations made by another model version
are deleted from the first mismatch on (with what was derived from them) and recomputed.

Every invocation of a run uses the run's seed, so a run is the orbit of a deterministic map:
when an output repeats an earlier output at the same position in the network, every later
output is known. Such a run stops there ("stuck") unless an experiment asks to continue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import (
    GenerativeModel,
    ModelFailure,
    Output,
    batch_then_items,
    output_digest,
)
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.store.schema import utcnow

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Cycle:
    """The orbit repeats from invocation ``start``: ``period`` invocations later it is back."""

    start: int
    period: int
    network_length: int

    def describe(self) -> str:
        loops = self.period // self.network_length
        if loops == 1:
            return f"fixed point from invocation {self.start}"
        return f"cycle of length {loops} from invocation {self.start}"


@dataclass
class RunOutcome:
    run_id: str
    computed: int = 0
    stored_before: int = 0
    recomputed_stale: int = 0
    status: RunStatus = RunStatus.PENDING
    stop_reason: str | None = None
    error: str | None = None


@dataclass
class _RunState:
    run: RunRecord
    next_seq: int
    last_output: Output
    last_id: int | None
    seen: dict[tuple[int, str], int] = field(default_factory=dict)
    cycle: Cycle | None = None

    @property
    def model(self) -> str:
        return self.run.network[self.next_seq % len(self.run.network)]


def _position(seq: int, length: int) -> int:
    return seq % length


def _prepare(store: TraceStore, run: RunRecord, outcome: RunOutcome) -> _RunState | None:
    """Check the stored prefix, drop what is stale or failed, and return where to resume
    (None when there is nothing left to do)."""
    stored = store.invocations(run.run_id)
    length = len(run.network)
    for inv in stored:
        expected = run.network[_position(inv.sequence_number, length)]
        stale = inv.model != expected or inv.model_version != get_model(expected).version
        if stale or inv.error is not None or inv.seed != run.seed:
            deleted = store.delete_invocations_from(run.run_id, inv.sequence_number)
            if inv.error is None:
                outcome.recomputed_stale = deleted
            stored = stored[: stored.index(inv)]
            break
    outcome.stored_before = len(stored)
    initial = run.initial_input
    state = _RunState(run, len(stored), initial, None)
    state.seen[(_position(-1, length), output_digest(initial))] = -1
    for inv in stored:
        _record(state, inv)
        if state.cycle and run.stop_when_stuck:
            break
    if state.cycle and run.stop_when_stuck:
        outcome.status, outcome.stop_reason = RunStatus.STUCK, state.cycle.describe()
        store.set_run_status(run.run_id, outcome.status, outcome.stop_reason)
        return None
    if state.next_seq >= run.max_length:
        _finish(store, state, outcome)
        return None
    return state


def _record(state: _RunState, inv: InvocationRecord) -> None:
    """Advance the state past a stored invocation, noting the first cycle."""
    key = (_position(inv.sequence_number, len(state.run.network)), inv.output_sha256 or "")
    if state.cycle is None and key in state.seen:
        first = state.seen[key]
        # Periodic from the first occurrence (the initial input, at -1, makes it periodic from 0).
        state.cycle = Cycle(max(first, 0), inv.sequence_number - first, len(state.run.network))
    state.seen.setdefault(key, inv.sequence_number)
    state.next_seq = inv.sequence_number + 1
    state.last_id = inv.id
    state.last_output = inv.output


def _finish(store: TraceStore, state: _RunState, outcome: RunOutcome) -> None:
    outcome.status = RunStatus.COMPLETE
    outcome.stop_reason = "max_length reached"
    if state.cycle:
        outcome.stop_reason += f" (entered a {state.cycle.describe()}; continued as asked)"
    store.set_run_status(state.run.run_id, outcome.status, outcome.stop_reason)


def _fail(store: TraceStore, state: _RunState, outcome: RunOutcome, error: str) -> None:
    outcome.status, outcome.error = RunStatus.FAILED, error
    store.set_run_status(state.run.run_id, RunStatus.FAILED, error=error)
    state.next_seq = -1


def _next_network(waiting: list[_RunState], pool: ModelPool) -> list[_RunState]:
    """Take the runs of the first waiting network out of ``waiting``; tell the pool their models."""
    if not waiting:
        return []
    network = waiting[0].run.network
    group = [s for s in waiting if s.run.network == network]
    waiting[:] = [s for s in waiting if s.run.network != network]
    pool.prepare(network)
    return group


def run_invocations(
    store: TraceStore,
    pool: ModelPool,
    run_ids: list[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_invocation: Callable[[InvocationRecord], None] | None = None,
) -> dict[str, RunOutcome]:
    """Bring every run up to its target length (or until it is stuck or fails).

    Each invocation is committed in its own transaction as soon as its batch returns, so a
    crash loses at most each run's invocation in flight and a rerun resumes from what is stored.
    """
    runs = store.get_runs(run_ids)
    missing = set(run_ids) - {r.run_id for r in runs}
    if missing:
        store.get_run(sorted(missing)[0])  # raises the clear "not registered" error
    outcomes = {run_id: RunOutcome(run_id) for run_id in run_ids}
    waiting: list[_RunState] = []
    for run in runs:
        state = _prepare(store, run, outcomes[run.run_id])
        if state is not None:
            store.set_run_status(run.run_id, RunStatus.RUNNING)
            waiting.append(state)

    # One network's runs at a time, so that the pool can free what the next network does not use.
    active: list[_RunState] = []
    while active or (active := _next_network(waiting, pool)):
        by_model: dict[str, list[_RunState]] = {}
        for state in active:
            by_model.setdefault(state.model, []).append(state)
        for model_name in sorted(by_model):
            spec = get_model(model_name)
            group = by_model[model_name]
            try:
                model = pool.get(model_name)
            except TracerError as exc:  # e.g. weights absent: every run needing it fails
                for state in group:
                    _fail(store, state, outcomes[state.run.run_id], f"{spec.name}: {exc}")
                continue
            assert isinstance(model, GenerativeModel)
            for start in range(0, len(group), batch_size):
                batch = group[start : start + batch_size]
                started = utcnow()
                outputs = batch_then_items(model.generate, [s.last_output for s in batch], [s.run.seed for s in batch],
                                           policy=pool.policy)
                completed = utcnow()
                for state, output in zip(batch, outputs, strict=True):
                    inv = store.add_invocation(
                        state.run.run_id, state.next_seq, spec.name, spec.version, state.last_id,
                        state.run.seed, output, started, completed,
                    )
                    if on_invocation:
                        on_invocation(inv)
                    outcome = outcomes[state.run.run_id]
                    outcome.computed += 1
                    if isinstance(output, ModelFailure):
                        _fail(store, state, outcome, f"invocation {state.next_seq} ({spec.name}): {output}")
                        continue
                    _record(state, inv)
                    if state.cycle and state.run.stop_when_stuck:
                        outcome.status, outcome.stop_reason = RunStatus.STUCK, state.cycle.describe()
                        store.set_run_status(state.run.run_id, RunStatus.STUCK, outcome.stop_reason)
                        state.next_seq = -1
                    elif state.next_seq >= state.run.max_length:
                        _finish(store, state, outcome)
                        state.next_seq = -1
        active = [s for s in active if s.next_seq >= 0]
    return outcomes
