"""The steering engine: each round of a run is one invocation (the destination's picture) plus
its figures and preferences in the steering tables.

The target is the run's initial input (its prompt, or its initial image), so the embedding
step stores its embedding as the run's reference (sequence −1) like any run's starting point,
and drift from it is measured as for every run. The artificial user places the target in its own
feature space with the same embedding model it judges images with.

Resume: every round stores the destination, the reward model's weights and its answers (the
memory), so a run continues from its last stored round without replaying the prefix: what a
round computes depends only on what earlier rounds stored (:mod:`tracer_pipeline.steering.loop`),
so a resumed run stores the same bytes as an uninterrupted one. Resume and the step loop are
:mod:`tracer_pipeline.tracing.stepwise`'s, shared with self-consuming runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import EmbeddingModel, ModelSpec
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.steering.feedback import ArtificialUser, embed_one_each
from tracer_pipeline.steering.generators import NoiseGenerator
from tracer_pipeline.steering.loop import next_round
from tracer_pipeline.store import InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.tracing.invocations import RunOutcome
from tracer_pipeline.tracing.stepwise import fail, finish, resume_from, run_steps


def artificial_user(pool: ModelPool, run: RunRecord) -> ArtificialUser:
    """The run's artificial user: its feedback model, with the target embedded by that model."""
    feedback = run.spec["options"]["feedback"]
    model = pool.get(feedback["embedding_model"])
    assert isinstance(model, EmbeddingModel)
    [target] = embed_one_each(model, [run.initial_input])
    return ArtificialUser(model, target, float(feedback["noise"]), feedback["both_good"], feedback["both_bad"])


def round_version(generator: ModelSpec, run: RunRecord) -> str:
    """What a round's invocation records as its model version: the generator's and the feedback
    model's (``1+SceneCLIP@2``). The artificial user's judgements decide every later round, so
    rounds judged by another version of the feedback model are recomputed on resume, as
    invocations of another model version are."""
    feedback = get_model(run.spec["options"]["feedback"]["embedding_model"])
    return f"{generator.version}+{feedback.name}@{feedback.version}"


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
        stored = {r.round: r for r in store.steering_rounds(run.run_id)}
        version = round_version(spec, run)
        history = resume_from(store, run, spec, outcome, stored, version)
        if len(history) >= run.max_length:
            finish(store, run, outcome)
            continue
        try:
            generator = pool.get(spec.name)
            assert isinstance(generator, NoiseGenerator)
            user = artificial_user(pool, run)
        except TracerError as exc:
            fail(store, run, outcome, f"{spec.name}: {exc}")
            continue
        params = run.spec["options"]
        run_steps(store, run, spec, outcome, history,
                  partial(next_round, generator, user, params, run.run_id, run.seed),
                  store.add_round, "round", on_invocation, version)
    return outcomes
