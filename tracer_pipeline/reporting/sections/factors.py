"""Question 4: which part has the biggest impact? The share of each per-run feature's variance that
each factor (model, network, prompt, seed) explains (η²), and PERMANOVA of diagram distances."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tracer_pipeline.analysis.diagram_distances import diagram_distance_matrix
from tracer_pipeline.analysis.variance import eta_squared_by_factor, permanova
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.compare import diagram_hash
from tracer_pipeline.reporting.data import Report, RunData
from tracer_pipeline.reporting.measures import FACTORS, RunMeasures, factor_level
from tracer_pipeline.reporting.sections.format import TOO_FEW, Row, figure, markdown_table, num, plural
from tracer_pipeline.store import StoreComparison

PERMUTATIONS = 999

# The per-run features whose variance is split between the factors (η²).
FEATURES: tuple[tuple[str, Callable[[RunMeasures], float | int | None]], ...] = (
    ("H0 entropy", lambda m: m.entropy.get(0)),
    ("H1 entropy", lambda m: m.entropy.get(1)),
    ("final drift", lambda m: m.final_drift),
    ("time to stuck", lambda m: m.time_to_stuck),
)


def _levels_by_factor(runs: Sequence[RunData]) -> dict[str, list[str]]:
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
    labels = [f"{o} (R²)" if o == "H1 Wasserstein distances" else f"{o} (η²)" for o in outcomes]
    return plots.factor_effects_figure(labels, factors, values, too_few)


def _effect_rows(measures: Sequence[RunMeasures], diagram_runs: Sequence[RunData],
                 matrix: np.ndarray | None) -> list[Row]:
    """Table ``factor_effects``: η² of each per-run feature on each factor, then PERMANOVA of the
    H1 Wasserstein ``matrix`` between ``diagram_runs`` on each factor."""
    rows: list[Row] = []
    for feature, value in FEATURES:
        have = [m for m in measures if value(m) is not None]
        factors = _levels_by_factor([m.run for m in have])
        if not have or not factors:
            continue
        effects = eta_squared_by_factor(np.array([value(m) for m in have], dtype=np.float64), factors)
        # With a single level η² is 0 by construction, not a finding: left undefined.
        rows += [{"outcome": feature, "method": "eta²", "factor": name,
                  "value": e.eta_squared if e.n_groups > 1 else None, "pseudo_f": None,
                  "p_value": None, "n": e.n, "n_groups": e.n_groups, "smallest_group": e.smallest_group,
                  "too_few": e.too_few} for name, e in effects.items()]
    if matrix is not None:
        for name, levels in _levels_by_factor(diagram_runs).items():
            result = permanova(matrix, levels, permutations=PERMUTATIONS, seed=0)
            rows.append({"outcome": "H1 Wasserstein distances", "method": "PERMANOVA", "factor": name,
                         "value": result.r_squared, "pseudo_f": result.pseudo_f, "p_value": result.p_value,
                         "n": result.n, "n_groups": result.n_groups,
                         "smallest_group": min(Counter(levels).values()), "too_few": result.too_few})
    return rows


def _strongest_factors(rows: Sequence[Row]) -> list[str]:
    """One line per outcome naming the factor that explains the most of it (and any tied), or
    saying there are too few runs; factors flagged too few never win."""
    lines: list[str] = []
    usable = [r for r in rows if not r["too_few"] and r["value"] is not None]
    for outcome in dict.fromkeys(r["outcome"] for r in rows):
        best = max((r for r in usable if r["outcome"] == outcome), key=lambda r: float(r["value"]), default=None)
        statistic = "R²" if outcome == "H1 Wasserstein distances" else "η²"
        if best is None:
            lines.append(f"- **{outcome}:** {TOO_FEW} (every factor has a single level, a level with one run, or "
                         "the outcome does not vary).")
        else:
            extra = f", p = {num(best['p_value'], 2)}" if best["p_value"] is not None else ""
            ties = [str(r["factor"]) for r in usable if r["outcome"] == outcome and r is not best
                    and abs(float(r["value"]) - float(best["value"])) < 1e-9]
            tied = f" (as does {', '.join(ties)})" if ties else ""
            lines.append(f"- **{outcome}:** **{best['factor']}** explains the most{tied}, {statistic} = "
                         f"**{num(best['value'], 2)}** ({best['n']} runs in {best['n_groups']} groups, smallest "
                         f"{best['smallest_group']}{extra}).")
    return lines


def section(report: Report, measures: Sequence[RunMeasures], comparison: StoreComparison | None) -> list[str]:
    """Which factor explains the most of each outcome, with the method, the confounded factors
    and the diagram distances; adds table ``factor_effects``."""
    lines = ["", "## 4. Which part has the biggest impact?", ""]
    diagram_runs = [m.run for m in measures if m.run.diagram]
    matrix = _h1_wasserstein(diagram_runs, comparison) if len(diagram_runs) >= 2 else None
    rows = _effect_rows(measures, diagram_runs, matrix)
    report.tables["factor_effects"] = rows
    if len(measures) < 3:
        lines.append(f"**{TOO_FEW.capitalize()}:** {plural(len(measures), 'run')} cannot separate the effect of a "
                     "factor from chance; the per-run features are in table `run_metrics`.")
    lines += _strongest_factors(rows)
    lines.append(
        "\nMethod: η² = SS_between / SS_total of a one-way ANOVA of each per-run feature on each factor alone "
        "(H0 and H1 persistent entropy of the run's diagram; final drift; time to stuck = the first step from which "
        "the run is exactly or semantically stuck, and for a run never stuck its number of outputs, a lower bound); "
        f"PERMANOVA (pseudo-F, R², {PERMUTATIONS} permutations) of the H1 1-Wasserstein distances between the "
        "runs' diagrams. A factor is flagged too few when it has one level or a level with a single run.")
    if rows:
        lines += markdown_table(rows, [("outcome", "outcome"), ("factor", "factor"), ("value", "η² / R²"),
                                       ("p_value", "p"), ("n", "n"), ("n_groups", "groups"),
                                       ("smallest_group", "smallest"), ("too_few", "too few")], "factor_effects")
        lines += figure(report, "factor_effects.png", _effects_figure(rows), "factor effects")
    confounded = _confounded(_levels_by_factor([m.run for m in measures]))
    if confounded:
        lines.append(f"Confounded in this design (they group the runs identically): {'; '.join(confounded)}.")
    if matrix is not None:
        lines += figure(report, "distance_heatmap.png",
                        plots.distance_heatmap_figure(matrix, diagram_runs, "H1 1-Wasserstein distance"),
                        "diagram distances")
    if diagram_runs:
        lines += figure(report, "diagrams.png", plots.persistence_diagrams_figure(diagram_runs),
                        "persistence diagrams")
    lines.append(
        "\n*What it means:* the factor with the largest share is the part of the network that most decides the "
        "outcome here. *What it cannot say:* each factor is taken alone, so in an unbalanced or confounded design "
        "shares overlap and need not add up to 1; with few runs per level a large η² can be chance (n singleton "
        "groups give η² = 1 whatever the data); p-values are not corrected for testing several factors.")
    return lines
