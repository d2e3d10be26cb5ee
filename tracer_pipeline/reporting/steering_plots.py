"""The steering section's figure: similarity to the target by round, and the reward model's
curves. Deterministic, like every report figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np

from tracer_pipeline.reporting.data import SteeringData
from tracer_pipeline.reporting.plots import STYLE, _figure, _png

MAX_RUNS = 10  # lines per panel: beyond this the legend says nothing


def curves_figure(runs: Sequence[SteeringData], similarity: dict[str, np.ndarray], embedding_model: str) -> bytes:
    """Four panels: the destination's cosine similarity to the target's reference embedding by
    ``embedding_model``; the destination's reward; the reward model's last-epoch loss; its
    held-out ranking accuracy. One line per run."""
    palette = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(STYLE):
        figure = _figure(3.0)
        panels = figure.subplots(1, 4)
        for k, run in enumerate(runs[:MAX_RUNS]):
            colour = palette(k % 10)
            label = f"{run.target[:36]} · seed {run.seed}"
            values = similarity.get(run.run_id)
            if values is not None and len(values):
                panels[0].plot(np.arange(len(values)), values, color=colour, lw=1, label=label)
            rounds = np.arange(len(run.reward_loss))
            panels[1].plot(rounds, run.destination_reward, color=colour, lw=1)
            panels[2].plot(rounds, run.reward_loss, color=colour, lw=1)
            panels[3].plot(rounds, run.heldout_accuracy, color=colour, lw=1, marker=".", ms=3)
        titles = (f"similarity to target ({embedding_model})", "destination's reward",
                  "reward-model loss", "held-out accuracy")
        ylabels = ("cosine", "reward", "Bradley–Terry loss, last epoch", "share of pairs ranked as answered")
        for ax, title, ylabel in zip(panels, titles, ylabels, strict=True):
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.set_xlabel("round")
        panels[3].set_ylim(-0.05, 1.05)
        if len(runs) <= MAX_RUNS:
            figure.legend(loc="outside lower center", ncols=3, frameon=False, fontsize="small")
        return _png(figure)
