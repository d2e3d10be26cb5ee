"""Drift from the initial prompt and step-to-step distance."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.analysis.drift import drift_from_reference, step_distances
from tracer_pipeline_tests.analysis.helpers import at_cosine_distance


def test_drift_recovers_known_distances_from_the_prompt() -> None:
    rng = np.random.default_rng(0)
    prompt = rng.normal(size=32)
    prompt /= np.linalg.norm(prompt)
    planned = np.array([0.0, 0.1, 0.4, 1.0, 1.5])
    trajectory = np.array([at_cosine_distance(prompt, d, rng.normal(size=32)) for d in planned])
    # Scaled rows: drift depends on direction only.
    np.testing.assert_allclose(drift_from_reference(3 * trajectory, prompt), planned, atol=1e-12)


def test_step_distances_of_a_fixed_point_are_zero_then_positive() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 16))
    trajectory = np.array([a, a, a, b])
    distances = step_distances(trajectory)
    assert distances.shape == (3,)
    np.testing.assert_allclose(distances[:2], 0.0, atol=1e-15)
    assert distances[2] > 0.1


def test_step_distances_of_a_single_step_is_empty() -> None:
    assert step_distances(np.ones((1, 4))).shape == (0,)


def test_reference_from_another_embedding_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="same embedding model"):
        drift_from_reference(np.ones((3, 8)), np.ones(4))


def test_zero_embedding_is_rejected() -> None:
    with pytest.raises(ValueError, match="zero"):
        step_distances(np.array([[1.0, 0.0], [0.0, 0.0]]))
