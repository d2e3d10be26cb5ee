"""Constructed trajectories with known behaviour, shared by the analysis tests."""

from __future__ import annotations

import numpy as np


def random_walk(steps: int, dim: int = 64, step_size: float = 0.3, seed: int = 0) -> np.ndarray:
    """A walk on the unit sphere: x_{t+1} = normalise(x_t + step_size · g), g ~ N(0, I/d)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=dim)
    points = []
    for _ in range(steps):
        x = x / np.linalg.norm(x)
        points.append(x)
        x = x + step_size * rng.normal(size=dim) / np.sqrt(dim)
    return np.array(points, dtype=np.float32)


def at_cosine_distance(base: np.ndarray, distance: float, direction: np.ndarray) -> np.ndarray:
    """The unit vector at cosine distance ``distance`` from unit ``base``, towards ``direction``."""
    ortho = direction - (direction @ base) * base
    ortho /= np.linalg.norm(ortho)
    similarity = 1.0 - distance
    return similarity * base + np.sqrt(1.0 - similarity**2) * ortho
