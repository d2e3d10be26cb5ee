"""An experiment's report: four questions, each answered by a number with its method, a figure,
and a sentence on what it means and what it cannot say.

1. How did it get here, and how sensitive is it to prompt and seed? (drift, divergence)
2. Is it stuck? (exact periodic orbits, semantic stuckness, collapse of diversity)
3. Has it done this before? (nearest earlier runs in the whole store, attractors)
4. Which part has the biggest impact? (eta² of per-run features, PERMANOVA of diagram distances)

Pure: plain data in (:mod:`tracer_pipeline.reporting.data`), a :class:`Report` out. The
Markdown names its figures by file name; ``inline_markdown`` embeds them for Dagster's UI.
"""

from __future__ import annotations

import base64
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from tracer_pipeline.analysis.diagram_distances import diagram_distance_matrix
from tracer_pipeline.analysis.stuck import diversity_collapse
from tracer_pipeline.analysis.variance import eta_squared_by_factor, permanova
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.compare import (
    DEFAULT_ATTRACTOR_THRESHOLD,
    diagram_hash,
    nearest_earlier_by_diagram,
    nearest_earlier_by_end_state,
)
from tracer_pipeline.reporting.data import ExperimentData, Report, RunData
from tracer_pipeline.reporting.measures import (
    FACTORS,
    FIT_STEPS,
    MODALITIES,
    SEMANTIC_THRESHOLD,
    SEMANTIC_WINDOW,
    DivergenceGroup,
    RunMeasures,
    aligned_trajectories,
    divergence_groups,
    factor_level,
    measure_run,
    row_modalities,
    trajectory_rows,
)
from tracer_pipeline.store import AttractorData, StoreComparison

TOO_FEW = "too few runs to say"
PERMUTATIONS = 999
COLLAPSE_FRACTION = 0.5
NEAR_PERCENTILE = 5  # "near" = closer than this percentile of all pairwise distances in the store
NEIGHBOURS = 1
MARKDOWN_ROWS = 12
CONTACT_ROWS = 6
INLINE_BUDGET_BYTES = 1_400_000
INLINE_WIDTH_PX = 560
INLINE_MIN_WIDTH_PX = 200
FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")

Row = dict[str, str | int | float | bool | None]


