"""Semantic drift: how far a run's outputs move from where it started, and how fast.

A trajectory is the (T, d) array of a run's output embeddings x_0 … x_{T−1}, in invocation
order, all from one embedding model.
"""

from __future__ import annotations

import numpy as np

from tracer_pipeline.analysis.cosine import paired_cosine_distances


def drift_from_reference(trajectory: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine distance of every step from a reference vector: D_t = 1 − s(x_t, r).

    Args:
        trajectory: (T, d) output embeddings.
        reference: (d,) reference embedding, typically the initial prompt's.

    Returns:
        (T,) float64 array in [0, 2]; exactly 0 where an output embeds like the reference.
    """
    steps = np.asarray(trajectory)
    reference = np.asarray(reference).reshape(1, -1)
    if steps.ndim != 2 or reference.shape[1] != steps.shape[1]:
        raise ValueError(
            f"reference has shape {reference.shape[1:]} but the trajectory {steps.shape}: both "
            "must come from the same embedding model"
        )
    return paired_cosine_distances(steps, reference)


def step_distances(trajectory: np.ndarray) -> np.ndarray:
    """Cosine distance between consecutive steps: Δ_t = 1 − s(x_t, x_{t+1}), t = 0 … T−2.

    In a network that alternates modalities (text → image → text …) consecutive outputs are of
    different kinds, so Δ_t also contains the text–image gap of the embedding model.

    Returns:
        (T−1,) float64 array in [0, 2], exactly 0 where an output repeats; empty for T < 2.
    """
    steps = np.asarray(trajectory)
    return paired_cosine_distances(steps[:-1], steps[1:])
