"""The shape of the trajectories, which questions 3 and 4 rest on: can the persistence diagrams of
this experiment's runs be compared at all, and do their loops beat a random walk's?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracer_pipeline.analysis.diagram_distances import diagram_distance_matrix
from tracer_pipeline.analysis.surrogates import surrogate_total_persistence
from tracer_pipeline.reporting.compare import diagram_hash, pair_sample
from tracer_pipeline.reporting.data import RunData
from tracer_pipeline.reporting.distance_cache import DistanceCache
from tracer_pipeline.reporting.findings import (
    MIN_H1_FRACTION,
    MIN_POINTS,
    Finding,
    all_unsuited,
    notice,
    supported,
    unsupported,
)
from tracer_pipeline.reporting.measures import trajectory_rows
from tracer_pipeline.reporting.sections.format import median, num, plural
from tracer_pipeline.store import StoreComparison
from tracer_pipeline.tda.persistence import finite_bars


@dataclass(frozen=True)
class DiagramDistances:
    """The runs whose H1 diagrams are compared, their H1 1-Wasserstein matrix (None with fewer than
    two), and whether the comparison can be trusted."""

    runs: list[RunData]
    matrix: np.ndarray | None
    finding: Finding


def h1_wasserstein(runs: Sequence[RunData], comparison: StoreComparison | None,
                   distances: DistanceCache | None = None, key: str = "") -> np.ndarray:
    """The H1 Wasserstein matrix between ``runs``: from the comparison when its matrices cover
    them all (all pairs, or a sample holding these runs) with their current diagrams, else
    computed here, with ``distances`` (under ``key``) reusing the pairs of the previous report's."""
    hashes = [diagram_hash(r.diagram) for r in runs]
    if comparison is not None and (1, "wasserstein") in comparison.matrices:
        compared = dict(zip(comparison.run_ids, comparison.diagram_hashes, strict=True))
        index = {run_id: i for i, run_id in enumerate(comparison.matrix_ids)}
        if all(r.run_id in index and compared[r.run_id] == digest for r, digest in zip(runs, hashes, strict=True)):
            rows = [index[r.run_id] for r in runs]
            return comparison.matrices[(1, "wasserstein")][np.ix_(rows, rows)]
    bars = [finite_bars(r.diagram, 1) for r in runs]
    if distances is None:
        return diagram_distance_matrix(bars, "wasserstein")
    return distances.matrix(key, [r.run_id for r in runs], hashes, bars)


def surrogate_persistence(run: RunData) -> float | None:
    """Total H1 persistence of the run's shuffled-increments surrogate: the one stored with its
    diagram, else (a diagram stored before surrogates were) computed here."""
    if run.surrogate_h1_total_persistence is not None:
        return run.surrogate_h1_total_persistence
    return surrogate_total_persistence(run.run_id, trajectory_rows(run))


def diagram_distances(runs: Sequence[RunData], comparison: StoreComparison | None,
                      distances: DistanceCache | None = None, key: str = "") -> DiagramDistances:
    """Diagram distances between ``runs`` (this experiment's) with diagrams, of outputs the
    embedder is suited to, and whether they say anything: at least two runs, and at least
    ``MIN_H1_FRACTION`` of them with a finite H1 bar. Baseline: each run's total H1 persistence
    against that of its shuffled-increments surrogate."""
    blind = all_unsuited([r.embedder_unsuited for r in runs])
    every = [r for r in runs if r.diagram and r.embedder_unsuited is None]
    # Above MAX_ALL_PAIRS_RUNS the matrix (and the PERMANOVA and heatmap made from it) is that of a
    # fixed sample: all pairs of 10,000 runs would take 800 MB and minutes.
    with_diagram = pair_sample(every)
    with_h1 = [r for r in with_diagram if finite_bars(r.diagram, 1).size]
    points = [int(trajectory_rows(r).shape[0]) for r in with_diagram]
    matrix = h1_wasserstein(with_diagram, comparison, distances, key) if len(with_diagram) >= 2 else None
    pairs = matrix[np.triu_indices(len(with_diagram), k=1)] if matrix is not None else np.zeros(0)
    totals = [float(np.sum(np.diff(finite_bars(r.diagram, 1), axis=1))) for r in with_h1]
    surrogates = {r.run_id: surrogate_persistence(r) for r in with_h1}
    compared = [(total, surrogates[r.run_id]) for r, total in zip(with_h1, totals, strict=True)
                if surrogates[r.run_id] is not None]
    figures = {
        "runs": len(with_diagram), "runs_with_h1_bar": len(with_h1), "median_embedded_outputs": median(points),
        "median_pair_distance": float(np.median(pairs)) if pairs.size else None, "pairs": int(pairs.size),
        "median_total_h1_persistence": median(totals),
        "surrogate_median_total_h1_persistence": median([s for _, s in compared]),
        "runs_above_surrogate": sum(total > s for total, s in compared), "runs_with_surrogate": len(compared),
    }
    if len(with_diagram) < len(every):
        figures["sampled_from"] = len(every)
    if blind:
        finding = unsupported(blind, **figures)
    elif len(with_diagram) < 2:
        finding = unsupported(f"{plural(len(with_diagram), 'run')} with a persistence diagram; distances need two",
                              **figures)
    elif len(with_h1) < 2 or len(with_h1) < MIN_H1_FRACTION * len(with_diagram):
        finding = unsupported(
            f"only {len(with_h1)} of {len(with_diagram)} runs have a finite H1 bar (a loop in their trajectory; the "
            f"runs have a median {num(median(points))} embedded outputs, and fewer than {MIN_POINTS} rarely make "
            "one), so most H1 diagrams are empty and the distances between them are 0 whatever the runs did",
            **figures)
    else:
        finding = supported(**figures)
    return DiagramDistances(with_diagram, matrix, finding)


def lines(shape: DiagramDistances) -> list[str]:
    """The Markdown that says whether the diagrams can be compared, and how their loops compare
    with a random walk's."""
    finding = shape.finding
    f = finding.figures
    result = notice(finding)
    if finding.valid:
        result.append(
            f"**Shape of the trajectories:** **{f['runs_with_h1_bar']} of {f['runs']}** runs have a finite H1 bar "
            f"(median {num(f['median_embedded_outputs'])} embedded outputs); the median H1 1-Wasserstein distance "
            f"between two of them is {num(f['median_pair_distance'])} ({f['pairs']} pairs)."
            + (f" These are a fixed sample of {f['runs']} of the experiment's {f['sampled_from']} runs with a diagram "
               "(the runs whose ids hash lowest): all pairs of so many would not fit; the factor analysis of the "
               "diagram distances below rests on the same sample." if "sampled_from" in f else ""))
        if f["runs_with_surrogate"]:
            result.append(
                f"\n*Baseline:* the median total H1 persistence of a run is {num(f['median_total_h1_persistence'])}, "
                f"and {num(f['surrogate_median_total_h1_persistence'])} for a random walk of the same steps in a "
                f"shuffled order; **{f['runs_above_surrogate']} of {f['runs_with_surrogate']}** runs have more than "
                "their walk" + (" — loops made by returning where they were, not by chance." if
                                f["runs_above_surrogate"] > f["runs_with_surrogate"] / 2 else
                                ": most runs' loops are no larger than a walk of the same steps would make by chance, "
                                "so their diagrams say how far the runs wander more than where they return."))
    return result
