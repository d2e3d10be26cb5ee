"""Mean pairwise distance across runs and the fitted exponential divergence rate."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.analysis.divergence import (
    fit_divergence_rate,
    mean_pairwise_distance_by_step,
)
from tracer_pipeline_tests.analysis.helpers import at_cosine_distance, random_walk


def _diverging_pair(rate: float, initial: float, plateau: float, steps: int) -> list[np.ndarray]:
    """Two runs whose cosine distance is min(initial · e^{rate·t}, plateau) at step t."""
    rng = np.random.default_rng(3)
    base = random_walk(steps, dim=32, seed=3).astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)  # exactly unit in float64
    planned = np.minimum(initial * np.exp(rate * np.arange(steps)), plateau)
    other = np.array(
        [at_cosine_distance(x, d, rng.normal(size=32)) for x, d in zip(base, planned, strict=True)]
    )
    return [base, other]


def test_mean_pairwise_distance_matches_the_direct_sum() -> None:
    runs = [random_walk(12, seed=s) for s in range(4)]
    direct = np.zeros(12)
    for i in range(4):
        for j in range(i + 1, 4):
            u = runs[i] / np.linalg.norm(runs[i], axis=1, keepdims=True)
            v = runs[j] / np.linalg.norm(runs[j], axis=1, keepdims=True)
            direct += 1 - np.sum(u.astype(float) * v, axis=1)
    np.testing.assert_allclose(mean_pairwise_distance_by_step(runs), direct / 6, atol=1e-6)


def test_identical_runs_have_zero_distance_and_no_rate() -> None:
    run = random_walk(10)
    distance = mean_pairwise_distance_by_step([run, run.copy()])
    assert np.all(distance == 0)
    fit = fit_divergence_rate(distance)
    assert fit.rate is None and fit.points_used == 0 and not fit.saturated


def test_exponential_divergence_rate_is_recovered() -> None:
    runs = _diverging_pair(rate=0.5, initial=1e-4, plateau=0.8, steps=30)
    distance = mean_pairwise_distance_by_step(runs)
    fit = fit_divergence_rate(distance, fit_steps=10)
    assert fit.rate == pytest.approx(0.5, rel=1e-6)
    assert fit.intercept == pytest.approx(np.log(1e-4), rel=1e-6)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-9)
    assert fit.points_used == 10
    assert not fit.saturated
    assert fit.peak_distance == pytest.approx(0.8)


def test_distances_already_at_the_plateau_are_flagged_saturated() -> None:
    runs = _diverging_pair(rate=2.0, initial=1e-3, plateau=0.6, steps=30)
    fit = fit_divergence_rate(mean_pairwise_distance_by_step(runs), fit_steps=10)
    assert fit.saturated


def test_distances_near_the_bound_of_the_space_are_flagged_saturated() -> None:
    # Unrelated runs: independent directions sit at cosine distance ≈ 1 from the first step.
    runs = [random_walk(10, dim=512, seed=s) for s in range(3)]
    fit = fit_divergence_rate(mean_pairwise_distance_by_step(runs), fit_steps=10)
    assert fit.saturated


def test_runs_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        mean_pairwise_distance_by_step([random_walk(5), random_walk(6)])
