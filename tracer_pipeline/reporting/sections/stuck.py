"""Question 2: is it stuck? Exact periodic orbits, semantic stuckness, and collapse of diversity
across a network's runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows
from tracer_pipeline.analysis.stuck import diversity_collapse
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.compare import MAX_ALL_PAIRS_RUNS, pair_sample
from tracer_pipeline.reporting.data import Report, RunData
from tracer_pipeline.reporting.findings import (
    MIN_POINTS,
    Finding,
    all_unsuited,
    notice,
    supported,
    unsupported,
)
from tracer_pipeline.reporting.measures import (
    MODALITIES,
    SEMANTIC_THRESHOLD,
    SEMANTIC_WINDOW,
    RunMeasures,
    aligned_trajectories,
    factor_level,
    row_modalities,
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
PAIR_BLOCK = 100_000  # pairs of first outputs compared at a time


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
    """Up to two runs for recurrence matrices, the longest of their kind (a recurrence matrix of
    a run stopped after two outputs shows nothing): the longest stuck run and the longest run
    never stuck, or the two longest of one kind, each with at least two embedded outputs."""
    usable = sorted((m for m in measures if trajectory_rows(m.run).shape[0] >= 2),
                    key=lambda m: (-trajectory_rows(m.run).shape[0], m.run.order))
    stuck = [m for m in usable if m.stuck_start is not None]
    free = [m for m in usable if m.stuck_start is None]
    return [m.run for m in (stuck[:1] + free[:1] + stuck[1:2] + free[1:2])[:2]]


def first_output_similarity(measures: Sequence[RunMeasures]) -> dict[str, float | None]:
    """Null baseline for semantic stuckness, per modality: the median cosine similarity between
    the first outputs of runs started from different prompts. When even those are at least
    ``SEMANTIC_THRESHOLD`` alike, the embedding model cannot tell unrelated outputs of that
    modality apart, and "each output like the last" is its blindness, not stuckness.

    The pairs are those among at most ``MAX_ALL_PAIRS_RUNS`` runs (``reporting.compare.pair_sample``,
    a fixed sample beyond): 10,000 runs would make 50 million pairs."""
    result: dict[str, float | None] = {}
    sample = {r.run_id for r in pair_sample([m.run for m in measures])}
    for modality in MODALITIES:
        prompts, rows = [], []
        for m in (m for m in measures if m.run.run_id in sample):
            kinds = row_modalities(m.run)
            index = next((i for i, kind in enumerate(kinds) if kind == modality), None)
            if index is not None:
                prompts.append(factor_level(m.run, "prompt"))
                rows.append(trajectory_rows(m.run)[index])
        levels = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        codes = np.array([levels[p] for p in prompts], dtype=np.int64)
        first, second = np.triu_indices(len(rows), k=1)
        different = codes[first] != codes[second]
        first, second = first[different], second[different]
        if not first.size:
            result[modality] = None
            continue
        units = unit_rows(np.stack(rows).astype(np.float64))
        result[modality] = float(np.median(np.concatenate([
            np.einsum("pd,pd->p", units[first[k:k + PAIR_BLOCK]], units[second[k:k + PAIR_BLOCK]])
            for k in range(0, first.size, PAIR_BLOCK)])))
    return result


def stuck_finding(measures: Sequence[RunMeasures]) -> Finding:
    """Exact and semantic stuckness. Exact repeats need no embedding and are certain in fixed
    seed mode; semantic stuckness is measured only on runs the embedder is suited to, and only
    when it can tell the first outputs of different prompts apart (``first_output_similarity``)."""
    fixed_mode = [m for m in measures if m.run.seed_mode == "fixed"]
    exact = [m for m in fixed_mode if m.orbit is not None]
    suited = [m for m in measures if m.run.embedder_unsuited is None]
    similarity = first_output_similarity(suited)
    blind = [modality for modality, value in similarity.items() if value is not None and value >= SEMANTIC_THRESHOLD]
    semantic_reason = None
    if not suited:
        semantic_reason = all_unsuited([m.run.embedder_unsuited for m in measures])
    elif blind:
        semantic_reason = (f"the embedding model cannot tell apart the first {' or '.join(blind)} outputs of runs "
                           f"started from different prompts (median cosine similarity "
                           f"{', '.join(num(similarity[b]) for b in blind)} ≥ {SEMANTIC_THRESHOLD})")
    semantic = [m for m in suited if m.semantic_start is not None] if semantic_reason is None else []
    figures = {
        "runs": len(measures), "fixed_seed_runs": len(fixed_mode),
        "per_invocation_seed_runs": len(measures) - len(fixed_mode),
        "exactly_stuck": len(exact), "fixed_points": sum(m.orbit.network_cycles == 1 for m in exact if m.orbit),
        "stopped_at_repeat": sum(m.run.status == RunStatus.STUCK for m in measures),
        "median_exact_start": median([m.orbit.start for m in exact if m.orbit]),
        "semantic_valid": semantic_reason is None, "semantic_reason": semantic_reason,
        "semantic_runs": len(suited) if semantic_reason is None else 0,
        "semantically_stuck": len(semantic),
        "median_semantic_start": median([m.semantic_start for m in semantic]),
        "first_output_similarity": similarity,
    }
    if not any(m.n_outputs for m in measures):
        return unsupported("no run has stored outputs yet", **figures)
    return supported(**figures)


def recurrence_finding(representatives: Sequence[RunData], measures: Sequence[RunMeasures]) -> Finding:
    """Recurrence matrices say something only for runs of ``MIN_POINTS`` embedded outputs or more."""
    lengths = [int(trajectory_rows(r).shape[0]) for r in representatives]
    figures = {"run_ids": [r.run_id for r in representatives], "embedded_outputs": lengths}
    if blind := all_unsuited([m.run.embedder_unsuited for m in measures]):
        return unsupported(blind, **figures)
    if not representatives:
        return unsupported("no run has two embedded outputs", **figures)
    if max(lengths) < MIN_POINTS:
        return unsupported(f"the longest run has {max(lengths)} embedded outputs; a recurrence matrix needs "
                           f"{MIN_POINTS} or more to show a block or a stripe", **figures)
    return supported(**figures)


def section(report: Report, measures: Sequence[RunMeasures]) -> list[str]:
    """Exact and semantic stuckness with their fractions per network and prompt, then collapse of
    diversity and recurrence; adds findings ``stuck`` and ``recurrence`` and tables
    ``stuck_fractions`` and ``diversity_collapse``."""
    lines = ["", "## 2. Is it stuck?", ""]
    stuck = report.sections["stuck"] = stuck_finding(measures)
    f = stuck.figures
    lines += notice(stuck)
    if stuck.valid:
        lines.append(
            f"**Exactly stuck:** **{f['exactly_stuck']} of {f['fixed_seed_runs']}** runs with a fixed seed entered a "
            f"periodic orbit — {f['fixed_points']} a fixed point of the network, "
            f"{f['exactly_stuck'] - f['fixed_points']} a longer cycle — from a median step "
            f"{num(f['median_exact_start'])} (an output identical, byte for byte, to an earlier output at the same "
            "position in the network; with a fixed seed every run is a deterministic map, so from there on every "
            f"output repeats). The engine stopped {f['stopped_at_repeat']} of them at the repeat (status \"stuck\").")
        if f["per_invocation_seed_runs"]:
            lines.append(f"\n{plural(f['per_invocation_seed_runs'], 'run')} draw a new seed at every invocation: "
                         "an exact repeat there says nothing about the next output, so they are never counted as "
                         "exactly stuck and are not stopped.")
        if f["semantic_valid"]:
            line = (f"\n**Semantically stuck:** **{f['semantically_stuck']} of {f['semantic_runs']}** runs, from a "
                    f"median step {num(f['median_semantic_start'])} (each output at least {SEMANTIC_THRESHOLD} "
                    f"cosine-similar to the previous output of the same model, for {SEMANTIC_WINDOW} comparisons in "
                    "a row).")
            baseline = [f"{num(v)} ({k})" for k, v in f["first_output_similarity"].items() if v is not None]
            if baseline:
                line += (" *Baseline:* the first outputs of runs from different prompts are a median "
                         f"{', '.join(baseline)} alike"
                         + (f" (pairs among a fixed sample of {MAX_ALL_PAIRS_RUNS} of the {f['semantic_runs']} runs)."
                            if f["semantic_runs"] > MAX_ALL_PAIRS_RUNS else "."))
            lines.append(line)
        else:
            lines.append(f"\n**Semantically stuck:** not measured — {f['semantic_reason']}.")
    fractions = _stuck_fraction_rows(measures)
    report.tables["stuck_fractions"] = fractions
    lines += markdown_table(fractions, [("grouping", "by"), ("level", "level"), ("runs", "runs"),
                                        ("exactly_stuck", "exact"), ("semantically_stuck", "semantic"),
                                        ("stuck_fraction", "stuck fraction"),
                                        ("median_stuck_start", "median onset")], "stuck_fractions")
    suited = [m for m in measures if m.run.embedder_unsuited is None]
    collapse = _collapse_rows(suited)
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
        lines.append(f"**Collapse of diversity:** {TOO_FEW} — no network has two runs (of outputs the embedding "
                     "model is suited to) with common steps.")
    if measures:
        lines += figure(report, "stuck_timeline.png", plots.stuck_timeline_figure(measures), "stuck timeline")
    representatives = _representatives(suited)
    recurrence = report.sections["recurrence"] = recurrence_finding(representatives, measures)
    lines += notice(recurrence)
    if recurrence.valid:
        lines += figure(report, "recurrence.png", plots.recurrence_figure(representatives), "recurrence")
        lines.append(f"Recurrence matrices of {', '.join(short_id(r.run_id) for r in representatives)} (the longest "
                     "stuck run and the longest run never stuck): a bright block from some step on means every later "
                     "output looks alike; periodic stripes mean a cycle.")
    lines.append(
        "\n*What it means:* an exact repeat is certain and final — the run will only replay its cycle; semantic "
        "stuckness means the outputs stopped changing in meaning though not in every pixel or word. *What it "
        "cannot say:* a run not stuck within its length may still become stuck later (its time to stuck is "
        f"censored), and the semantic threshold ({SEMANTIC_THRESHOLD}) is a choice, not a law; fractions from a few "
        "runs per network or prompt are rough.")
    return lines
