"""The report's figures: small matplotlib figures rendered by the Agg backend to PNG bytes.

Figures are deterministic (the same data give the same bytes): fixed sizes and dpi, no
software or date metadata in the PNG, a fixed colour per network (sorted by name), and no
random jitter. No pyplot: each figure is its own ``Figure`` with an Agg canvas, so nothing is
shared between calls or threads. Each figure function is drawn only when its data changed
(:mod:`.figure_cache`); changing this file changes every figure's key.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from tracer_pipeline.analysis.stuck import recurrence_matrix
from tracer_pipeline.reporting.data import RunData
from tracer_pipeline.reporting.figure_cache import cached_figure
from tracer_pipeline.reporting.measures import DivergenceGroup, RunMeasures, factor_level, trajectory_rows
from tracer_pipeline.status import RunStatus
from tracer_pipeline.tda.persistence import finite_bars

DPI = 100
WIDTH = 7.0  # inches: 700 px at DPI
STYLE = {"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7, "legend.fontsize": 6,
         "xtick.labelsize": 6, "ytick.labelsize": 6}
MAX_TIMELINE_ROWS = 60
MAX_HEATMAP_LABELS = 40
HEATMAP_LABEL_CHARS = 28
PROMPT_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
SYMLOG_LINEAR = 1e-3
THUMBNAIL_PX = 96
# Stuck marks in black and grey, so that they never take a network's colour.
EXACT_STYLE = {"color": "black", "lw": 2.5}
SEMANTIC_STYLE = {"color": "dimgray", "lw": 2.5, "linestyle": (0, (2, 1))}
# What a figure's pixels depend on besides its data: this drawing code and matplotlib's version.
CODE = Path(__file__).read_text(encoding="utf-8") + f"\nmatplotlib {matplotlib.__version__}"
cached = cached_figure(CODE)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # "Software" is the only metadata matplotlib writes by default; None leaves it out.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(height: float, width: float = WIDTH) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _network_colours(networks: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A fixed colour per network name (tab10 over the sorted names, cycling past ten)."""
    palette = matplotlib.colormaps["tab10"]
    return {name: palette(i % 10) for i, name in enumerate(sorted(set(networks)))}


def _network_legend(axes, colours: dict[str, tuple[float, ...]]) -> None:
    handles = [Line2D([], [], color=colour, label=name) for name, colour in colours.items()]
    axes.legend(handles=handles, loc="best", frameon=False)


def _short(run_id: str) -> str:
    return run_id[:8]


def _prompt_styles(prompts: Sequence[str]) -> dict[str, object]:
    """A fixed line style per prompt (sorted), so that runs of one network from different prompts
    can be told apart; styles cycle past ``len(PROMPT_STYLES)`` prompts."""
    return {p: PROMPT_STYLES[i % len(PROMPT_STYLES)] for i, p in enumerate(sorted(set(prompts)))}


@cached
def drift_figure(measures: Sequence[RunMeasures]) -> bytes:
    """Left: cosine distance of each output from the run's initial prompt (or image) per step,
    one line per run, coloured by network and dashed by prompt. Right: cosine distance between
    consecutive embedded outputs."""
    colours = _network_colours([m.run.network_name for m in measures])
    prompts = {m.run.run_id: factor_level(m.run, "prompt") or "" for m in measures}
    styles = _prompt_styles(list(prompts.values()))
    with matplotlib.rc_context(STYLE):
        figure = _figure(3.2)
        drift_axes, step_axes = figure.subplots(1, 2)
        # One collection of lines per panel, in run order: one artist per run cost ~10 ms a line
        # to draw, most of a 1,000-run report.
        drift = [(np.column_stack([m.steps, m.drift]), m) for m in measures if m.drift is not None]
        steps = [(np.column_stack([m.steps[1:], m.step_distance]), m) for m in measures if m.step_distance.size]
        for axes, lines in ((drift_axes, drift), (step_axes, steps)):
            if lines:
                axes.add_collection(LineCollection(
                    [line for line, _ in lines], colors=[colours[m.run.network_name] for _, m in lines],
                    linestyles=[styles[prompts[m.run.run_id]] for _, m in lines], linewidths=0.8, alpha=0.7))
                axes.autoscale_view()
        drift_axes.set(title="Drift from the initial prompt", xlabel="step", ylabel="cosine distance")
        step_axes.set(title="Step-to-step distance", xlabel="step", ylabel="cosine distance")
        _network_legend(drift_axes, colours)
        if len(styles) > 1:
            handles = [Line2D([], [], color="black", linestyle=style, lw=0.8, label=textwrap.shorten(p, 40))
                       for p, style in styles.items()]
            step_axes.legend(handles=handles, loc="best", frameon=False, title="prompt")
        return _png(figure)