# --- formatting ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    # Rounding residue (an η² of 1e-31 where a factor explains nothing) reads as 0.
    return f"{0.0 if abs(value) < 1e-9 else value:.{digits}g}"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return _num(value)
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: Sequence[Row], columns: Sequence[tuple[str, str]], table: str) -> list[str]:
    """A Markdown table of the first ``MARKDOWN_ROWS`` rows; the rest are in ``Report.tables``."""
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows[:MARKDOWN_ROWS]]
    if len(rows) > MARKDOWN_ROWS:
        lines.append(f"\n*{len(rows) - MARKDOWN_ROWS} more rows in table `{table}`.*")
    return ["", *lines, ""]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _median(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _figure(report: Report, name: str, png: bytes | None, alt: str) -> list[str]:
    if png is None:
        return []
    report.figures[name] = png
    return ["", f"![{alt}]({name})", ""]


def _short(run_id: str) -> str:
    return run_id[:8]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --- per-run table ---------------------------------------------------------------------------


def _run_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    rows: list[Row] = []
    for m in measures:
        run = m.run
        rows.append({
            "run_id": run.run_id, "network": run.network_name, "prompt": factor_level(run, "prompt"),
            "seed": run.seed, "t2i_model": factor_level(run, "t2i_model"), "i2t_model": factor_level(run, "i2t_model"),
            "status": run.status, "stop_reason": run.stop_reason, "order": run.order,
            "outputs": m.n_outputs, "embedded_outputs": int(trajectory_rows(run).shape[0]),
            "has_reference": m.drift is not None,
            "final_drift": m.final_drift,
            "mean_drift": float(m.drift.mean()) if m.drift is not None and m.drift.size else None,
            "mean_step_distance": float(m.step_distance.mean()) if m.step_distance.size else None,
            "exactly_stuck": m.orbit is not None,
            "exact_stuck_start": m.orbit.start if m.orbit else None,
            "exact_period": m.orbit.period if m.orbit else None,
            "exact_network_cycles": m.orbit.network_cycles if m.orbit else None,
            "exact_repeat_at": m.orbit.detected_at if m.orbit else None,
            "semantically_stuck": m.semantic_start is not None,
            "semantic_stuck_start": m.semantic_start,
            "stuck_start": m.stuck_start,
            "time_to_stuck": m.time_to_stuck,
            "time_to_stuck_censored": m.stuck_start is None and m.time_to_stuck is not None,
            "h0_entropy": m.entropy.get(0), "h1_entropy": m.entropy.get(1),
            "h0_bars": int(np.asarray(run.diagram[0]).reshape(-1, 2).shape[0]) if 0 in run.diagram else None,
            "h1_bars": int(np.asarray(run.diagram[1]).reshape(-1, 2).shape[0]) if 1 in run.diagram else None,
        })
    return rows


def _overview(data: ExperimentData, measures: Sequence[RunMeasures]) -> list[str]:
    statuses = Counter(m.run.status for m in measures)
    networks = sorted({m.run.network_name for m in measures})
    lines = [f"# Experiment report: {data.name}", "",
             f"Embedding model **{data.embedding_model}**. This experiment has {_plural(len(measures), 'run')} "
             f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none stored yet'}) over "
             f"{_plural(len(networks), 'network')}, "
             f"{_plural(len({factor_level(m.run, 'prompt') for m in measures}), 'prompt')} and "
             f"{_plural(len({m.run.seed for m in measures}), 'seed')}; the store holds "
             f"{_plural(len(data.store_runs), 'run')} embedded by this model.",
             "", "Steps are invocation sequence numbers from 0 (step 0 is the first output). Distances between "
             "outputs are cosine distances 1 − cos(x, y) between their embeddings (0 = same direction, about 1 = "
             "unrelated)."]
    short = [m for m in measures if trajectory_rows(m.run).shape[0] < 3]
    if short:
        lines += ["", f"{_plural(len(short), 'run')} ha{'s' if len(short) == 1 else 've'} fewer than 3 embedded "
                  f"outputs ({', '.join(_short(m.run.run_id) for m in short[:8])}{'…' if len(short) > 8 else ''}): "
                  "they add little to any curve below."]
    failed = [m for m in measures if m.run.status == "failed"]
    if failed:
        lines += ["", f"{_plural(len(failed), 'run')} failed; their stored outputs are used where a measure needs "
                  "one run only, and left out of the group comparisons (divergence, collapse)."]
    return lines


# --- Q1 --------------------------------------------------------------------------------------


def _divergence_rows(groups: Sequence[DivergenceGroup]) -> tuple[list[Row], list[Row]]:
    rows: list[Row] = []
    by_step: list[Row] = []
    for g in groups:
        fit = g.fit
        shared_factor = "prompt" if g.kind == "seed" else "seed"
        rows.append({
            "kind": g.kind, "network": g.network, "shared_factor": shared_factor, "shared_level": g.shared,
            "shared": f"{shared_factor} {g.shared}", "runs": len(g.run_ids), "run_ids": ",".join(g.run_ids),
            "common_steps": int(g.steps.size), "first_step": int(g.steps[0]), "last_step": int(g.steps[-1]),
            "initial_distance": float(g.distance[0]), "final_distance": float(g.distance[-1]),
            "peak_distance": float(g.distance.max()), "rate_per_invocation": g.rate_per_invocation,
            "r_squared": fit.r_squared if fit else None, "fit_points": fit.points_used if fit else 0,
            "saturated": fit.saturated if fit else None,
        })
        by_step += [{"kind": g.kind, "network": g.network, "shared_level": g.shared, "step": int(step),
                     "distance": float(distance)} for step, distance in zip(g.steps, g.distance, strict=True)]
    return rows, by_step


def _divergence_sentence(groups: Sequence[DivergenceGroup], kind: str) -> list[str]:
    varied, shared = ("seed", "network and prompt") if kind == "seed" else ("prompt", "network and seed")
    mine = [g for g in groups if g.kind == kind]
    if not mine:
        return [f"**Sensitivity to the {varied}:** {TOO_FEW} — no {shared} was run with two or more "
                f"{varied}s in this experiment."]
    fitted = [g for g in mine if g.rate_per_invocation is not None]
    saturated = [g for g in fitted if g.fit is not None and g.fit.saturated]
    sizes = sorted({len(g.run_ids) for g in mine})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
    line = (f"**Sensitivity to the {varied}:** runs sharing {shared} but differing in {varied} end a median "
            f"**{_num(_median([float(g.distance[-1]) for g in mine]))}** apart (mean pairwise cosine distance D(t) "
            f"at their last common step; {_plural(len(mine), 'group')} of {size} runs, "
            f"{_num(_median([float(g.steps.size) for g in mine]))} common steps in the median group). ")
    if fitted:
        line += (f"Fitting ln D(t) = a + λt over the first {FIT_STEPS} common steps gives a median growth rate "
                 f"λ = **{_num(_median([g.rate_per_invocation for g in fitted]))} per invocation** "
                 f"(median R² {_num(_median([g.fit.r_squared for g in fitted if g.fit]))}, "
                 f"{_plural(len(fitted), 'group')} fitted). ")
        if saturated:
            line += (f"In {len(saturated)} of {len(fitted)} fitted groups D(t) had already reached its plateau "
                     "(or the distance of unrelated embeddings) inside the fit window: saturated, so there λ "
                     "measures the approach to the plateau, not sensitivity to the " + varied + ".")
        else:
            line += "No group had saturated inside the fit window."
    else:
        line += "Too few steps with D(t) > 0 to fit a growth rate (3 are needed)."
    return [line]


def _q1(report: Report, measures: Sequence[RunMeasures], groups: Sequence[DivergenceGroup]) -> list[str]:
    lines = ["", "## 1. How did it get here, and how sensitive is it to prompt and seed?", ""]
    with_reference = [m for m in measures if m.final_drift is not None]
    without = [m for m in measures if m.drift is None and trajectory_rows(m.run).shape[0]]
    if with_reference:
        final = _mean([m.final_drift for m in with_reference])
        step = _mean([float(m.step_distance.mean()) for m in measures if m.step_distance.size])
        lines.append(
            f"**Drift:** the last embedded output of a run is a mean **{_num(final)}** "
            f"away from its initial prompt (cosine distance between the output's embedding and the embedding of "
            f"the run's initial prompt or image, mean over {_plural(len(with_reference), 'run')}); consecutive "
            f"outputs are a mean {_num(step)} apart (in networks that alternate text and image this includes "
            "the embedding model's gap between modalities).")
    else:
        lines.append("**Drift:** no run has both embedded outputs and an embedded initial prompt, so drift from the "
                     "prompt cannot be measured.")
    if without:
        lines.append(f"\n{_plural(len(without), 'run')} without an embedded initial prompt or image "
                     f"({', '.join(_short(m.run.run_id) for m in without[:8])}) "
                     f"{'is' if len(without) == 1 else 'are'} left out of the drift figures and means.")
    per_network: list[Row] = []
    for network in sorted({m.run.network_name for m in measures}):
        mine = [m for m in measures if m.run.network_name == network]
        per_network.append({
            "network": network, "runs": len(mine), "runs_with_reference": sum(m.drift is not None for m in mine),
            "mean_final_drift": _mean([m.final_drift for m in mine]),
            "mean_drift": _mean([float(m.drift.mean()) for m in mine if m.drift is not None and m.drift.size]),
            "mean_step_distance": _mean([float(m.step_distance.mean()) for m in mine if m.step_distance.size]),
        })
    report.tables["drift_by_network"] = per_network
    lines += _markdown_table(per_network, [("network", "network"), ("runs", "runs"),
                                           ("runs_with_reference", "with prompt embedding"),
                                           ("mean_final_drift", "mean final drift"),
                                           ("mean_step_distance", "mean step distance")], "drift_by_network")
    if any(m.drift is not None or m.step_distance.size for m in measures):
        lines += _figure(report, "drift.png", plots.drift_figure(measures), "drift")
    lines += _figure(report, "projection.png", plots.projection_figure([m.run for m in measures]), "trajectories")
    lines += ["", *_divergence_sentence(groups, "seed"), "", *_divergence_sentence(groups, "prompt")]
    rows, by_step = _divergence_rows(groups)
    report.tables["divergence"] = rows
    report.tables["divergence_by_step"] = by_step
    if groups:
        lines += _markdown_table(rows, [("kind", "across"), ("network", "network"), ("shared", "shared"),
                                        ("runs", "runs"), ("common_steps", "steps"),
                                        ("final_distance", "final D"), ("rate_per_invocation", "λ / invocation"),
                                        ("r_squared", "R²"), ("saturated", "saturated")], "divergence")
        lines += _figure(report, "divergence.png", plots.divergence_figure(groups), "divergence")
    lines.append(
        "\n*What it means:* drift says how far each run moved from what it was asked; D(t) says how much runs "
        "that start alike come apart, and λ > 0 with a good R² before saturation means small differences "
        "(a seed, a word) are amplified step after step. *What it cannot say:* distances are those of one "
        "embedding model and mix content with style; a group of two or three runs gives a noisy D(t), and a "
        "rate fitted on a saturated or short series is not a Lyapunov exponent. Runs stopped at an exact repeat "
        "are extended by their period for D(t), since their later outputs are known.")
    return lines


# --- Q2 --------------------------------------------------------------------------------------


def _stuck_fraction_rows(measures: Sequence[RunMeasures]) -> list[Row]:
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
                "median_stuck_start": _median([m.stuck_start for m in stuck]),
            })
    return rows


