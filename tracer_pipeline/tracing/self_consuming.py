"""The self-consuming engine: each generation of a run is one invocation (a grid of its
samples) plus its figures in the generation tables.

Resume: every generation stores the generator's and the classifier's weights (and its data), so
a run continues from its last stored generation without retraining the prefix: what a generation
computes depends only on what earlier generations stored (:mod:`tracer_pipeline.selfconsuming.loop`),
so a resumed run stores the same bytes as an uninterrupted one. Retraining the prefix
deterministically instead would make extending a run of g generations cost all g again. Resume
and the step loop are :mod:`tracer_pipeline.tracing.stepwise`'s, shared with steering runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.selfconsuming.loop import next_generation
from tracer_pipeline.store import InvocationRecord, TraceStore
from tracer_pipeline.tracing.invocations import RunOutcome
from tracer_pipeline.tracing.stepwise import fail, finish, resume_from, run_steps


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
        stored = {g.generation: g for g in store.generations(run.run_id)}
        history = resume_from(store, run, spec, outcome, stored)
        if len(history) >= run.max_length:
            finish(store, run, outcome)
            continue
        try:
            generator = pool.get(spec.name)
        except TracerError as exc:
            fail(store, run, outcome, f"{spec.name}: {exc}")
            continue
        params = run.spec["generator"]["params"]
        run_steps(store, run, spec, outcome, history,
                  partial(next_generation, generator, params, run.run_id, run.seed),
                  store.add_generation, "generation", on_invocation)
    return outcomes
