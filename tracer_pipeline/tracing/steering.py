"""The steering engine: each round of a run is one invocation (the destination's picture) plus
its figures and preferences in the steering tables.

The target is the run's initial input (its prompt, or its initial image), so the embedding
step stores its embedding as the run's reference (sequence −1) like any run's starting point,
and drift from it is measured as for every run. The artificial user places the target in its own
feature space with the same embedding model it judges images with.

Resume: every round stores the destination, the reward model's weights and its answers (the
memory), so a run continues from its last stored round without replaying the prefix: what a
round computes depends only on what earlier rounds stored (:mod:`tracer_pipeline.steering.loop`),
so a resumed run stores the same bytes as an uninterrupted one. A round is written after its
invocation; an invocation found without its round (a crash between the two), with an error, or
from another generator version is deleted with everything after it and computed again, so a
crash loses at most the round in flight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import EmbeddingModel, ModelFailure, ModelSpec
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.steering.feedback import ArtificialUser, embed_one_each
from tracer_pipeline.steering.generators import NoiseGenerator
from tracer_pipeline.steering.loop import next_round
from tracer_pipeline.store import InvocationRecord, RunRecord, SteeringRoundRecord, TraceStore
from tracer_pipeline.store.schema import utcnow
from tracer_pipeline.tracing.invocations import RunOutcome


def _resume_from(store: TraceStore, run: RunRecord, spec: ModelSpec, outcome: RunOutcome) -> list[SteeringRoundRecord]:
    """The stored rounds a run continues from, after deleting what cannot be kept."""
    rounds = {r.round: r for r in store.steering_rounds(run.run_id)}
    kept: list[SteeringRoundRecord] = []
    for inv in store.invocations(run.run_id):
        stale = inv.model != spec.name or inv.model_version != spec.version or inv.seed != run.seed
        if stale or inv.error is not None or inv.sequence_number not in rounds:
            deleted = store.delete_invocations_from(run.run_id, inv.sequence_number)
            if stale:
                outcome.recomputed_stale = deleted
            break
        kept.append(rounds[inv.sequence_number])
    outcome.stored_before = len(kept)
    return kept


def artificial_user(pool: ModelPool, run: RunRecord) -> ArtificialUser:
    """The run's artificial user: its feedback model, with the target embedded by that model."""
    feedback = run.spec["options"]["feedback"]
    model = pool.get(feedback["embedding_model"])
    assert isinstance(model, EmbeddingModel)
    [target] = embed_one_each(model, [run.initial_input])
    return ArtificialUser(model, target, float(feedback["noise"]), feedback["both_good"], feedback["both_bad"])


def _finish(store: TraceStore, run: RunRecord, outcome: RunOutcome) -> None:
    outcome.status, outcome.stop_reason = RunStatus.COMPLETE, "max_length reached"
    store.set_run_status(run.run_id, outcome.status, outcome.stop_reason)


def _fail(store: TraceStore, run: RunRecord, outcome: RunOutcome, error: str) -> None:
    outcome.status, outcome.error = RunStatus.FAILED, error
    store.set_run_status(run.run_id, RunStatus.FAILED, error=error)


def run_rounds(
    store: TraceStore,
    pool: ModelPool,
    run_ids: list[str],
    *,
    on_invocation: Callable[[InvocationRecord], None] | None = None,
) -> dict[str, RunOutcome]:
    """Bring every steering run up to its target number of rounds, one run after another (a
    round trains a reward model on the run's own memory: there is nothing to batch across runs)."""
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
            assert isinstance(generator, NoiseGenerator)
            user = artificial_user(pool, run)
        except TracerError as exc:
            _fail(store, run, outcome, f"{spec.name}: {exc}")
            continue
        store.set_run_status(run.run_id, RunStatus.RUNNING)
        params = run.spec["options"]
        while len(history) < run.max_length:
            round_, started = len(history), utcnow()
            previous = history[-1].invocation_id if history else None
            try:
                record, picture = next_round(generator, user, params, run.run_id, run.seed, history)
            except Exception as exc:  # stored as the round's error, like a model's failure
                failure = ModelFailure.from_exception(exc)
                store.add_invocation(run.run_id, round_, spec.name, spec.version, previous, run.seed,
                                     failure, started, utcnow())
                outcome.computed += 1
                _fail(store, run, outcome, f"round {round_} ({spec.name}): {failure}")
                break
            inv = store.add_invocation(run.run_id, round_, spec.name, spec.version, previous, run.seed,
                                       picture, started, utcnow())
            record = dataclasses.replace(record, invocation_id=inv.id)
            store.add_round(record)
            history.append(record)
            outcome.computed += 1
            if on_invocation:
                on_invocation(inv)
        else:
            _finish(store, run, outcome)
    return outcomes
