"""The collapse section's figures: cross-accuracy heatmaps, label frequencies, diversity and loss
curves, and grids of samples over generations. Deterministic, like every report figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw

from tracer_pipeline.analysis.collapse import normalised_entropy
from tracer_pipeline.models.base import image_to_png
from tracer_pipeline.reporting.data import GenerationsData
from tracer_pipeline.reporting.plots import STYLE, WIDTH, _figure, _png

MAX_PANELS = 4  # runs drawn per figure; the tables hold every run
MAX_GRID_COLUMNS = 8
GRID_PX = 192
ANNOTATE_UP_TO = 12  # generations: beyond this the heatmap's cells are too small for numbers


def _title(run: GenerationsData) -> str:
    return f"{run.run_id[:8]} {run.generator} seed {run.seed}"


def diversity(run: GenerationsData, classifier: str = "initial") -> np.ndarray:
    """Normalised label entropy per generation (:mod:`tracer_pipeline.analysis.collapse`)."""
    return np.array([normalised_entropy(c) for c in run.label_counts[classifier]])


def cross_accuracy_figure(runs: Sequence[GenerationsData]) -> bytes:
    shown = runs[:MAX_PANELS]
    with matplotlib.rc_context(STYLE):
        figure = _figure(2.6, min(WIDTH, 2.6 * len(shown) + 0.6))
        axes = figure.subplots(1, len(shown), squeeze=False)[0]
        for ax, run in zip(axes, shown, strict=True):
            matrix = run.cross_accuracy
            image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", origin="upper")
            if len(matrix) <= ANNOTATE_UP_TO:
                for (i, j), value in np.ndenumerate(matrix):
                    if np.isfinite(value):
                        ax.text(j, i, f"{value:.2f}"[1:] if value < 1 else "1", ha="center", va="center",
                                fontsize=5, color="white" if value < 0.6 else "black")
            ax.set_xlabel("evaluated on generation")
            ax.set_ylabel("classifier of generation")
            ax.set_title(_title(run))
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="accuracy")
        return _png(figure)


def label_frequencies_figure(runs: Sequence[GenerationsData]) -> bytes:
    shown = runs[:MAX_PANELS]
    with matplotlib.rc_context(STYLE):
        figure = _figure(2.4 * len(shown))
        axes = figure.subplots(len(shown), 2, squeeze=False)
        palette = matplotlib.colormaps["tab10"]
        for row, run in zip(axes, shown, strict=True):
            for ax, classifier in zip(row, ("initial", "current"), strict=True):
                counts = run.label_counts[classifier].astype(np.float64)
                shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
                generations = np.arange(len(shares))
                ax.stackplot(generations, shares.T, labels=run.label_names,
                             colors=[palette(k % 10) for k in range(len(run.label_names))])
                ax.set_xlim(0, max(1, len(shares) - 1))
                ax.set_ylim(0, 1)
                ax.set_xlabel("generation")
                ax.set_ylabel("share of samples")
                who = "generation 0's classifier" if classifier == "initial" else "the labels trained on"
                ax.set_title(f"{_title(run)}: labels by {who}")
            row[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        return _png(figure)


def curves_figure(runs: Sequence[GenerationsData], snaps: dict[str, int | None]) -> bytes:
    palette = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(STYLE):
        figure = _figure(2.4)
        ax_div, ax_gen, ax_clf = figure.subplots(1, 3)
        for k, run in enumerate(runs):
            colour = palette(k % 10)
            generations = np.arange(len(run.generator_loss))
            ax_div.plot(generations, diversity(run), color=colour, lw=1, label=_title(run))
            ax_div.plot(generations, diversity(run, "current"), color=colour, lw=0.8, linestyle=":")
            snap = snaps.get(run.run_id)
            if snap is not None:
                ax_div.axvline(snap, color=colour, lw=0.6, linestyle="--")
            ax_gen.plot(generations, run.generator_loss, color=colour, lw=1)
            ax_clf.plot(generations, run.classifier_loss, color=colour, lw=1)
        ax_div.set_ylim(-0.02, 1.02)
        ax_div.set_title("label diversity")
        ax_div.set_ylabel("normalised entropy")
        ax_gen.set_title("generator loss")
        ax_gen.set_ylabel("negative ELBO per sample, last epoch")
        ax_clf.set_title("classifier loss")
        ax_clf.set_ylabel("cross-entropy, last epoch")
        for ax in (ax_div, ax_gen, ax_clf):
            ax.set_xlabel("generation")
        if len(runs) <= 10:
            ax_div.legend(loc="lower left", frameon=False)
        return _png(figure)


def grids_figure(runs: Sequence[GenerationsData]) -> bytes | None:
    """Each run's grids of samples at up to eight generations, first and last included."""
    shown = [run for run in runs[:MAX_PANELS] if run.grids]
    if not shown:
        return None
    columns = min(MAX_GRID_COLUMNS, max(len(run.grids) for run in shown))
    label_px, header_px = 150, 16
    row_px = GRID_PX + header_px + 4
    sheet = Image.new("RGB", (label_px + columns * (GRID_PX + 4), len(shown) * row_px), "white")
    draw = ImageDraw.Draw(sheet)
    for r, run in enumerate(shown):
        picks = np.unique(np.rint(np.linspace(0, len(run.grids) - 1, min(columns, len(run.grids)))).astype(int))
        y = header_px + r * row_px
        draw.text((4, y + GRID_PX // 2 - 6), _title(run), fill="black")
        for c, g in enumerate(picks):
            x = label_px + c * (GRID_PX + 4)
            sheet.paste(run.grids[g].resize((GRID_PX, GRID_PX), Image.Resampling.BOX), (x, y))
            draw.text((x + 2, y - 13), f"generation {g}", fill="black")
    return image_to_png(sheet)
