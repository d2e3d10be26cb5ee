"""Surrogate trajectories: what a number would be without the structure it claims to measure."""

from __future__ import annotations

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows


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
