"""Surrogate trajectories: what a number would be without the structure it claims to measure."""

from __future__ import annotations

import hashlib

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows
from tracer_pipeline.tda.persistence import persistence_diagram

# Surrogate diagrams cost a Rips computation each: runs longer than this are left out of the
# baseline (full Rips above ~2,000 points takes minutes).
MAX_SURROGATE_POINTS = 1000


def shuffled_increments(trajectory: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random walk with the trajectory's own steps in a random order, from its first point,
    each point put back on the unit sphere.

    It keeps how far each step goes and where the run starts, and destroys the order that makes a
    run return to where it has been: loops (H1 bars) of the surrogate are those a walk of those
    steps makes by chance. A Rips diagram ignores the order of its points, so shuffling the
    points themselves would change nothing.
    """
    points = np.asarray(trajectory, dtype=np.float64)
    if points.shape[0] < 2:
        return points.copy()
    steps = np.diff(points, axis=0)
    walk = np.vstack([points[:1], points[0] + np.cumsum(steps[rng.permutation(steps.shape[0])], axis=0)])
    return unit_rows(walk)


def surrogate_total_persistence(run_id: str, trajectory: np.ndarray) -> float | None:
    """Total H1 persistence of the trajectory's :func:`shuffled_increments` surrogate, seeded by
    the run id so that it repeats; None for fewer than 3 or more than ``MAX_SURROGATE_POINTS``
    points. The diagram step stores it with the run's diagram (computed once per run, not again
    by every report)."""
    rows = np.asarray(trajectory)
    if rows.ndim != 2 or rows.shape[0] < 3 or rows.shape[0] > MAX_SURROGATE_POINTS:
        return None
    rng = np.random.default_rng(int(hashlib.sha256(run_id.encode()).hexdigest()[:16], 16))
    bars = persistence_diagram(shuffled_increments(rows, rng), max_dim=1)[1]
    return float(np.sum(bars[:, 1] - bars[:, 0]))
