"""Question 1: how did it get here, and how sensitive is it to prompt and seed? Drift of each run
from its initial prompt, and divergence D(t) of runs that differ only in seed or only in prompt."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.data import Report
from tracer_pipeline.reporting.findings import Finding, all_unsuited, notice, supported, unsupported
from tracer_pipeline.reporting.measures import (
    FIT_STEPS,
    DivergenceGroup,
    RunMeasures,
    divergence_groups,
    factor_level,
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

# A divergence series needs this many common steps for its growth to be fitted (3 points with
# D > 0, analysis.divergence) and its end to mean more than its start.
MIN_COMMON_STEPS = 3


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


def _unsuited(measures: Sequence[RunMeasures]) -> tuple[list[RunMeasures], list[RunMeasures]]:
    """The runs the embedding model can place, and those it cannot (``RunData.embedder_unsuited``)."""
    return ([m for m in measures if m.run.embedder_unsuited is None],
            [m for m in measures if m.run.embedder_unsuited is not None])


def _left_out_reason(left_out: Sequence[RunMeasures]) -> str:
    """Why runs were left out, in words: the distinct reasons of the first runs."""
    reasons = list(dict.fromkeys(str(m.run.embedder_unsuited) for m in left_out))
    return "; ".join(reasons[:2])


def unrelated_distance(measures: Sequence[RunMeasures]) -> float | None:
    """Null baseline for drift: the mean cosine distance between a run's initial prompt (or
    image) and the outputs of runs started from another prompt, over every such pair of runs.
    Drift near it means a run has gone as far from its prompt as unrelated content is. None with
    a single prompt."""
    # mean over other's outputs of 1 − u·r is 1 − (mean of other's unit rows)·r, and summed over
    # the other runs of another prompt it is 1 − (S − S_p)·r, with S the sum of every run's mean
    # direction and S_p that of the runs of prompt p: linear in the runs, where one product per
    # pair of runs made 50 million at 10,000 runs (equal up to the order of float additions).
    total = None
    by_prompt: dict[str | None, np.ndarray] = {}
    runs_of: dict[str | None, int] = {}
    for other in measures:
        rows = trajectory_rows(other.run)
        if rows.shape[0]:
            direction = unit_rows(rows.astype(np.float64)).mean(axis=0)
            prompt = factor_level(other.run, "prompt")
            total = direction if total is None else total + direction
            by_prompt[prompt] = by_prompt[prompt] + direction if prompt in by_prompt else direction
            runs_of[prompt] = runs_of.get(prompt, 0) + 1
    if total is None:
        return None
    count, similarity = 0, 0.0
    everyone = sum(runs_of.values())
    for m in measures:
        if m.run.reference is None:
            continue
        reference = unit_rows(np.asarray(m.run.reference, dtype=np.float64)[None, :])[0]
        prompt = factor_level(m.run, "prompt")
        unrelated = total - by_prompt[prompt] if prompt in by_prompt else total
        count += everyone - runs_of.get(prompt, 0)
        similarity += float(unrelated @ reference)
    return 1.0 - similarity / count if count else None


def drift_finding(measures: Sequence[RunMeasures]) -> Finding:
    """Drift from the initial prompt: valid with at least one run (of outputs the embedder is
    suited to) that has embedded outputs and an embedded prompt."""
    usable, left_out = _unsuited(measures)
    with_reference = [m for m in usable if m.final_drift is not None]
    figures = {
        "runs": len(with_reference), "runs_left_out_unsuited_embedder": len(left_out),
        "mean_final_drift": mean([m.final_drift for m in with_reference]),
        "mean_step_distance": mean([float(m.step_distance.mean()) for m in usable if m.step_distance.size]),
        "unrelated_distance": unrelated_distance(usable),
    }
    if with_reference:
        return supported(**figures)
    if blind := all_unsuited([m.run.embedder_unsuited for m in measures]):
        return unsupported(blind, **figures)
    return unsupported("no run has both embedded outputs and an embedded initial prompt or image", **figures)


def _divergence_kind(groups: Sequence[DivergenceGroup], kind: str) -> dict:
    """The figures of divergence across seeds or across prompts, with whether they say anything:
    a group of runs differing only in it, with at least ``MIN_COMMON_STEPS`` common steps."""
    varied, shared = ("seed", "network and prompt") if kind == "seed" else ("prompt", "network and seed")
    mine = [g for g in groups if g.kind == kind]
    long_enough = [g for g in mine if g.steps.size >= MIN_COMMON_STEPS]
    fitted = [g for g in long_enough if g.rate_per_invocation is not None]
    reason = None
    if not mine:
        reason = f"no {shared} was run with two or more {varied}s"
    elif not long_enough:
        reason = (f"no group of runs differing only in {varied} shares {MIN_COMMON_STEPS} or more embedded steps "
                  f"(at most {max(int(g.steps.size) for g in mine)})")
    sizes = sorted({len(g.run_ids) for g in long_enough})
    return {
        "valid": reason is None, "reason": reason, "groups": len(long_enough),
        "runs_per_group": None if not sizes else (f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"),
        "median_common_steps": median([float(g.steps.size) for g in long_enough]),
        "median_final_distance": median([float(g.distance[-1]) for g in long_enough]),
        "median_rate_per_invocation": median([g.rate_per_invocation for g in fitted]),
        "median_r_squared": median([g.fit.r_squared for g in fitted if g.fit]),
        "fitted_groups": len(fitted),
        "saturated_groups": sum(bool(g.fit is not None and g.fit.saturated) for g in fitted),
    }


def divergence_finding(groups: Sequence[DivergenceGroup], measures: Sequence[RunMeasures]) -> Finding:
    """Sensitivity to the seed and to the prompt: valid when either can be measured."""
    seed, prompt = _divergence_kind(groups, "seed"), _divergence_kind(groups, "prompt")
    if seed["valid"] or prompt["valid"]:
        return supported(seed=seed, prompt=prompt)
    if blind := all_unsuited([m.run.embedder_unsuited for m in measures]):
        return unsupported(blind, seed=seed, prompt=prompt)
    return unsupported(f"{seed['reason']}, and {prompt['reason']}", seed=seed, prompt=prompt)


def _divergence_sentence(figures: dict, kind: str) -> list[str]:
    """The answer on sensitivity to the seed (``kind="seed"``) or the prompt, from its figures:
    how far apart runs that differ only in it end, and how fast they came apart, flagged where
    D(t) saturated."""
    varied, shared = ("seed", "network and prompt") if kind == "seed" else ("prompt", "network and seed")
    if not figures["valid"]:
        return [f"**Sensitivity to the {varied}:** {TOO_FEW} — {figures['reason']}."]
    line = (f"**Sensitivity to the {varied}:** runs sharing {shared} but differing in {varied} end a median "
            f"**{num(figures['median_final_distance'])}** apart (mean pairwise cosine distance D(t) "
            f"at their last common step; {plural(figures['groups'], 'group')} of {figures['runs_per_group']} runs, "
            f"{num(figures['median_common_steps'])} common steps in the median group). ")
    fitted, saturated = figures["fitted_groups"], figures["saturated_groups"]
    if fitted:
        line += (f"Fitting ln D(t) = a + λt over the first {FIT_STEPS} common steps gives a median growth rate "
                 f"λ = **{num(figures['median_rate_per_invocation'])} per invocation** "
                 f"(median R² {num(figures['median_r_squared'])}, {plural(fitted, 'group')} fitted). ")
        if saturated:
            line += (f"In {saturated} of {fitted} fitted groups D(t) had already reached its plateau "
                     "(or the distance of unrelated embeddings) inside the fit window: saturated, so there λ "
                     "measures the approach to the plateau, not sensitivity to the " + varied + ".")
        else:
            line += "No group had saturated inside the fit window."
    else:
        line += "Too few steps with D(t) > 0 to fit a growth rate (3 are needed)."
    return [line]


def section(report: Report, measures: Sequence[RunMeasures]) -> list[str]:
    """Drift from the initial prompt per run and network, then divergence of runs that share all
    but their seed or all but their prompt; adds findings ``drift`` and ``divergence`` and tables
    ``drift``, ``drift_by_network``, ``divergence`` and ``divergence_by_step``."""
    report.tables["drift"] = _drift_rows(measures)
    usable, left_out = _unsuited(measures)
    groups = divergence_groups(usable, "seed") + divergence_groups(usable, "prompt")
    drift = report.sections["drift"] = drift_finding(measures)
    divergence = report.sections["divergence"] = divergence_finding(groups, measures)
    lines = ["", "## 1. How did it get here, and how sensitive is it to prompt and seed?", ""]
    if left_out:
        lines.append(f"{plural(len(left_out), 'run')} left out of every embedding-based figure of this part: "
                     f"{_left_out_reason(left_out)}.\n")
    lines += notice(drift)
    if drift.valid:
        figures = drift.figures
        lines.append(
            f"**Drift:** the last embedded output of a run is a mean **{num(figures['mean_final_drift'])}** "
            f"away from its initial prompt (cosine distance between the output's embedding and the embedding of "
            f"the run's initial prompt or image, mean over {plural(figures['runs'], 'run')}); consecutive "
            f"outputs are a mean {num(figures['mean_step_distance'])} apart (in networks that alternate text and "
            "image this includes the embedding model's gap between modalities).")
        if figures["unrelated_distance"] is not None:
            lines.append(f"\n*Baseline:* outputs of runs started from another prompt are a mean "
                         f"{num(figures['unrelated_distance'])} from a run's prompt; drift near that means a run has "
                         "moved as far from its prompt as unrelated content is.")
    without = [m for m in usable if m.drift is None and trajectory_rows(m.run).shape[0]]
    if without:
        lines.append(f"\n{plural(len(without), 'run')} without an embedded initial prompt or image "
                     f"({', '.join(short_id(m.run.run_id) for m in without[:8])}) "
                     f"{'is' if len(without) == 1 else 'are'} left out of the drift figures and means.")
    per_network: list[Row] = []
    for network in sorted({m.run.network_name for m in measures}):
        mine = [m for m in usable if m.run.network_name == network]
        per_network.append({
            "network": network, "runs": len(mine), "runs_with_reference": sum(m.drift is not None for m in mine),
            "mean_final_drift": mean([m.final_drift for m in mine]),
            "mean_drift": mean([float(m.drift.mean()) for m in mine if m.drift is not None and m.drift.size]),
            "mean_step_distance": mean([float(m.step_distance.mean()) for m in mine if m.step_distance.size]),
        })
    report.tables["drift_by_network"] = per_network
    if drift.valid:
        lines += markdown_table(per_network, [("network", "network"), ("runs", "runs"),
                                              ("runs_with_reference", "with prompt embedding"),
                                              ("mean_final_drift", "mean final drift"),
                                              ("mean_step_distance", "mean step distance")], "drift_by_network")
        lines += figure(report, "drift.png", plots.drift_figure(usable), "drift")
        lines += figure(report, "projection.png", plots.projection_figure([m.run for m in usable]), "trajectories")
    lines += notice(divergence)
    lines += ["", *_divergence_sentence(divergence.figures["seed"], "seed"), "",
              *_divergence_sentence(divergence.figures["prompt"], "prompt")]
    rows, by_step = _divergence_rows(groups)
    report.tables["divergence"] = rows
    report.tables["divergence_by_step"] = by_step
    if divergence.valid:
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
