"""Steering runs: does the destination move toward its target as the preferences accumulate?

For each steering run of the experiment: the destination's cosine similarity to the target's
reference embedding (the run's initial input at sequence −1, by the report's embedding model) at
the first and last round and its gain, the similarity by the feedback's own feature space, the
reward model's held-out accuracy and loss, and the curves of all of them by round.
"""

from __future__ import annotations

import numpy as np

from tracer_pipeline.reporting import steering_plots as plots
from tracer_pipeline.reporting.data import ExperimentData, Report, RunData, SteeringData
from tracer_pipeline.reporting.sections.format import Row, figure, markdown_table, mean, num, plural


def similarity_by_round(run: RunData) -> np.ndarray:
    """Cosine of each embedded output to the run's reference (its target), in sequence order;
    empty without a reference."""
    if run.reference is None or not len(run.trajectory):
        return np.zeros(0)
    return (run.trajectory.astype(np.float64) @ run.reference.astype(np.float64)).astype(np.float64)


def _finite(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _summary(run: SteeringData, similarity: np.ndarray) -> Row:
    return {
        "run_id": run.run_id, "generator": run.generator, "target": run.target, "seed": run.seed,
        "rounds": len(run.reward_loss),
        "first_similarity": float(similarity[0]) if similarity.size else None,
        "last_similarity": float(similarity[-1]) if similarity.size else None,
        "gain": float(similarity[-1] - similarity[0]) if similarity.size else None,
        "feedback_first": float(run.feedback_similarity[0]) if len(run.feedback_similarity) else None,
        "feedback_last": float(run.feedback_similarity[-1]) if len(run.feedback_similarity) else None,
        "heldout_accuracy": _finite(run.heldout_accuracy[1:]),  # round 0's model is untrained
        "last_reward_loss": float(run.reward_loss[-1]) if len(run.reward_loss) else None,
    }


def _by_round(run: SteeringData, similarity: np.ndarray) -> list[Row]:
    def value(values: np.ndarray, r: int) -> float | None:
        return float(values[r]) if r < len(values) and np.isfinite(values[r]) else None

    return [{"run_id": run.run_id, "round": r, "similarity": value(similarity, r),
             "feedback_similarity": value(run.feedback_similarity, r),
             "destination_reward": value(run.destination_reward, r), "reward_loss": value(run.reward_loss, r),
             "heldout_accuracy": value(run.heldout_accuracy, r)} for r in range(len(run.reward_loss))]


def section(report: Report, data: ExperimentData) -> list[str]:
    """Adds tables ``steering`` (one row per steering run) and ``steering_by_round``; nothing when
    the experiment has no steering runs."""
    runs = [run for run in data.steering if len(run.reward_loss)]
    if not runs:
        return []
    own = {run.run_id: run for run in data.runs}
    similarity = {run.run_id: similarity_by_round(own[run.run_id]) if run.run_id in own else np.zeros(0)
                  for run in runs}
    rows = [_summary(run, similarity[run.run_id]) for run in runs]
    report.tables["steering"] = rows
    report.tables["steering_by_round"] = [row for run in runs for row in _by_round(run, similarity[run.run_id])]
    gains = [row["gain"] for row in rows if row["gain"] is not None]
    moved = sum(gain > 0 for gain in gains)
    lines = ["## 7. Steering runs: does the output move toward its target?", "",
             f"{plural(len(runs), 'steering run')} ({', '.join(sorted({r.generator for r in runs}))}), "
             f"{plural(max(len(r.reward_loss) for r in runs), 'round')} at most. Each round asks for pairwise "
             "preferences between the actions the reward model scores highest, trains the reward model on every "
             "answer so far, and moves the destination by gradient ascent on the reward; the destination's picture "
             "is the round's output. Similarity is the cosine between an output's embedding and the target's "
             f"reference embedding (the run's initial input, at sequence −1) by {data.embedding_model}.", ""]
    if gains:
        lines.append(f"**Toward the target:** {moved} of {len(gains)} runs ended closer to their target than "
                     f"their first round; mean gain {num(mean(gains))} (from {num(min(gains))} to "
                     f"{num(max(gains))}).")
    else:
        lines.append(f"**Toward the target:** not measurable: {data.embedding_model} holds no reference "
                     "embedding of these runs' targets (a caption needs a model that embeds text).")
    lines += markdown_table(rows, [("run_id", "run"), ("generator", "generator"), ("target", "target"),
                                   ("seed", "seed"), ("rounds", "rounds"), ("first_similarity", "similarity at 0"),
                                   ("last_similarity", "similarity at last"), ("gain", "gain"),
                                   ("feedback_last", "feedback similarity at last"),
                                   ("heldout_accuracy", "held-out accuracy (rounds ≥ 1)"),
                                   ("last_reward_loss", "last reward loss")], "steering")
    lines += figure(report, "steering_curves.png",
                    plots.curves_figure(runs, similarity, data.embedding_model), "steering curves")
    if len(runs) > plots.MAX_RUNS:
        lines.append(f"*The figure shows the first {plots.MAX_RUNS} runs; the tables hold all {len(runs)}.*")
    lines += ["", "*What it means:* a similarity that rises over rounds is the search finding images nearer the "
              "target; held-out accuracy is how often the reward model, before training on a round's answers, "
              "ranked that round's pairs as the user did (0.5 is chance). *What it cannot say:* with the artificial "
              "user judging by the same embedding model as this report, a rising similarity shows the search "
              "optimises what the user measures, not that a person would agree; a target caption is placed in the "
              "image space by the model's text embedding, so the similarity of even a perfect picture is below 1."]
    return lines
