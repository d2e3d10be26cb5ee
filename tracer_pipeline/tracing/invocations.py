"""Invoke each run's network, one invocation after another, storing each as it completes.

Runs advance in lockstep: at every round, the runs whose next model is the same are batched
into one model call (per-item seeds, so a run's outputs do not depend on what it is batched
with). A run resumes from its stored prefix; stored invocations made by another model version
are deleted from the first mismatch on (with what was derived from them) and recomputed.
A model with options is called as the run's identity configures it (its resolved options, from the
run's specification). A model that forms its output by optimisation returns a ``FormedImage``: the
image is the invocation's output, and the images it passed through are stored with it, in the
same transaction, as its intermediate outputs.

With ``seed_mode`` "fixed" every invocation of a run uses the run's seed, so a run is the orbit
of a deterministic map: when an output repeats an earlier output at the same position in the
network, every later output is known. Such a run stops there ("stuck") unless an experiment asks
to continue. With "per_invocation" each invocation has its own seed (``tracing.seeds``), a
repeat says nothing about what follows, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import (
    FormedImage,
    GenerativeModel,
    Output,
    batch_then_items,
    output_digest,
)
from tracer_pipeline.models.pool import ModelPool, model_key
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import InvocationRecord, NewInvocation, RunRecord, TraceStore
from tracer_pipeline.store.schema import utcnow
from tracer_pipeline.tracing import progress
from tracer_pipeline.tracing.seeds import invocation_seed

DEFAULT_BATCH_SIZE = 16
# Runs of one network advanced together. Lockstep holds each run's latest output and a round's
# outputs: at 10,000 runs of 512-pixel images, gigabytes; a cohort bounds it and still fills
# every model call of the default batch size.
COHORT_RUNS = 256


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
    last: InvocationRecord | None  # the latest stored invocation; None before the first
    seen: dict[tuple[int, str], int] = field(default_factory=dict)
    cycle: Cycle | None = None

    @property
    def model(self) -> str:
        return self.run.network[self.next_seq % len(self.run.network)]

    @property
    def params(self) -> dict:
        """The next model's params as the run's identity holds them (its options, if it has any)."""
        return self.run.model_params(self.next_seq % len(self.run.network))

    @property
    def last_output(self) -> Output:
        """The next invocation's input (decoded only when needed: a resumed run's earlier images
        are never decoded)."""
        return self.run.initial_input if self.last is None else self.last.output


StatusUpdate = tuple[str, RunStatus, str | None, str | None]  # run id, status, stop reason, error


def _position(seq: int, length: int) -> int:
    return seq % length


def _prepare_cohort(store: TraceStore, runs: list[RunRecord], outcomes: dict[str, RunOutcome],
                    updates: list[StatusUpdate]) -> list[_RunState]:
    """:func:`_prepare` these runs, their stored prefixes read in a few queries without their
    images; of the runs that resume, only the last output (the next input) is read."""
    prefixes = store.invocations_of([run.run_id for run in runs], images=False)
    states = [state for run in runs
              if (state := _prepare(store, run, prefixes[run.run_id], outcomes[run.run_id], updates)) is not None]
    resumed = [state for state in states if state.last is not None and state.last.output_type == "image"]
    images = store.images([(state.run.run_id, state.last.sequence_number) for state in resumed])
    for state in resumed:
        state.last = replace(state.last, output_image=images[(state.run.run_id, state.last.sequence_number)])
    return states


def _prepare(store: TraceStore, run: RunRecord, stored: list[InvocationRecord], outcome: RunOutcome,
             updates: list[StatusUpdate]) -> _RunState | None:
    """Check the stored prefix, drop what is stale or failed, and return where to resume
    (None when there is nothing left to do)."""
    length = len(run.network)
    for inv in stored:
        expected = run.network[_position(inv.sequence_number, length)]
        stale = inv.model != expected or inv.model_version != get_model(expected).version
        if stale or inv.error is not None or inv.seed != invocation_seed(run, inv.sequence_number):
            deleted = store.delete_invocations_from(run.run_id, inv.sequence_number)
            if inv.error is None:
                outcome.recomputed_stale = deleted
            stored = stored[: stored.index(inv)]
            break
    outcome.stored_before = len(stored)
    state = _RunState(run, len(stored), None)
    state.seen[(_position(-1, length), output_digest(run.initial_input))] = -1
    for inv in stored:
        _record(state, inv)
        if state.cycle and run.stop_when_stuck:
            break
    if state.cycle and run.stop_when_stuck:
        outcome.status, outcome.stop_reason = RunStatus.STUCK, state.cycle.describe()
        updates.append((run.run_id, outcome.status, outcome.stop_reason, None))
        return None
    if state.next_seq >= run.max_length:
        _finish(state, outcome, updates)
        return None
    return state


def _record(state: _RunState, inv: InvocationRecord) -> None:
    """Advance the state past a stored invocation, noting the first cycle."""
    key = (_position(inv.sequence_number, len(state.run.network)), inv.output_sha256 or "")
    if state.cycle is None and key in state.seen and state.run.seed_mode == "fixed":
        first = state.seen[key]
        # Periodic from the first occurrence (the initial input, at -1, makes it periodic from 0).
        state.cycle = Cycle(max(first, 0), inv.sequence_number - first, len(state.run.network))
    state.seen.setdefault(key, inv.sequence_number)
    state.next_seq = inv.sequence_number + 1
    state.last = inv


def _finish(state: _RunState, outcome: RunOutcome, updates: list[StatusUpdate]) -> None:
    outcome.status = RunStatus.COMPLETE
    outcome.stop_reason = "max_length reached"
    if state.cycle:
        outcome.stop_reason += f" (entered a {state.cycle.describe()}; continued as asked)"
    updates.append((state.run.run_id, outcome.status, outcome.stop_reason, None))
    state.next_seq = -1


def _fail(state: _RunState, outcome: RunOutcome, error: str, updates: list[StatusUpdate]) -> None:
    outcome.status, outcome.error = RunStatus.FAILED, error
    updates.append((state.run.run_id, RunStatus.FAILED, None, error))
    state.next_seq = -1


def _advance(state: _RunState, inv: InvocationRecord, outcome: RunOutcome, updates: list[StatusUpdate]) -> None:
    """Take in a new invocation: stop the run when it failed, got stuck or reached its length."""
    outcome.computed += 1
    if inv.error is not None:
        _fail(state, outcome, f"invocation {inv.sequence_number} ({inv.model}): {inv.error}", updates)
        return
    _record(state, inv)
    if state.cycle and state.run.stop_when_stuck:
        outcome.status, outcome.stop_reason = RunStatus.STUCK, state.cycle.describe()
        updates.append((state.run.run_id, RunStatus.STUCK, outcome.stop_reason, None))
        state.next_seq = -1
    elif state.next_seq >= state.run.max_length:
        _finish(state, outcome, updates)


def _cohorts(runs: list[RunRecord], size: int) -> list[list[RunRecord]]:
    """The runs of each network (in order of first appearance), in groups of at most ``size``."""
    networks: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        networks.setdefault(tuple(run.network), []).append(run)
    return [group[start : start + size] for group in networks.values() for start in range(0, len(group), size)]


def _prepare_pool(active: list[_RunState], pool: ModelPool) -> None:
    """Tell the pool the models of a cohort (one network's runs), so that it can free others."""
    entries = {model_key(name, s.run.model_params(i)): (name, s.run.model_params(i))
               for s in active for i, name in enumerate(s.run.network)}
    pool.prepare([name for name, _ in entries.values()], [params for _, params in entries.values()])


def run_invocations(
    store: TraceStore,
    pool: ModelPool,
    run_ids: list[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_invocation: Callable[[InvocationRecord], None] | None = None,
    cohort_runs: int = COHORT_RUNS,
) -> dict[str, RunOutcome]:
    """Bring every run up to its target length (or until it is stuck or fails).

    The runs of a network advance in lockstep in cohorts of at most ``cohort_runs``: what is held
    (each run's latest output, a round's outputs) is bounded by the cohort, whatever the grid's
    size. Each lockstep round (at most one invocation per run of the cohort) is committed in one
    transaction as soon as its model calls return, so a crash loses at most each run's invocation
    in flight and a rerun resumes from what is stored.
    """
    runs = store.get_runs(run_ids)
    missing = set(run_ids) - {r.run_id for r in runs}
    if missing:
        store.get_run(sorted(missing)[0])  # raises the clear "not registered" error
    outcomes = {run_id: RunOutcome(run_id) for run_id in run_ids}
    for cohort in _cohorts(runs, cohort_runs):
        updates: list[StatusUpdate] = []
        active = _prepare_cohort(store, cohort, outcomes, updates)
        updates += [(state.run.run_id, RunStatus.RUNNING, None, None) for state in active]
        store.set_run_statuses(updates)
        if active:
            _prepare_pool(active, pool)
        while active:
            active = _round(store, pool, active, outcomes, batch_size, on_invocation)
    return outcomes


def _round(
    store: TraceStore,
    pool: ModelPool,
    active: list[_RunState],
    outcomes: dict[str, RunOutcome],
    batch_size: int,
    on_invocation: Callable[[InvocationRecord], None] | None,
) -> list[_RunState]:
    """One lockstep round: the next invocation of every active run, stored in one transaction per
    model as soon as its calls return. Returns the runs still active."""
    updates: list[StatusUpdate] = []
    by_model: dict[str, list[_RunState]] = {}
    for state in active:  # one group per model and options
        by_model.setdefault(model_key(state.model, state.params), []).append(state)
    for key in sorted(by_model):
        group = by_model[key]
        spec = get_model(group[0].model)
        try:
            model = pool.get(spec.name, group[0].params)
        except TracerError as exc:  # e.g. weights absent: every run needing it fails
            for state in group:
                _fail(state, outcomes[state.run.run_id], f"{spec.name}: {exc}", updates)
            continue
        assert isinstance(model, GenerativeModel)
        new: list[NewInvocation] = []
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            started = utcnow()
            seeds = [invocation_seed(s.run, s.next_seq) for s in batch]
            outputs = batch_then_items(model.generate, [s.last_output for s in batch], seeds, policy=pool.policy)
            completed = utcnow()
            new += [NewInvocation(s.run.run_id, s.next_seq, spec.name, spec.version, s.last and s.last.id,
                                  seed, output.image if isinstance(output, FormedImage) else output,
                                  started, completed,
                                  output.steps if isinstance(output, FormedImage) else ())
                    for s, output, seed in zip(batch, outputs, seeds, strict=True)]
        for state, inv in zip(group, store.add_invocations(new), strict=True):
            if on_invocation:
                on_invocation(inv)
            _advance(state, inv, outcomes[state.run.run_id], updates)
        progress.report("invocations", len(new))
    store.set_run_statuses(updates)
    for state in active:
        if state.next_seq < 0:
            _report_finished(state, outcomes[state.run.run_id])
    return [s for s in active if s.next_seq >= 0]


def _report_finished(state: _RunState, outcome: RunOutcome) -> None:
    progress.report("runs", 1, state.run.run_id)
    stored = state.last.sequence_number + 1 if state.last else 0
    if outcome.status != RunStatus.COMPLETE and stored < state.run.max_length:
        progress.report("shortfall", state.run.max_length - stored, state.run.run_id)