@cached
def divergence_figure(groups: Sequence[DivergenceGroup]) -> bytes:
    """Mean pairwise cosine distance D(t) per group (log scale), runs with the same network and
    prompt across seeds on the left, with the same network and seed across prompts on the right."""
    colours = _network_colours([g.network for g in groups])
    with matplotlib.rc_context(STYLE):
        figure = _figure(2.8)
        panels = dict(zip(("seed", "prompt"), figure.subplots(1, 2, sharey=True), strict=True))
        titles = {"seed": "Across seeds (same network, prompt)", "prompt": "Across prompts (same network, seed)"}
        for kind, axes in panels.items():
            mine = [g for g in groups if g.kind == kind]
            for group in mine:
                axes.plot(group.steps, group.distance, color=colours[group.network], lw=0.9, alpha=0.8)
            # Log scale shows exponential growth as a line; symmetric-log keeps a zero D(t) (runs
            # that have not come apart) visible on a linear stretch below SYMLOG_LINEAR.
            if any(np.any(g.distance > 0) for g in mine):
                axes.set_yscale("symlog", linthresh=SYMLOG_LINEAR)
                axes.set_ylim(bottom=0)
            axes.set(title=titles[kind], xlabel="step")
        panels["seed"].set_ylabel("mean pairwise cosine distance D(t)")
        _network_legend(panels["seed"], colours)
        return _png(figure)


