"""Exact orbits from output hashes, semantic stuckness, recurrence and diversity collapse."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.analysis.stuck import (
    PeriodicOrbit,
    diversity_collapse,
    find_periodic_orbit,
    recurrence_matrix,
    semantic_stuck_start,
)
from tracer_pipeline_tests.analysis.helpers import random_walk


def test_fixed_point_of_a_two_model_network() -> None:
    # text → image → text …: from step 4 the same caption and the same image come back.
    hashes = ["t0", "i0", "t1", "i1", "tX", "iX", "tX", "iX", "tX"]
    assert find_periodic_orbit(hashes, network_length=2) == PeriodicOrbit(
        start=4, period=2, network_cycles=1, detected_at=6
    )


def test_two_cycle_of_a_two_model_network() -> None:
    hashes = ["t0", "i0", "tA", "iA", "tB", "iB", "tA", "iA", "tB"]
    assert find_periodic_orbit(hashes, network_length=2) == PeriodicOrbit(
        start=2, period=4, network_cycles=2, detected_at=6
    )


def test_repeat_at_a_different_network_position_is_not_an_orbit() -> None:
    # The same output fed to a different model says nothing about what comes next.
    assert find_periodic_orbit(["a", "b", "c", "a", "d", "e"], network_length=2) is None


def test_fixed_point_of_a_single_model_network() -> None:
    assert find_periodic_orbit([1, 2, 3, 3, 3], network_length=1) == PeriodicOrbit(2, 1, 1, 3)


def test_random_walk_is_not_stuck() -> None:
    walk = random_walk(60, step_size=0.5)
    hashes = [row.tobytes() for row in walk]
    assert find_periodic_orbit(hashes, network_length=2) is None
    assert semantic_stuck_start(walk, threshold=0.95, window=5) is None


def test_semantic_stuck_start_finds_where_the_run_stops_moving() -> None:
    walk = random_walk(20, step_size=0.5).astype(np.float64)
    rng = np.random.default_rng(5)
    # From step 20 on, tiny jitter around the last point.
    stuck = walk[-1] + 1e-3 * rng.normal(size=(15, walk.shape[1]))
    trajectory = np.vstack([walk, stuck])
    assert semantic_stuck_start(trajectory, threshold=0.99, window=5) == 19


def test_semantic_stuck_compares_outputs_of_the_same_model_with_lag() -> None:
    rng = np.random.default_rng(6)
    text, image = rng.normal(size=(2, 32))  # nearly orthogonal: low cross-modal similarity
    trajectory = np.array([text, image] * 6)
    assert semantic_stuck_start(trajectory, threshold=0.9, window=3, lag=1) is None
    assert semantic_stuck_start(trajectory, threshold=0.9, window=3, lag=2) == 0


def test_recurrence_matrix_is_cosine_similarity() -> None:
    trajectory = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 0.0]])
    matrix = recurrence_matrix(trajectory)
    assert matrix.shape == (4, 4)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 3] == pytest.approx(1.0)  # a recurrence
    assert matrix[0, 1] == pytest.approx(0.0)
    assert matrix[0, 2] == pytest.approx(np.sqrt(0.5))
    np.testing.assert_allclose(matrix, matrix.T)


def test_diversity_collapses_when_runs_fall_into_one_attractor() -> None:
    rng = np.random.default_rng(7)
    attractor = rng.normal(size=64)
    runs = []
    for seed in range(4):
        walk = random_walk(20, step_size=0.8, seed=seed).astype(np.float64)
        pull = np.linspace(0, 1, 20)[:, None] ** 2
        runs.append((1 - pull) * walk + pull * attractor / np.linalg.norm(attractor))
    collapse = diversity_collapse(runs, fraction=0.5)
    assert collapse.mean_distance.shape == (20,)
    assert collapse.mean_distance[-1] == pytest.approx(0.0, abs=1e-12)
    assert collapse.collapsed_at is not None and collapse.peak_step < collapse.collapsed_at < 19


def test_independent_walks_do_not_collapse() -> None:
    runs = [random_walk(20, dim=256, seed=s) for s in range(4)]
    assert diversity_collapse(runs).collapsed_at is None
