"""Question 2: is it stuck? Exact periodic orbits, semantic stuckness, and collapse of diversity
across a network's runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.stuck import diversity_collapse
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.data import Report, RunData
from tracer_pipeline.reporting.measures import (
    SEMANTIC_THRESHOLD,
    SEMANTIC_WINDOW,
    RunMeasures,
    aligned_trajectories,
    factor_level,
    trajectory_rows,
)
from tracer_pipeline.reporting.sections.format import (
    TOO_FEW,
    Row,
    figure,
    markdown_table,
    median,
    num,
    plural,
    short_id,
)
from tracer_pipeline.status import RunStatus

# A network's diversity has collapsed once the mean distance between its runs falls to this
# fraction of its peak.
COLLAPSE_FRACTION = 0.5


def _stuck_fraction_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    """Table ``stuck_fractions``: how many runs of each network and of each prompt got stuck, and
    from which step."""
    rows: list[Row] = []
    for grouping in ("network", "prompt"):
        levels = sorted({factor_level(m.run, grouping) or "" for m in measures})
        for level in levels:
            mine = [m for m in measures if (factor_level(m.run, grouping) or "") == level]
            stuck = [m for m in mine if m.stuck_start is not None]
            rows.append({
                "grouping": grouping, "level": level, "runs": len(mine),
                "exactly_stuck": sum(m.orbit is not None for m in mine),
                "semantically_stuck": sum(m.semantic_start is not None for m in mine),
                "stuck": len(stuck), "stuck_fraction": len(stuck) / len(mine),
                "median_stuck_start": median([m.stuck_start for m in stuck]),
            })
    return rows


def _collapse_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    """Table ``diversity_collapse``: per network, whether its runs converged on similar outputs.
    Failed runs are left out (their prefix would cut the common steps short), and a network with
    fewer than two runs or two common steps is marked too few."""
    rows: list[Row] = []
    for network in sorted({m.run.network_name for m in measures}):
        group = [m for m in measures if m.run.network_name == network and m.run.status != RunStatus.FAILED
                 and trajectory_rows(m.run).shape[0]]
        steps, trajectories = aligned_trajectories(group) if len(group) >= 2 else (np.zeros(0), [])
        if steps.size < 2:
            rows.append({"network": network, "runs": len(group), "common_steps": int(steps.size),
                         "peak_step": None, "peak_distance": None, "collapsed_at": None, "final_distance": None,
                         "note": TOO_FEW})
            continue
        collapse = diversity_collapse(trajectories, COLLAPSE_FRACTION)
        rows.append({
            "network": network, "runs": len(group), "common_steps": int(steps.size),
            "peak_step": int(steps[collapse.peak_step]), "peak_distance": float(collapse.mean_distance.max()),
            "collapsed_at": None if collapse.collapsed_at is None else int(steps[collapse.collapsed_at]),
            "final_distance": float(collapse.mean_distance[-1]), "note": None,
        })
    return rows


def _representatives(measures: Sequence[RunMeasures]) -> list[RunData]:
    """Up to two runs for recurrence matrices: the earliest-stuck run and the longest run never
    stuck (or a second stuck run), each with at least two embedded outputs."""
    usable = [m for m in measures if trajectory_rows(m.run).shape[0] >= 2]
    stuck = sorted((m for m in usable if m.stuck_start is not None), key=lambda m: (m.stuck_start, m.run.order))
    free = sorted((m for m in usable if m.stuck_start is None), key=lambda m: (-m.n_outputs, m.run.order))
    return [m.run for m in (stuck[:1] + free[:1] + stuck[1:2] + free[1:2])[:2]]


def section(report: Report, measures: Sequence[RunMeasures]) -> list[str]:
    """Exact and semantic stuckness with their fractions per network and prompt, then collapse of
    diversity; adds tables ``stuck_fractions`` and ``diversity_collapse``."""
    lines = ["", "## 2. Is it stuck?", ""]
    n = len(measures)
    exact = [m for m in measures if m.orbit is not None]
    semantic = [m for m in measures if m.semantic_start is not None]
    fixed = sum(m.orbit.network_cycles == 1 for m in exact if m.orbit)
    stopped = sum(m.run.status == RunStatus.STUCK for m in measures)
    lines.append(
        f"**Exactly stuck:** **{len(exact)} of {n}** runs entered a periodic orbit — {fixed} a fixed point of the "
        f"network, {len(exact) - fixed} a longer cycle — from a median step "
        f"{num(median([m.orbit.start for m in exact if m.orbit]))} (an output identical, byte for byte, to an "
        "earlier output at the same position in the network; every run is a deterministic map of its seed, so "
        f"from there on every output repeats). The engine stopped {stopped} of them at the repeat "
        "(status \"stuck\").")
    lines.append(
        f"\n**Semantically stuck:** **{len(semantic)} of {n}** runs, from a median step "
        f"{num(median([m.semantic_start for m in semantic]))} (each output at least {SEMANTIC_THRESHOLD} "
        f"cosine-similar to the previous output of the same model, for {SEMANTIC_WINDOW} comparisons in a row).")
    fractions = _stuck_fraction_rows(measures)
    report.tables["stuck_fractions"] = fractions
    lines += markdown_table(fractions, [("grouping", "by"), ("level", "level"), ("runs", "runs"),
                                        ("exactly_stuck", "exact"), ("semantically_stuck", "semantic"),
                                        ("stuck_fraction", "stuck fraction"),
                                        ("median_stuck_start", "median onset")], "stuck_fractions")
    collapse = _collapse_rows(measures)
    report.tables["diversity_collapse"] = collapse
    measured = [row for row in collapse if row["note"] is None]
    if measured:
        collapsed = [row for row in measured if row["collapsed_at"] is not None]
        lines.append(
            f"**Collapse of diversity:** in **{len(collapsed)} of {plural(len(measured), 'network')}** with two or "
            f"more runs, the mean pairwise distance between the network's runs at the same step fell to "
            f"{COLLAPSE_FRACTION:.0%} of its peak or below (the runs converged on similar outputs).")
        lines += markdown_table(collapse, [("network", "network"), ("runs", "runs"), ("common_steps", "steps"),
                                           ("peak_step", "peak step"), ("peak_distance", "peak D"),
                                           ("collapsed_at", "collapsed at"), ("final_distance", "final D")],
                                "diversity_collapse")
    else:
        lines.append(f"**Collapse of diversity:** {TOO_FEW} — no network has two runs with common steps.")
    if measures:
        lines += figure(report, "stuck_timeline.png", plots.stuck_timeline_figure(measures), "stuck timeline")
    representatives = _representatives(measures)
    if representatives:
        lines += figure(report, "recurrence.png", plots.recurrence_figure(representatives), "recurrence")
        lines.append(f"Recurrence matrices of {', '.join(short_id(r.run_id) for r in representatives)}: a bright "
                     "block from some step on means every later output looks alike; periodic stripes mean a cycle.")
    lines.append(
        "\n*What it means:* an exact repeat is certain and final — the run will only replay its cycle; semantic "
        "stuckness means the outputs stopped changing in meaning though not in every pixel or word. *What it "
        "cannot say:* a run not stuck within its length may still become stuck later (its time to stuck is "
        f"censored), and the semantic threshold ({SEMANTIC_THRESHOLD}) is a choice, not a law; fractions from a few "
        "runs per network or prompt are rough.")
    return lines