@cached
def persistence_diagrams_figure(runs: Sequence[RunData]) -> bytes:
    """Every run's persistence diagram, one panel per network, H0 and H1 overlaid (birth against
    death, Euclidean distance on the unit embeddings). H0's infinite bar is not drawn."""
    networks = sorted({run.network_name for run in runs})
    columns = min(3, len(networks))
    rows = -(-len(networks) // columns)
    top = max((float(bars.max()) for run in runs for dim in run.diagram
               if (bars := finite_bars(run.diagram, dim)).size), default=1.0) * 1.05
    with matplotlib.rc_context(STYLE):
        figure = _figure(2.4 * rows)
        grid = figure.subplots(rows, columns, squeeze=False).ravel()
        for axes, network in zip(grid, networks, strict=False):
            for dim, colour in ((0, "tab:blue"), (1, "tab:orange")):
                points = np.concatenate([finite_bars(run.diagram, dim) for run in runs if run.network_name == network])
                axes.scatter(points[:, 0], points[:, 1], s=6, color=colour, alpha=0.6, label=f"H{dim}",
                             linewidths=0)
            axes.plot([0, top], [0, top], color="grey", lw=0.6)
            # A small margin below 0: every H0 point is born at 0 and would sit on the axis.
            axes.set(title=network, xlabel="birth", ylabel="death", xlim=(-0.03 * top, top), ylim=(0, top))
            axes.legend(loc="lower right", frameon=False)
        for axes in grid[len(networks):]:
            axes.set_axis_off()
        return _png(figure)


def _factor_order(runs: Sequence[RunData]) -> list[int]:
    """Indices of ``runs`` ordered by network, then prompt, then seed, then registration order."""
    def key(index: int) -> tuple:
        run = runs[index]
        return (run.network_name, factor_level(run, "prompt") or "", run.seed, run.order)
    return sorted(range(len(runs)), key=key)


@cached
def distance_heatmap_figure(matrix: np.ndarray, runs: Sequence[RunData], title: str) -> bytes:
    """A distance matrix between runs as a heatmap, runs ordered by network, prompt and seed,
    with lines between networks (labels on each row when there are few runs)."""
    order = _factor_order(runs)
    ordered = np.asarray(matrix)[np.ix_(order, order)]
    size = min(6.0, 2.5 + 0.12 * len(runs))
    labelled = len(order) <= MAX_HEATMAP_LABELS
    with matplotlib.rc_context(STYLE):
        # Room for the row labels on the left and the column labels below (constrained layout).
        figure = _figure(size + (1.2 if labelled else 0), width=size + (3.4 if labelled else 1.8))
        axes = figure.subplots()
        image = axes.imshow(ordered, cmap="magma_r", interpolation="nearest")
        figure.colorbar(image, ax=axes, shrink=0.8)
        networks = [runs[i].network_name for i in order]
        for boundary in (i for i in range(1, len(order)) if networks[i] != networks[i - 1]):
            axes.axhline(boundary - 0.5, color="white", lw=0.8)
            axes.axvline(boundary - 0.5, color="white", lw=0.8)
        if labelled:
            # The network only where it tells runs apart; the prompt shortened, the seed in full.
            several = len(set(networks)) > 1
            labels = [(f"{runs[i].network_name} · " if several else "")
                      + textwrap.shorten(factor_level(runs[i], "prompt") or "", HEATMAP_LABEL_CHARS, placeholder="…")
                      + f" · s{runs[i].seed}" for i in order]
            axes.set_yticks(range(len(order)), labels, fontsize=5)
            axes.set_xticks(range(len(order)), labels, fontsize=5, rotation=90)
        else:
            axes.set(xticks=[], yticks=[])
        axes.set_title(title)
        return _png(figure)


@cached
def projection_figure(runs: Sequence[RunData]) -> bytes | None:
    """The runs' trajectories projected on the first two principal components of all their
    points (SVD of the centred points), coloured by step; None with fewer than two points.

    Each component's sign is fixed so that its largest loading is positive (SVD leaves it free),
    keeping the picture the same from one report to the next.
    """
    trajectories = [(run, trajectory_rows(run)) for run in runs if trajectory_rows(run).shape[0]]
    if sum(rows.shape[0] for _, rows in trajectories) < 2:
        return None
    points = np.concatenate([rows for _, rows in trajectories]).astype(np.float64)
    centre = points.mean(axis=0)
    _, singular, components = np.linalg.svd(points - centre, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(components.shape[0]), np.argmax(np.abs(components), axis=1)])
    components = components * signs[:, None]
    explained = singular[:2] ** 2 / max(float(np.sum(singular**2)), 1e-300)
    last_step = max(max(run.trajectory_seqs) for run, _ in trajectories)
    with matplotlib.rc_context(STYLE):
        figure = _figure(3.6, width=4.8)
        axes = figure.subplots()
        # Every run's path in one collection and every point in one scatter (in run order, paths
        # under points as before): one artist per run cost ~10 ms each to draw.
        paths = []
        for _, rows in trajectories:
            projected = (rows - centre) @ components.T
            y = projected[:, 1] if projected.shape[1] > 1 else np.zeros(len(projected))
            paths.append(np.column_stack([projected[:, 0], y]))
        axes.add_collection(LineCollection(paths, colors="lightgrey", linewidths=0.5, zorder=1))
        every = np.concatenate(paths)
        seqs = np.concatenate([run.trajectory_seqs for run, _ in trajectories])
        scatter = axes.scatter(every[:, 0], every[:, 1], c=seqs, cmap="viridis", vmin=0, vmax=max(last_step, 1), s=8,
                               linewidths=0, zorder=2)
        figure.colorbar(scatter, ax=axes, label="step")
        second = f"{explained[1]:.0%}" if explained.size > 1 else "0%"
        axes.set(title="Trajectories, first two principal components", xlabel=f"PC1 ({explained[0]:.0%})",
                 ylabel=f"PC2 ({second})")
        return _png(figure)


