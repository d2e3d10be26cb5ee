"""Question 4: which part has the biggest impact? The share of each per-run feature's variance that
each factor (model, network, prompt, seed) explains (η²), and PERMANOVA of diagram distances."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tracer_pipeline.analysis.variance import eta_squared_by_factor, permanova
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.data import Report, RunData
from tracer_pipeline.reporting.findings import (
    MIN_RUNS_PER_LEVEL,
    Finding,
    all_unsuited,
    notice,
    supported,
    unsupported,
)
from tracer_pipeline.reporting.measures import FACTORS, RunMeasures, factor_level
from tracer_pipeline.reporting.sections.format import TOO_FEW, Row, figure, markdown_table, num, plural
from tracer_pipeline.reporting.sections.topology import DiagramDistances

PERMUTATIONS = 999
PERMANOVA_OUTCOME = "H1 Wasserstein distances"
SIGNIFICANCE = 0.05  # a PERMANOVA p above this is reported as not distinguishable from chance

# The per-run features whose variance is split between the factors (η²).
FEATURES: tuple[tuple[str, Callable[[RunMeasures], float | int | None]], ...] = (
    ("H0 entropy", lambda m: m.entropy.get(0)),
    ("H1 entropy", lambda m: m.entropy.get(1)),
    ("final drift", lambda m: m.final_drift),
    ("time to stuck", lambda m: m.time_to_stuck),
)


def _levels_by_factor(runs: Sequence[RunData], names: Sequence[str] = FACTORS) -> dict[str, list[str]]:
    """Factor → the level of each run, for the factors every run has a level of."""
    levels = {f: [factor_level(r, f) for r in runs] for f in names}
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


def _effects_figure(rows: Sequence[Row]) -> bytes:
    """The ``factor_effects`` rows as an outcome × factor grid of η² or R², too-few cells marked."""
    outcomes = list(dict.fromkeys(str(r["outcome"]) for r in rows))
    factors = list(dict.fromkeys(str(r["factor"]) for r in rows))
    values = np.full((len(outcomes), len(factors)), np.nan)
    too_few = np.zeros(values.shape, dtype=bool)
    for r in rows:
        i, j = outcomes.index(str(r["outcome"])), factors.index(str(r["factor"]))
        values[i, j] = np.nan if r["value"] is None else float(r["value"])
        too_few[i, j] = bool(r["too_few"])
    labels = [f"{o} (R²)" if o == PERMANOVA_OUTCOME else f"{o} (η²)" for o in outcomes]
    return plots.factor_effects_figure(labels, factors, values, too_few)


def effect_rows(measures: Sequence[RunMeasures], diagram_runs: Sequence[RunData], matrix: np.ndarray | None,
                features: Sequence[str] = tuple(name for name, _ in FEATURES),
                names: Sequence[str] = FACTORS) -> list[Row]:
    """Table ``factor_effects``: η² of each per-run feature named in ``features`` on each factor
    in ``names``, then PERMANOVA of the H1 Wasserstein ``matrix`` between ``diagram_runs``."""
    rows: list[Row] = []
    for feature, value in FEATURES:
        if feature not in features:
            continue
        have = [m for m in measures if value(m) is not None]
        factors = _levels_by_factor([m.run for m in have], names)
        if not have or not factors:
            continue
        effects = eta_squared_by_factor(np.array([value(m) for m in have], dtype=np.float64), factors)
        # With a single level η² is 0 by construction, not a finding: left undefined.
        rows += [{"outcome": feature, "method": "eta²", "factor": name,
                  "value": e.eta_squared if e.n_groups > 1 else None, "pseudo_f": None,
                  "p_value": None, "n": e.n, "n_groups": e.n_groups, "smallest_group": e.smallest_group,
                  "too_few": e.too_few} for name, e in effects.items()]
    if matrix is not None:
        for name, levels in _levels_by_factor(diagram_runs, names).items():
            result = permanova(matrix, levels, permutations=PERMUTATIONS, seed=0)
            rows.append({"outcome": PERMANOVA_OUTCOME, "method": "PERMANOVA", "factor": name,
                         "value": result.r_squared, "pseudo_f": result.pseudo_f, "p_value": result.p_value,
                         "n": result.n, "n_groups": result.n_groups,
                         "smallest_group": min(Counter(levels).values()), "too_few": result.too_few})
    return rows


def outcome_figures(rows: Sequence[Row], invalid: dict[str, str]) -> dict[str, dict]:
    """Per outcome: whether any factor can be judged (≥ 2 levels of ≥ 2 runs each, and the outcome
    not resting on invalid diagram distances, ``invalid`` outcome → reason), and the factor that
    explains the most. Factors flagged too few never win."""
    result: dict[str, dict] = {}
    for outcome in dict.fromkeys([*(str(r["outcome"]) for r in rows), *invalid]):
        usable = [r for r in rows if r["outcome"] == outcome and not r["too_few"] and r["value"] is not None]
        best = max(usable, key=lambda r: float(r["value"]), default=None)
        reason = invalid.get(outcome)
        if reason is None and best is None:
            judged = [r for r in rows if r["outcome"] == outcome and not r["too_few"]]
            reason = ("it does not vary between runs" if judged else
                      f"every factor has a single level or a level with fewer than {MIN_RUNS_PER_LEVEL} runs")
        ties = [str(r["factor"]) for r in usable if best is not None and r is not best
                and abs(float(r["value"]) - float(best["value"])) < 1e-9]
        result[outcome] = {
            "valid": reason is None, "reason": reason,
            "statistic": "R²" if outcome == PERMANOVA_OUTCOME else "η²",
            "strongest_factor": None if reason or best is None else best["factor"], "tied_with": ties if best else [],
            "value": None if reason or best is None else best["value"],
            "p_value": None if reason or best is None else best["p_value"],
            "n": None if best is None else best["n"], "n_groups": None if best is None else best["n_groups"],
            "smallest_group": None if best is None else best["smallest_group"],
        }
    return result


def _strongest_lines(outcomes: dict[str, dict]) -> list[str]:
    """One line per outcome naming the factor that explains the most, or why none can be named."""
    lines: list[str] = []
    for outcome, o in outcomes.items():
        if not o["valid"]:
            lines.append(f"- **{outcome}:** {TOO_FEW} — {o['reason']}.")
            continue
        tied = f" (as does {', '.join(o['tied_with'])})" if o["tied_with"] else ""
        extra = ""
        if o["p_value"] is not None:
            extra = f", p = {num(o['p_value'], 2)}"
            if o["p_value"] > SIGNIFICANCE:
                extra += "; not distinguishable from chance"
        lines.append(f"- **{outcome}:** **{o['strongest_factor']}** explains the most{tied}, {o['statistic']} = "
                     f"**{num(o['value'], 2)}** ({o['n']} runs in {o['n_groups']} groups, smallest "
                     f"{o['smallest_group']}{extra}).")
    return lines


def factors_finding(outcomes: dict[str, dict], runs: int, blind: str | None = None) -> Finding:
    """Valid when some outcome can be attributed to a factor (``outcome_figures``); ``blind`` is
    the reason when the embedding model is unsuited to every run."""
    figures = {"runs": runs, "outcomes": outcomes}
    if blind:
        return unsupported(blind, **figures)
    if runs < 3:
        return unsupported(f"{plural(runs, 'run')} cannot separate the effect of a factor from chance", **figures)
    if not any(o["valid"] for o in outcomes.values()):
        return unsupported("no outcome can be attributed to a factor: "
                           + "; ".join(f"{name}: {o['reason']}" for name, o in outcomes.items()), **figures)
    return supported(**figures)


def section(report: Report, measures: Sequence[RunMeasures], shape: DiagramDistances) -> list[str]:
    """Which factor explains the most of each outcome, with the method, the confounded factors
    and the diagram distances; adds finding ``factors`` and table ``factor_effects``. Outcomes
    resting on the diagrams (H1 entropy, PERMANOVA) are not judged when the diagram distances
    are invalid; runs of outputs the embedder is unsuited to take no part."""
    lines = ["", "## 4. Which part has the biggest impact?", ""]
    usable = [m for m in measures if m.run.embedder_unsuited is None]
    topology_ok = shape.finding.valid
    features = [name for name, _ in FEATURES if topology_ok or name != "H1 entropy"]
    rows = effect_rows(usable, shape.runs, shape.matrix if topology_ok else None, features)
    report.tables["factor_effects"] = rows
    invalid = {} if topology_ok else {
        name: f"rests on the diagram distances, which cannot be trusted here: {shape.finding.reason}"
        for name in ("H1 entropy", PERMANOVA_OUTCOME)}
    outcomes = outcome_figures(rows, invalid)
    finding = report.sections["factors"] = factors_finding(outcomes, len(usable),
                                                           all_unsuited([m.run.embedder_unsuited for m in measures]))
    lines += notice(finding)
    if finding.valid:
        lines += _strongest_lines(outcomes)
    lines.append(
        "\nMethod: η² = SS_between / SS_total of a one-way ANOVA of each per-run feature on each factor alone "
        "(H0 and H1 persistent entropy of the run's diagram; final drift; time to stuck = the first step from which "
        "the run is exactly or semantically stuck, and for a run never stuck its number of outputs, a lower bound); "
        f"PERMANOVA (pseudo-F, R², {PERMUTATIONS} permutations) of the H1 1-Wasserstein distances between the "
        "runs' diagrams. A factor is flagged too few when it has one level or a level with a single run.")
    if rows and finding.valid:
        lines += markdown_table(rows, [("outcome", "outcome"), ("factor", "factor"), ("value", "η² / R²"),
                                       ("p_value", "p"), ("n", "n"), ("n_groups", "groups"),
                                       ("smallest_group", "smallest"), ("too_few", "too few")], "factor_effects")
        lines += figure(report, "factor_effects.png", _effects_figure(rows), "factor effects")
    confounded = _confounded(_levels_by_factor([m.run for m in usable]))
    if confounded:
        lines.append(f"Confounded in this design (they group the runs identically): {'; '.join(confounded)}.")
    if topology_ok and shape.matrix is not None:
        lines += figure(report, "distance_heatmap.png",
                        plots.distance_heatmap_figure(shape.matrix, shape.runs, "H1 1-Wasserstein distance"),
                        "diagram distances")
        lines += figure(report, "diagrams.png", plots.persistence_diagrams_figure(shape.runs), "persistence diagrams")
    lines.append(
        "\n*What it means:* the factor with the largest share is the part of the network that most decides the "
        "outcome here. *What it cannot say:* each factor is taken alone, so in an unbalanced or confounded design "
        "shares overlap and need not add up to 1; with few runs per level a large η² can be chance (n singleton "
        "groups give η² = 1 whatever the data); p-values are not corrected for testing several factors.")
    return lines
