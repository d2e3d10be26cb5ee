"""Question 1: how did it get here, and how sensitive is it to prompt and seed? Drift of each run
from its initial prompt, and divergence D(t) of runs that differ only in seed or only in prompt."""

from __future__ import annotations

from collections.abc import Sequence

from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.data import Report
from tracer_pipeline.reporting.measures import (
    FIT_STEPS,
    DivergenceGroup,
    RunMeasures,
    divergence_groups,
    row_modalities,
    trajectory_rows,
)
from tracer_pipeline.reporting.sections.format import (
    TOO_FEW,
    Row,
    figure,
    markdown_table,
    mean,
    median,
    num,
    plural,
    short_id,
)


def _drift_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    """Table ``drift``: one row per run and embedded output, with its drift from the initial
    prompt and its distance from the previous embedded output."""
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


def _divergence_rows(groups: Sequence[DivergenceGroup]) -> tuple[list[Row], list[Row]]:
    """Tables ``divergence`` (one row per group of runs) and ``divergence_by_step`` (D(t) of each
    group at each common step)."""
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
    """The answer on sensitivity to the seed (``kind="seed"``) or the prompt: how far apart runs
    that differ only in it end, and how fast they came apart, flagged where D(t) saturated."""
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
            f"**{num(median([float(g.distance[-1]) for g in mine]))}** apart (mean pairwise cosine distance D(t) "
            f"at their last common step; {plural(len(mine), 'group')} of {size} runs, "
            f"{num(median([float(g.steps.size) for g in mine]))} common steps in the median group). ")
    if fitted:
        line += (f"Fitting ln D(t) = a + λt over the first {FIT_STEPS} common steps gives a median growth rate "
                 f"λ = **{num(median([g.rate_per_invocation for g in fitted]))} per invocation** "
                 f"(median R² {num(median([g.fit.r_squared for g in fitted if g.fit]))}, "
                 f"{plural(len(fitted), 'group')} fitted). ")
        if saturated:
            line += (f"In {len(saturated)} of {len(fitted)} fitted groups D(t) had already reached its plateau "
                     "(or the distance of unrelated embeddings) inside the fit window: saturated, so there λ "
                     "measures the approach to the plateau, not sensitivity to the " + varied + ".")
        else:
            line += "No group had saturated inside the fit window."
    else:
        line += "Too few steps with D(t) > 0 to fit a growth rate (3 are needed)."
    return [line]


def section(report: Report, measures: Sequence[RunMeasures]) -> list[str]:
    """Drift from the initial prompt per run and network, then divergence of runs that share all
    but their seed or all but their prompt; adds tables ``drift``, ``drift_by_network``,
    ``divergence`` and ``divergence_by_step``."""
    report.tables["drift"] = _drift_rows(measures)
    groups = divergence_groups(measures, "seed") + divergence_groups(measures, "prompt")
    lines = ["", "## 1. How did it get here, and how sensitive is it to prompt and seed?", ""]
    with_reference = [m for m in measures if m.final_drift is not None]
    without = [m for m in measures if m.drift is None and trajectory_rows(m.run).shape[0]]
    if with_reference:
        final = mean([m.final_drift for m in with_reference])
        step = mean([float(m.step_distance.mean()) for m in measures if m.step_distance.size])
        lines.append(
            f"**Drift:** the last embedded output of a run is a mean **{num(final)}** "
            f"away from its initial prompt (cosine distance between the output's embedding and the embedding of "
            f"the run's initial prompt or image, mean over {plural(len(with_reference), 'run')}); consecutive "
            f"outputs are a mean {num(step)} apart (in networks that alternate text and image this includes "
            "the embedding model's gap between modalities).")
    else:
        lines.append("**Drift:** no run has both embedded outputs and an embedded initial prompt, so drift from the "
                     "prompt cannot be measured.")
    if without:
        lines.append(f"\n{plural(len(without), 'run')} without an embedded initial prompt or image "
                     f"({', '.join(short_id(m.run.run_id) for m in without[:8])}) "
                     f"{'is' if len(without) == 1 else 'are'} left out of the drift figures and means.")
    per_network: list[Row] = []
    for network in sorted({m.run.network_name for m in measures}):
        mine = [m for m in measures if m.run.network_name == network]
        per_network.append({
            "network": network, "runs": len(mine), "runs_with_reference": sum(m.drift is not None for m in mine),
            "mean_final_drift": mean([m.final_drift for m in mine]),
            "mean_drift": mean([float(m.drift.mean()) for m in mine if m.drift is not None and m.drift.size]),
            "mean_step_distance": mean([float(m.step_distance.mean()) for m in mine if m.step_distance.size]),
        })
    report.tables["drift_by_network"] = per_network
    lines += markdown_table(per_network, [("network", "network"), ("runs", "runs"),
                                          ("runs_with_reference", "with prompt embedding"),
                                          ("mean_final_drift", "mean final drift"),
                                          ("mean_step_distance", "mean step distance")], "drift_by_network")
    if any(m.drift is not None or m.step_distance.size for m in measures):
        lines += figure(report, "drift.png", plots.drift_figure(measures), "drift")
    lines += figure(report, "projection.png", plots.projection_figure([m.run for m in measures]), "trajectories")
    lines += ["", *_divergence_sentence(groups, "seed"), "", *_divergence_sentence(groups, "prompt")]
    rows, by_step = _divergence_rows(groups)
    report.tables["divergence"] = rows
    report.tables["divergence_by_step"] = by_step
    if groups:
        lines += markdown_table(rows, [("kind", "across"), ("network", "network"), ("shared", "shared"),
                                       ("runs", "runs"), ("common_steps", "steps"),
                                       ("final_distance", "final D"), ("rate_per_invocation", "λ / invocation"),
                                       ("r_squared", "R²"), ("saturated", "saturated")], "divergence")
        lines += figure(report, "divergence.png", plots.divergence_figure(groups), "divergence")
    lines.append(
        "\n*What it means:* drift says how far each run moved from what it was asked; D(t) says how much runs "
        "that start alike come apart, and λ > 0 with a good R² before saturation means small differences "
        "(a seed, a word) are amplified step after step. *What it cannot say:* distances are those of one "
        "embedding model and mix content with style; a group of two or three runs gives a noisy D(t), and a "
        "rate fitted on a saturated or short series is not a Lyapunov exponent. Runs stopped at an exact repeat "
        "are extended by their period for D(t), since their later outputs are known.")
    return lines