@cached
def stuck_timeline_figure(measures: Sequence[RunMeasures]) -> bytes:
    """One row per run (grouped by network): its stored steps, and from where it was exactly
    stuck (a repeat of an earlier output at the same network position; × marks the repeat) or
    semantically stuck. At most ``MAX_TIMELINE_ROWS`` rows."""
    shown = sorted(measures, key=lambda m: (m.run.network_name, m.run.order))[:MAX_TIMELINE_ROWS]
    colours = _network_colours([m.run.network_name for m in shown])
    with matplotlib.rc_context(STYLE):
        figure = _figure(1.0 + 0.16 * len(shown))
        axes = figure.subplots()
        for row, m in enumerate(shown):
            end = max(m.n_outputs - 1, 0)
            axes.plot([0, end], [row, row], color=colours[m.run.network_name], lw=1.5, solid_capstyle="butt")
            if m.semantic_start is not None:
                axes.plot([m.semantic_start, end], [row + 0.2, row + 0.2], **SEMANTIC_STYLE)
            if m.orbit is not None:
                axes.plot([m.orbit.start, end], [row - 0.2, row - 0.2], **EXACT_STYLE)
                axes.scatter([m.orbit.detected_at], [row - 0.2], marker="x", color="black", s=12, zorder=3)
            if m.run.status == RunStatus.FAILED:
                axes.scatter([end], [row], marker="|", color="black", s=30)
        axes.set_yticks(range(len(shown)), [f"{_short(m.run.run_id)} s{m.run.seed}" for m in shown], fontsize=5)
        axes.invert_yaxis()
        axes.set(xlabel="step", title="When each run became stuck")
        handles = [Line2D([], [], color=c, label=name) for name, c in colours.items()]
        handles += [Line2D([], [], **EXACT_STYLE, label="exactly stuck (periodic orbit)"),
                    Line2D([], [], **SEMANTIC_STYLE, label="semantically stuck")]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _png(figure)


@cached
def recurrence_figure(runs: Sequence[RunData]) -> bytes:
    """Recurrence matrices R_ij = cosine similarity of steps i and j of one or two runs."""
    with matplotlib.rc_context(STYLE):
        figure = _figure(3.0, width=3.2 * len(runs) + 0.6)
        for axes, run in zip(np.atleast_1d(figure.subplots(1, len(runs))), runs, strict=True):
            rows = trajectory_rows(run)
            image = axes.imshow(recurrence_matrix(rows), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest",
                                origin="lower")
            axes.set(title=f"{_short(run.run_id)} · {run.network_name} · seed {run.seed}", xlabel="row (embedded step)",
                     ylabel="row (embedded step)")
        figure.colorbar(image, ax=figure.axes, shrink=0.8, label="cosine similarity")
        return _png(figure)


@dataclass(frozen=True)
class ContactRow:
    """One row of a contact sheet: a heading, a few (step, image) pairs and a caption."""

    heading: str
    images: tuple[tuple[int, Image.Image], ...]
    caption: str | None


