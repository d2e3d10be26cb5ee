"""One round of a steering run, computed from the rounds before it.

Round r: draw ``actions`` noise vectors from the run's seed and r; score them with the reward
model as the previous round left it (round 0: freshly initialised from the seed); pair the
2·``pairs`` best-scored in order (best with second best, …); ask the preference source about each
pair; measure how often the reward model ranked those pairs as the source did (held out: it has
not trained on them); add the answers to the memory (every earlier round's answers); continue
training the reward model on the whole memory; start from the best-scored (by the retrained
model) of this round's actions, every action the source preferred so far and the previous
destination, and move it by gradient ascent on the reward. The destination's picture is the
round's output.

Why the preferred actions are candidates: starting only from this round's random actions and the
previous destination, the destination wandered wherever the reward model extrapolated; among
known winners the best-scored one is a start the source has already vouched for (measured on the
benchmark's targets and seeds with the options then in use: mean final similarity 0.57 against 0.53).

Nothing is carried in memory from one round to the next: the step reads the destination, the
reward model's weights and the answers that earlier rounds stored, so a resumed run computes
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from tracer_pipeline.steering.feedback import Choice, PreferenceSource
from tracer_pipeline.steering.generators import NoiseGenerator
from tracer_pipeline.store.records import PreferenceRecord, SteeringRoundRecord


def draw_actions(generator: NoiseGenerator, count: int, seed: int, round_: int, purpose: str = "actions") -> np.ndarray:
    """``count`` standard-normal actions for one round, from the run's seed alone."""
    from tracer_pipeline.selfconsuming.training import derived_seed  # imports torch: only when computing

    rng = np.random.default_rng(derived_seed(seed, round_, purpose))
    return rng.standard_normal((count, *generator.action_shape)).astype(np.float32)


def ranking_accuracy(first_scores: np.ndarray, second_scores: np.ndarray, choices: Sequence[str]) -> float | None:
    """The share of decided pairs ("first" or "second") whose higher-scored action was chosen;
    None when no pair was decided."""
    decided = [(a, b, c) for a, b, c in zip(first_scores, second_scores, choices, strict=True)
               if c in (Choice.FIRST, Choice.SECOND)]
    if not decided:
        return None
    return float(np.mean([(a > b) == (c == Choice.FIRST) for a, b, c in decided]))


def next_round(
    generator: NoiseGenerator,
    source: PreferenceSource,
    params: Mapping[str, Any],
    run_id: str,
    seed: int,
    history: Sequence[SteeringRoundRecord],
) -> tuple[SteeringRoundRecord, Image.Image]:
    """Round ``len(history)`` of the run and the destination's picture."""
    from tracer_pipeline.selfconsuming.training import derived_seed
    from tracer_pipeline.steering import reward as rw

    r = len(history)
    dimension = int(np.prod(generator.action_shape))
    if r == 0:
        model = rw.initialised(lambda: rw.RewardModel(dimension), derived_seed(seed, 0, "reward-init"))
    else:
        model = rw.load_state(rw.RewardModel(dimension), history[-1].reward_state)

    actions = draw_actions(generator, int(params["actions"]), seed, r)
    action_scores = rw.scores(model, actions)
    best = np.argsort(-action_scores, kind="stable")[: 2 * int(params["pairs"])]
    first, second = actions[best[0::2]], actions[best[1::2]]
    first_scores, second_scores = action_scores[best[0::2]], action_scores[best[1::2]]
    pictures = generator.decode(np.concatenate([first, second]))
    half = len(first)
    judgements = source.judge(list(zip(pictures[:half], pictures[half:], strict=True)),
                              derived_seed(seed, r, "feedback"))
    heldout = ranking_accuracy(first_scores, second_scores, [j.choice for j in judgements])
    preferences = tuple(
        PreferenceRecord(pair=i, first_action=first[i], second_action=second[i], first_reward=float(first_scores[i]),
                         second_reward=float(second_scores[i]), first_similarity=j.first_similarity,
                         second_similarity=j.second_similarity, choice=j.choice.value)
        for i, j in enumerate(judgements))

    memory = [p for h in history for p in h.preferences] + list(preferences)
    losses = rw.train_reward(model, np.stack([p.first_action for p in memory]),
                             np.stack([p.second_action for p in memory]),
                             np.array([Choice(p.choice).target for p in memory]),
                             int(params["reward_epochs"]), float(params["reward_learning_rate"]))

    preferred = [p.second_action if p.choice == Choice.SECOND else p.first_action for p in memory
                 if p.choice != Choice.BOTH_BAD]
    previous = [history[-1].destination] if history else []
    candidates = np.concatenate([actions, np.stack([*preferred, *previous])]) if preferred or previous else actions
    start = candidates[int(np.argmax(rw.scores(model, candidates)))]
    destination = rw.ascend(model, start, int(params["destination_epochs"]),
                            float(params["destination_learning_rate"]))
    [picture] = generator.decode(destination[None])
    similarity = source.similarity([picture])
    record = SteeringRoundRecord(
        run_id=run_id, round=r, invocation_id=None, destination=destination, reward_state=rw.state_bytes(model),
        reward_losses=tuple(losses), heldout_accuracy=heldout,
        destination_reward=float(rw.scores(model, destination[None])[0]),
        target_similarity=similarity[0] if similarity else None, preferences=preferences,
    )
    return record, picture
