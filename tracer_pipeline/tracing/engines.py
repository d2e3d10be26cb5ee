"""Engines: how each kind of run computes its steps. The one seam where a kind plugs in.

Every run is a feedback loop traced step by step, and every step is stored as an invocation, so
identity, registration, resume, embeddings, diagrams, reports and the UI are shared by all
kinds. What differs is how the next steps are made: an engine takes the store, the model pool and
the ids of runs of its kind, brings each run from its stored prefix up to its target length
(storing every step as soon as it is made, so a crash loses at most the step in flight), and
returns a :class:`RunOutcome` per run. Kind-specific figures go to the kind's own tables.

A new kind adds a :class:`~tracer_pipeline.config.RunKind` (and its config key and canonical
specification in ``config/``), an engine function with the :class:`Engine` signature, and an
entry in :data:`ENGINES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tracer_pipeline.config import RunKind
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.store import InvocationRecord, TraceStore
from tracer_pipeline.tracing.invocations import RunOutcome, run_invocations
from tracer_pipeline.tracing.self_consuming import run_generations
from tracer_pipeline.tracing.steering import run_rounds


class Engine(Protocol):
    def __call__(
        self,
        store: TraceStore,
        pool: ModelPool,
        run_ids: list[str],
        *,
        on_invocation: Callable[[InvocationRecord], None] | None = None,
    ) -> dict[str, RunOutcome]:
        """Bring these runs (all of one kind) up to their target length; an outcome per run."""
        ...


ENGINES: dict[RunKind, Engine] = {
    RunKind.NETWORK: run_invocations,
    RunKind.SELF_CONSUMING: run_generations,
    RunKind.STEERING: run_rounds,
}


def run_engines(
    store: TraceStore,
    pool: ModelPool,
    run_ids: list[str],
    on_invocation: Callable[[InvocationRecord], None] | None = None,
) -> dict[str, RunOutcome]:
    """Bring every run up to its target length with its kind's engine; outcomes in ``run_ids``
    order. Runs of one kind go to their engine together (network runs advance in lockstep)."""
    runs = store.get_runs(run_ids)
    missing = set(run_ids) - {r.run_id for r in runs}
    if missing:
        store.get_run(sorted(missing)[0])  # raises the clear "not registered" error
    by_kind: dict[RunKind, list[str]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, []).append(run.run_id)
    outcomes: dict[str, RunOutcome] = {}
    for kind, ids in by_kind.items():
        outcomes.update(ENGINES[kind](store, pool, ids, on_invocation=on_invocation))
    return {run_id: outcomes[run_id] for run_id in run_ids}