@cached
def contact_sheet_figure(rows: Sequence[ContactRow], columns: int = 6, label: str = "step") -> bytes:
    """Rows of thumbnails (at most ``columns`` per row, each labelled "<label> <number>"), each row
    under a heading and above its caption (wrapped, at most two lines)."""
    columns = max(1, min(columns, max((len(row.images) for row in rows), default=1)))
    cell, heading_h, caption_h = 1.0, 0.25, 0.4
    row_h = heading_h + cell + caption_h
    width = columns * cell + 0.2
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(width, row_h * len(rows)), dpi=DPI)
        FigureCanvasAgg(figure)
        height = row_h * len(rows)
        for r, row in enumerate(rows):
            top = height - r * row_h
            figure.text(0.1 / width, (top - 0.05) / height, row.heading, va="top", fontsize=6, weight="bold")
            for c, (seq, image) in enumerate(row.images[:columns]):
                axes = figure.add_axes(((0.1 + c * cell + 0.03) / width, (top - heading_h - cell + 0.1) / height,
                                        (cell - 0.06) / width, (cell - 0.12) / height))
                thumbnail = image.convert("RGB")
                thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
                axes.imshow(np.asarray(thumbnail))
                axes.set_axis_off()
                axes.set_title(f"{label} {seq}", fontsize=5, pad=1)
            caption = "\n".join(textwrap.wrap(row.caption or "(no caption)", width=max(30, int(columns * 18)),
                                              max_lines=2, placeholder=" …"))
            figure.text(0.1 / width, (top - heading_h - cell) / height, caption, va="top", fontsize=5,
                        style="italic")
        return _png(figure)


@cached
def factor_effects_figure(labels: Sequence[str], factors: Sequence[str], values: np.ndarray,
                          too_few: np.ndarray) -> bytes:
    """A grid of effect sizes: one row per outcome (eta² of a feature, or PERMANOVA R²), one
    column per factor; blank where undefined, and marked "*" where too few runs back the value."""
    with matplotlib.rc_context(STYLE):
        figure = _figure(0.8 + 0.3 * len(labels), width=5.5)
        axes = figure.subplots()
        image = axes.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                text = f"{value:.2f}{'*' if too_few[i, j] else ''}"
                axes.text(j, i, text, ha="center", va="center", fontsize=6,
                          color="white" if value > 0.6 else "black")
        axes.set_xticks(range(len(factors)), factors)
        axes.set_yticks(range(len(labels)), labels)
        axes.set_title("Share of variation explained by each factor (* too few runs)")
        figure.colorbar(image, ax=axes, shrink=0.8)
        return _png(figure)


def cluster_timeline_figure(runs: Sequence[tuple[RunData, Sequence[tuple[int, int]]]]) -> bytes:
    """One row per run (at most ``MAX_TIMELINE_ROWS``, grouped by network): the cluster of each of
    its outputs by step, one colour per cluster, noise left white."""
    shown = sorted(runs, key=lambda item: (item[0].network_name, item[0].order))[:MAX_TIMELINE_ROWS]
    labels = sorted({label for _, steps in shown for _, label in steps if label >= 0})
    palette = matplotlib.colormaps["tab20"]
    colours = {label: palette(i % 20) for i, label in enumerate(labels)}
    last = max((seq for _, steps in shown for seq, _ in steps), default=0)
    # One image of cluster indices (noise masked, left white), not a patch per output: at 60 rows
    # of 1,000 steps, 60,000 patches took seconds to draw.
    index = {label: i for i, label in enumerate(labels)}
    grid = np.full((len(shown), last + 1), -1)
    for row, (_, steps) in enumerate(shown):
        for seq, label in steps:
            if label >= 0:
                grid[row, seq] = index[label]
    with matplotlib.rc_context(STYLE):
        figure = _figure(1.0 + 0.16 * len(shown))
        axes = figure.subplots()
        if labels:
            cmap = ListedColormap([colours[label] for label in labels])
            axes.imshow(np.ma.masked_less(grid, 0), cmap=cmap, vmin=-0.5, vmax=len(labels) - 0.5,
                        interpolation="nearest", aspect="auto", extent=(-0.5, last + 0.5, len(shown) - 0.5, -0.5))
        axes.set(xlim=(-0.5, last + 0.5), ylim=(len(shown) - 0.5, -0.5), xlabel="step",
                 title="Cluster of each output (white: between clusters)")
        axes.set_yticks(range(len(shown)), [f"{_short(run.run_id)} s{run.seed}" for run, _ in shown], fontsize=5)
        handles = [Rectangle((0, 0), 1, 1, color=colours[label], label=f"cluster {label}") for label in labels[:20]]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _png(figure)