def _collapse_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    rows: list[Row] = []
    for network in sorted({m.run.network_name for m in measures}):
        group = [m for m in measures if m.run.network_name == network and m.run.status != "failed"
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


def _q2(report: Report, measures: Sequence[RunMeasures]) -> list[str]:
    lines = ["", "## 2. Is it stuck?", ""]
    n = len(measures)
    exact = [m for m in measures if m.orbit is not None]
    semantic = [m for m in measures if m.semantic_start is not None]
    fixed = sum(m.orbit.network_cycles == 1 for m in exact if m.orbit)
    stopped = sum(m.run.status == "stuck" for m in measures)
    lines.append(
        f"**Exactly stuck:** **{len(exact)} of {n}** runs entered a periodic orbit — {fixed} a fixed point of the "
        f"network, {len(exact) - fixed} a longer cycle — from a median step "
        f"{_num(_median([m.orbit.start for m in exact if m.orbit]))} (an output identical, byte for byte, to an "
        "earlier output at the same position in the network; every run is a deterministic map of its seed, so "
        f"from there on every output repeats). The engine stopped {stopped} of them at the repeat "
        "(status \"stuck\").")
    lines.append(
        f"\n**Semantically stuck:** **{len(semantic)} of {n}** runs, from a median step "
        f"{_num(_median([m.semantic_start for m in semantic]))} (each output at least {SEMANTIC_THRESHOLD} "
        f"cosine-similar to the previous output of the same model, for {SEMANTIC_WINDOW} comparisons in a row).")
    fractions = _stuck_fraction_rows(measures)
    report.tables["stuck_fractions"] = fractions
    lines += _markdown_table(fractions, [("grouping", "by"), ("level", "level"), ("runs", "runs"),
                                         ("exactly_stuck", "exact"), ("semantically_stuck", "semantic"),
                                         ("stuck_fraction", "stuck fraction"),
                                         ("median_stuck_start", "median onset")], "stuck_fractions")
    collapse = _collapse_rows(measures)
    report.tables["diversity_collapse"] = collapse
    measured = [row for row in collapse if row["note"] is None]
    if measured:
        collapsed = [row for row in measured if row["collapsed_at"] is not None]
        lines.append(
            f"**Collapse of diversity:** in **{len(collapsed)} of {_plural(len(measured), 'network')}** with two or "
            f"more runs, the mean pairwise distance between the network's runs at the same step fell to "
            f"{COLLAPSE_FRACTION:.0%} of its peak or below (the runs converged on similar outputs).")
        lines += _markdown_table(collapse, [("network", "network"), ("runs", "runs"), ("common_steps", "steps"),
                                            ("peak_step", "peak step"), ("peak_distance", "peak D"),
                                            ("collapsed_at", "collapsed at"), ("final_distance", "final D")],
                                 "diversity_collapse")
    else:
        lines.append(f"**Collapse of diversity:** {TOO_FEW} — no network has two runs with common steps.")
    if measures:
        lines += _figure(report, "stuck_timeline.png", plots.stuck_timeline_figure(measures), "stuck timeline")
    representatives = _representatives(measures)
    if representatives:
        lines += _figure(report, "recurrence.png", plots.recurrence_figure(representatives), "recurrence")
        lines.append(f"Recurrence matrices of {', '.join(_short(r.run_id) for r in representatives)}: a bright "
                     "block from some step on means every later output looks alike; periodic stripes mean a cycle.")
    lines.append(
        "\n*What it means:* an exact repeat is certain and final — the run will only replay its cycle; semantic "
        "stuckness means the outputs stopped changing in meaning though not in every pixel or word. *What it "
        "cannot say:* a run not stuck within its length may still become stuck later (its time to stuck is "
        f"censored), and the semantic threshold ({SEMANTIC_THRESHOLD}) is a choice, not a law; fractions from a few "
        "runs per network or prompt are rough.")
    return lines


# --- Q3 --------------------------------------------------------------------------------------


def _neighbour_rows(own: Sequence[RunMeasures], found: dict[str, list[tuple[str, float]]], measure: str,
                    by_id: dict[str, RunData], own_ids: set[str]) -> list[Row]:
    rows: list[Row] = []
    for m in own:
        for rank, (earlier, distance) in enumerate(found.get(m.run.run_id, []), start=1):
            other = by_id[earlier]
            rows.append({"run_id": m.run.run_id, "measure": measure, "rank": rank, "earlier_run_id": earlier,
                         "distance": distance, "earlier_in_experiment": earlier in own_ids,
                         "earlier_network": other.network_name, "earlier_prompt": factor_level(other, "prompt"),
                         "earlier_seed": other.seed})
    return rows


def _current_runs(data: ExperimentData, comparison: StoreComparison) -> tuple[list[RunData], list[RunData]]:
    """Store runs with a diagram that the comparison covers with the same diagram, and this
    experiment's runs it does not (computed before them, or before their diagram changed)."""
    hashes = dict(zip(comparison.run_ids, comparison.diagram_hashes, strict=True))
    current = [r for r in data.store_runs if r.diagram and hashes.get(r.run_id) == diagram_hash(r.diagram)]
    current_ids = {r.run_id for r in current}
    stale = [r for r in data.runs if r.diagram and r.run_id not in current_ids]
    return current, stale


def _attractor_rows(attractors: Sequence[AttractorData], own_ids: set[str], by_id: dict[str, RunData]) -> list[Row]:
    rows: list[Row] = []
    counters: Counter[str] = Counter()
    for attractor in attractors:
        counters[attractor.modality] += 1
        members = [by_id[r] for r in attractor.run_ids if r in by_id]
        if not own_ids & set(attractor.run_ids):
            continue
        medoid = by_id.get(attractor.medoid_run_id)
        first = min(members, key=lambda r: r.order) if members else None
        rows.append({
            "attractor": f"{attractor.modality}-{counters[attractor.modality]}", "modality": attractor.modality,
            "size": len(attractor.run_ids), "experiment_runs": len(own_ids & set(attractor.run_ids)),
            "other_runs": len(set(attractor.run_ids) - own_ids), "medoid_run_id": attractor.medoid_run_id,
            "medoid_in_experiment": attractor.medoid_run_id in own_ids,
            "medoid_last_caption": medoid.last_caption if medoid else None,
            "first_run_id": first.run_id if first else None,
            "first_run_in_experiment": first.run_id in own_ids if first else None,
            "mean_distance_to_medoid": attractor.mean_distance_to_medoid,
            "run_ids": ",".join(attractor.run_ids),
        })
    return rows


def _contact_rows(data: ExperimentData, attractors: Sequence[Row]) -> list[plots.ContactRow]:
    """Representative runs with images: one per attractor that involves the experiment (its
    medoid when the medoid is this experiment's, else a member that is), then one per network."""
    by_id = {r.run_id: r for r in data.runs}
    rows, shown = [], set()
    for attractor in attractors:
        members = [by_id[r] for r in str(attractor["run_ids"]).split(",")
                   if r in by_id and by_id[r].images and r not in shown]
        medoid = by_id.get(str(attractor["medoid_run_id"]))
        run = medoid if medoid is not None and medoid.run_id in {m.run_id for m in members} else (
            members[0] if members else None)
        if run is None or len(rows) >= CONTACT_ROWS:
            continue
        note = "medoid" if run is medoid else f"member; medoid {_short(str(attractor['medoid_run_id']))}"
        rows.append(plots.ContactRow(
            f"attractor {attractor['attractor']} ({attractor['size']} runs) — {_short(run.run_id)} ({note}) · "
            f"{run.network_name} · seed {run.seed}", run.images,
            f"medoid's last caption: {attractor['medoid_last_caption']}" if attractor["medoid_last_caption"]
            else run.last_caption))
        shown.add(run.run_id)
    shown_networks = {by_id[run_id].network_name for run_id in shown}
    for network in sorted({r.network_name for r in data.runs} - shown_networks):
        run = next((r for r in data.runs if r.network_name == network and r.images), None)
        if run is not None and len(rows) < CONTACT_ROWS:
            rows.append(plots.ContactRow(f"{_short(run.run_id)} · {network} · seed {run.seed} · "
                                         f"{(factor_level(run, 'prompt') or '')[:40]}", run.images, run.last_caption))
    return rows


def _q3(report: Report, data: ExperimentData, measures: Sequence[RunMeasures],
        comparison: StoreComparison | None) -> list[str]:
    lines = ["", "## 3. Has it done this before?", ""]
    own_ids = {r.run_id for r in data.runs}
    by_id = {r.run_id: r for r in data.store_runs} | {r.run_id: r for r in data.runs}
    neighbours: list[Row] = []
    threshold = comparison.attractor_threshold if comparison else DEFAULT_ATTRACTOR_THRESHOLD
    attractor_rows: list[Row] = []
    if comparison is None:
        lines.append("The store-wide comparison has not been computed yet, so this section cannot say which earlier "
                     "runs had a similar persistence diagram, nor which attractors these runs share with others; "
                     "materialise the store comparison and report again. End states are compared below.")
    else:
        current, stale = _current_runs(data, comparison)
        found = nearest_earlier_by_diagram(comparison, current, k=NEIGHBOURS)
        current_ids = {r.run_id for r in current}
        own_current = [m for m in measures if m.run.run_id in current_ids]
        rows = _neighbour_rows(own_current, found, "H1 Wasserstein", by_id, own_ids)
        neighbours += rows
        position = {run_id: i for i, run_id in enumerate(comparison.run_ids)}
        index = [position[r.run_id] for r in current]
        matrix = comparison.matrices[(1, "wasserstein")][np.ix_(index, index)]
        pairs = matrix[np.triu_indices(len(index), k=1)]
        nearest = [float(row["distance"]) for row in rows if row["rank"] == 1]
        if pairs.size and nearest:
            near = float(np.percentile(pairs, NEAR_PERCENTILE))
            close = sum(d <= near for d in nearest)
            elsewhere = sum(not row["earlier_in_experiment"] for row in rows if row["rank"] == 1)
            lines.append(
                f"**Nearest earlier run by shape:** **{close} of {len(nearest)}** runs with an earlier run have one "
                f"whose persistence diagram is as close as the closest {NEAR_PERCENTILE}% of all pairs in the store "
                f"(H1 1-Wasserstein distance ≤ {_num(near)}; median nearest {_num(_median(nearest))}, median of all "
                f"{pairs.size} pairs {_num(float(np.median(pairs)))}); {elsewhere} of the {len(nearest)} nearest "
                "earlier runs belong to other experiments. \"Earlier\" is registration order in the store.")
        else:
            lines.append(f"**Nearest earlier run by shape:** {TOO_FEW} — fewer than two runs in the store comparison "
                         "have both a diagram and an earlier run.")
        if stale:
            named = ", ".join(_short(r.run_id) for r in stale[:8])
            lines.append(f"\n{_plural(len(stale), 'run')} of this experiment ({named}) are not in the store "
                         "comparison with their current diagram: it was computed before them; recompute it to include "
                         "them.")
        attractor_rows = _attractor_rows(comparison.attractors, own_ids, by_id)
    for modality in MODALITIES:
        found = nearest_earlier_by_end_state(data.store_runs, modality, k=NEIGHBOURS)
        rows = _neighbour_rows(measures, found, f"end state ({modality})", by_id, own_ids)
        neighbours += rows
        nearest = [float(row["distance"]) for row in rows if row["rank"] == 1]
        if nearest:
            lines.append(
                f"\n**Nearest earlier end state ({modality}):** **{sum(d <= threshold for d in nearest)} of "
                f"{len(nearest)}** runs ended within cosine distance {threshold} of where an earlier run ended "
                f"(last {modality} output; median distance to the nearest earlier one {_num(_median(nearest))}).")
    report.tables["nearest_earlier_runs"] = neighbours
    compared = {row["run_id"] for row in neighbours}
    firsts = [m for m in measures if m.run.run_id not in compared]
    if firsts:
        lines.append(f"\n{_plural(len(firsts), 'run')} ha{'s' if len(firsts) == 1 else 've'} no earlier run to compare "
                     "with (first in the store, or without a diagram and end state).")
    if neighbours:
        lines += _markdown_table(neighbours, [("run_id", "run"), ("measure", "by"),
                                              ("earlier_run_id", "nearest earlier"), ("distance", "distance"),
                                              ("earlier_in_experiment", "same experiment"),
                                              ("earlier_prompt", "its prompt")], "nearest_earlier_runs")
    report.tables["attractors"] = attractor_rows
    if comparison is not None:
        if attractor_rows:
            lines.append(
                f"**Attractors:** this experiment's runs take part in **{len(attractor_rows)}** recurring end states "
                f"(clusters of ≥ 2 runs in the store whose last outputs of one modality are within a mean cosine "
                f"distance of {threshold}, average linkage); {sum(int(r['other_runs']) > 0 for r in attractor_rows)} "
                "of them also hold runs from outside this experiment.")
            lines += _markdown_table(attractor_rows, [("attractor", "attractor"), ("size", "runs"),
                                                      ("experiment_runs", "from here"), ("other_runs", "elsewhere"),
                                                      ("medoid_run_id", "medoid"),
                                                      ("medoid_last_caption", "medoid's last caption")], "attractors")
        else:
            lines.append(f"**Attractors:** none of this experiment's runs shares its end state with another run "
                         f"(within a mean cosine distance of {threshold}).")
    contact = _contact_rows(data, attractor_rows)
    if contact:
        lines += _figure(report, "contact_sheet.png", plots.contact_sheet_figure(contact), "contact sheet")
    lines.append(
        "\n*What it means:* a near earlier run with the same shape or end state means this behaviour is not new: "
        "the network has been here before, possibly from another prompt or seed. *What it cannot say:* a small "
        "diagram distance says the trajectories have similar topology, not similar content; \"nearest\" is "
        "relative to what the store holds, and with few stored runs every run looks new.")
    return lines


# --- Q4 --------------------------------------------------------------------------------------

FEATURES: tuple[tuple[str, Callable[[RunMeasures], float | int | None]], ...] = (
    ("H0 entropy", lambda m: m.entropy.get(0)),
    ("H1 entropy", lambda m: m.entropy.get(1)),
    ("final drift", lambda m: m.final_drift),
    ("time to stuck", lambda m: m.time_to_stuck),
)


def _factors(runs: Sequence[RunData]) -> dict[str, list[str]]:
    """Factor → the level of each run, for the factors every run has a level of."""
    levels = {f: [factor_level(r, f) for r in runs] for f in FACTORS}
    return {f: [str(v) for v in values] for f, values in levels.items() if values and None not in values}


def _confounded(factors: dict[str, list[str]]) -> list[str]:
    """Pairs of factors that group the runs identically (their effects cannot be told apart)."""
    def partition(levels: list[str]) -> frozenset[frozenset[int]]:
        groups: dict[str, set[int]] = {}
        for i, level in enumerate(levels):
            groups.setdefault(level, set()).add(i)
        return frozenset(frozenset(g) for g in groups.values())
    names = [f for f in factors if len(set(factors[f])) > 1]
    return [f"{a} and {b}" for i, a in enumerate(names) for b in names[i + 1:]
            if partition(factors[a]) == partition(factors[b])]


def _h1_wasserstein(runs: Sequence[RunData], comparison: StoreComparison | None) -> np.ndarray:
    """The H1 Wasserstein matrix between ``runs``: from the comparison when it covers them all
    with their current diagrams, else computed here."""
    if comparison is not None:
        index = {run_id: i for i, run_id in enumerate(comparison.run_ids)}
        if all(r.run_id in index and comparison.diagram_hashes[index[r.run_id]] == diagram_hash(r.diagram)
               for r in runs):
            rows = [index[r.run_id] for r in runs]
            return comparison.matrices[(1, "wasserstein")][np.ix_(rows, rows)]
    return diagram_distance_matrix([np.asarray(r.diagram.get(1, np.empty((0, 2)))) for r in runs], "wasserstein")


def _q4(report: Report, measures: Sequence[RunMeasures], comparison: StoreComparison | None) -> list[str]:
    lines = ["", "## 4. Which part has the biggest impact?", ""]
    rows: list[Row] = []
    for feature, value in FEATURES:
        have = [m for m in measures if value(m) is not None]
        factors = _factors([m.run for m in have])
        if not have or not factors:
            continue
        effects = eta_squared_by_factor(np.array([value(m) for m in have], dtype=np.float64), factors)
        # With a single level η² is 0 by construction, not a finding: left undefined.
        rows += [{"outcome": feature, "method": "eta²", "factor": name,
                  "value": e.eta_squared if e.n_groups > 1 else None, "pseudo_f": None,
                  "p_value": None, "n": e.n, "n_groups": e.n_groups, "smallest_group": e.smallest_group,
                  "too_few": e.too_few} for name, e in effects.items()]
    diagram_runs = [m.run for m in measures if m.run.diagram]
    matrix = _h1_wasserstein(diagram_runs, comparison) if len(diagram_runs) >= 2 else None
    if matrix is not None:
        for name, levels in _factors(diagram_runs).items():
            result = permanova(matrix, levels, permutations=PERMUTATIONS, seed=0)
            rows.append({"outcome": "H1 Wasserstein distances", "method": "PERMANOVA", "factor": name,
                         "value": result.r_squared, "pseudo_f": result.pseudo_f, "p_value": result.p_value,
                         "n": result.n, "n_groups": result.n_groups,
                         "smallest_group": min(Counter(levels).values()), "too_few": result.too_few})
    report.tables["factor_effects"] = rows
    if len(measures) < 3:
        lines.append(f"**{TOO_FEW.capitalize()}:** {_plural(len(measures), 'run')} cannot separate the effect of a "
                     "factor from chance; the per-run features are in table `run_metrics`.")
    usable = [r for r in rows if not r["too_few"] and r["value"] is not None]
    for outcome in dict.fromkeys(r["outcome"] for r in rows):
        best = max((r for r in usable if r["outcome"] == outcome), key=lambda r: float(r["value"]), default=None)
        statistic = "R²" if outcome == "H1 Wasserstein distances" else "η²"
        if best is None:
            lines.append(f"- **{outcome}:** {TOO_FEW} (every factor has a single level, a level with one run, or "
                         "the outcome does not vary).")
        else:
            extra = f", p = {_num(best['p_value'], 2)}" if best["p_value"] is not None else ""
            ties = [str(r["factor"]) for r in usable if r["outcome"] == outcome and r is not best
                    and abs(float(r["value"]) - float(best["value"])) < 1e-9]
            tied = f" (as does {', '.join(ties)})" if ties else ""
            lines.append(f"- **{outcome}:** **{best['factor']}** explains the most{tied}, {statistic} = "
                         f"**{_num(best['value'], 2)}** ({best['n']} runs in {best['n_groups']} groups, smallest "
                         f"{best['smallest_group']}{extra}).")
    lines.append(
        "\nMethod: η² = SS_between / SS_total of a one-way ANOVA of each per-run feature on each factor alone "
        "(H0 and H1 persistent entropy of the run's diagram; final drift; time to stuck = the first step from which "
        "the run is exactly or semantically stuck, and for a run never stuck its number of outputs, a lower bound); "
        f"PERMANOVA (pseudo-F, R², {PERMUTATIONS} permutations) of the H1 1-Wasserstein distances between the "
        "runs' diagrams. A factor is flagged too few when it has one level or a level with a single run.")
    if rows:
        lines += _markdown_table(rows, [("outcome", "outcome"), ("factor", "factor"), ("value", "η² / R²"),
                                        ("p_value", "p"), ("n", "n"), ("n_groups", "groups"),
                                        ("smallest_group", "smallest"), ("too_few", "too few")], "factor_effects")
        lines += _figure(report, "factor_effects.png", _effects_figure(rows), "factor effects")
    confounded = _confounded(_factors([m.run for m in measures]))
    if confounded:
        lines.append(f"Confounded in this design (they group the runs identically): {'; '.join(confounded)}.")
    if matrix is not None:
        lines += _figure(report, "distance_heatmap.png",
                         plots.distance_heatmap_figure(matrix, diagram_runs, "H1 1-Wasserstein distance"),
                         "diagram distances")
    if diagram_runs:
        lines += _figure(report, "diagrams.png", plots.persistence_diagrams_figure(diagram_runs),
                         "persistence diagrams")
    lines.append(
        "\n*What it means:* the factor with the largest share is the part of the network that most decides the "
        "outcome here. *What it cannot say:* each factor is taken alone, so in an unbalanced or confounded design "
        "shares overlap and need not add up to 1; with few runs per level a large η² can be chance (n singleton "
        "groups give η² = 1 whatever the data); p-values are not corrected for testing several factors.")
    return lines


def _effects_figure(rows: Sequence[Row]) -> bytes:
    outcomes = list(dict.fromkeys(str(r["outcome"]) for r in rows))
    factors = list(dict.fromkeys(str(r["factor"]) for r in rows))
    values = np.full((len(outcomes), len(factors)), np.nan)
    too_few = np.zeros(values.shape, dtype=bool)
    for r in rows:
        i, j = outcomes.index(str(r["outcome"])), factors.index(str(r["factor"]))
        values[i, j] = np.nan if r["value"] is None else float(r["value"])
        too_few[i, j] = bool(r["too_few"])
    labels = [f"{o} (R²)" if o == "H1 Wasserstein distances" else f"{o} (η²)" for o in outcomes]
    return plots.factor_effects_figure(labels, factors, values, too_few)


# --- assembly --------------------------------------------------------------------------------


def build_report(data: ExperimentData, comparison: StoreComparison | None) -> Report:
    """The experiment's report: Markdown answering the four questions (module docstring), its
    figures as PNG bytes keyed by file name, and its tables as flat rows:

    ``run_metrics`` (one row per run), ``drift`` (per run and step), ``drift_by_network``,
    ``divergence`` and ``divergence_by_step``, ``stuck_fractions``, ``diversity_collapse``,
    ``nearest_earlier_runs``, ``attractors`` and ``factor_effects``.

    ``comparison`` is the store-wide comparison for ``data.embedding_model`` (``compare_store``);
    without it the report says it has not been computed and answers question 3 from end states
    only.
    """
    report = Report(title=f"{data.name} — {data.embedding_model}", markdown="")
    measures = [measure_run(run) for run in data.runs]
    report.tables["run_metrics"] = _run_rows(measures)
    report.tables["drift"] = _drift_rows(measures)
    groups = divergence_groups(measures, "seed") + divergence_groups(measures, "prompt")
    lines = _overview(data, measures)
    lines += _q1(report, measures, groups)
    lines += _q2(report, measures)
    lines += _q3(report, data, measures, comparison)
    lines += _q4(report, measures, comparison)
    report.markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    return report


def _drift_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    rows: list[Row] = []
    for m in measures:
        modalities = row_modalities(m.run)
        for index, step in enumerate(m.run.trajectory_seqs):
            rows.append({
                "run_id": m.run.run_id, "step": int(step), "modality": modalities[index],
                "drift": float(m.drift[index]) if m.drift is not None else None,
                "step_distance": float(m.step_distance[index - 1]) if index else None,
            })
    return rows


def _downscaled(png: bytes, width: int) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def inline_markdown(report: Report, max_figures: int | None = None) -> str:
    """The report's Markdown with its figures embedded as base64 PNG data URIs, for Dagster's UI.

    Figures are downscaled to at most ``INLINE_WIDTH_PX`` wide, and narrower still (down to
    ``INLINE_MIN_WIDTH_PX``) until the whole text fits ``INLINE_BUDGET_BYTES``; figures past
    ``max_figures`` (in order of appearance), or that still do not fit, are replaced by a note
    naming the file.
    """
    names = [name for _, name in FIGURE_LINK.findall(report.markdown) if name in report.figures]
    names = list(dict.fromkeys(names))[: max_figures if max_figures is not None else None]
    budget = INLINE_BUDGET_BYTES - len(report.markdown.encode())
    width = INLINE_WIDTH_PX
    while True:
        encoded = {name: base64.b64encode(_downscaled(report.figures[name], width)).decode() for name in names}
        if sum(len(e) for e in encoded.values()) <= budget or width <= INLINE_MIN_WIDTH_PX:
            break
        width = max(INLINE_MIN_WIDTH_PX, int(width * 0.75))
    kept, used = {}, 0
    for name in names:
        if used + len(encoded[name]) <= budget:
            kept[name] = encoded[name]
            used += len(encoded[name])

    def replace(match: re.Match[str]) -> str:
        alt, name = match.group(1), match.group(2)
        if name in kept:
            return f"![{alt}](data:image/png;base64,{kept[name]})"
        return f"*(figure `{name}` not inlined)*"

    return FIGURE_LINK.sub(replace, report.markdown)
