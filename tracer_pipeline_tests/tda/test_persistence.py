"""Persistence diagrams follow the documented conventions and agree with ripser."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import ripser

from tracer_pipeline.tda.persistence import (
    diagram_summary,
    pairwise_euclidean,
    persistence_diagram,
    persistent_entropy,
)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _circle_in_r3(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    circle = np.column_stack([np.cos(angle), np.sin(angle), np.zeros(n)])
    return (circle + rng.normal(scale=0.02, size=circle.shape)).astype(np.float32)


def test_circle_has_one_dominant_h1_bar() -> None:
    diagram = persistence_diagram(_circle_in_r3(60), max_dim=1)
    lengths = np.sort(diagram[1][:, 1] - diagram[1][:, 0])[::-1]
    assert lengths[0] > 1.0  # the loop is born near 0 and dies near √3
    assert lengths[1:].sum() < 0.2 * lengths[0]


def test_exact_duplicates_give_one_h0_bar_per_distinct_point() -> None:
    rng = np.random.default_rng(1)
    distinct = _unit_rows(rng.normal(size=(40, 64)))
    # A stuck run: the last output repeated, and earlier outputs revisited exactly.
    points = np.vstack([distinct, np.repeat(distinct[-1:], 25, axis=0), distinct[:10]])
    diagram = persistence_diagram(points, max_dim=1)
    assert diagram[0].shape[0] == 40
    assert np.count_nonzero(np.isinf(diagram[0][:, 1])) == 1
    assert np.all(diagram[0][:, 1] > diagram[0][:, 0])
    assert np.all(np.diag(pairwise_euclidean(points)) == 0)
    assert pairwise_euclidean(points)[39, 40] == 0.0


def test_empty_and_single_point_inputs() -> None:
    empty = persistence_diagram(np.empty((0, 8), dtype=np.float32), max_dim=2)
    assert sorted(empty) == [0, 1, 2]
    assert all(bars.shape == (0, 2) for bars in empty.values())

    single = persistence_diagram(np.ones((1, 8), dtype=np.float32), max_dim=1)
    assert single[0].tolist() == [[0.0, math.inf]]
    assert single[1].shape == (0, 2)


def test_all_points_identical_is_one_component() -> None:
    diagram = persistence_diagram(np.ones((7, 3), dtype=np.float32), max_dim=1)
    assert diagram[0].tolist() == [[0.0, math.inf]]
    assert diagram[1].shape == (0, 2)


@pytest.mark.parametrize("bad", [np.zeros(3), np.array([[0.0, np.nan]])])
def test_rejects_bad_points(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        persistence_diagram(bad)


def test_rejects_max_dim_above_two() -> None:
    with pytest.raises(ValueError, match="max_dim"):
        persistence_diagram(np.zeros((3, 2)), max_dim=3)


def test_entropy_of_known_bars() -> None:
    # Four bars of equal length: p_i = 1/4, E = ln 4. Infinite and zero-length bars ignored.
    bars = np.array([[0, 1], [1, 2], [0.5, 1.5], [2, 3], [0, np.inf], [1, 1]], dtype=float)
    assert persistent_entropy(bars) == pytest.approx(math.log(4))
    # Lengths 1 and 3: p = (1/4, 3/4).
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert persistent_entropy(np.array([[0, 1], [0, 3]])) == pytest.approx(expected)
    assert persistent_entropy(np.empty((0, 2))) == 0.0


def test_summary_excludes_the_infinite_bar_and_is_json() -> None:
    diagram = {0: np.array([[0, 1.0], [0, 3.0], [0, np.inf]]), 1: np.empty((0, 2))}
    summary = diagram_summary(diagram)
    assert summary["H0"]["count"] == 3
    assert summary["H0"]["infinite_bars_excluded"] == 1
    assert summary["H0"]["total_persistence"] == 4.0
    assert summary["H0"]["max_persistence"] == 3.0
    assert summary["H0"]["mean_persistence"] == 2.0
    assert summary["H0"]["std_persistence"] == 1.0
    assert summary["H1"] == {
        "count": 0,
        "infinite_bars_excluded": 0,
        "entropy": 0.0,
        "total_persistence": 0.0,
        "max_persistence": 0.0,
        "mean_persistence": 0.0,
        "std_persistence": 0.0,
    }
    assert json.loads(json.dumps(summary)) == summary


def test_giotto_ph_matches_ripser_on_a_random_cloud() -> None:
    cloud = _unit_rows(np.random.default_rng(2).normal(size=(70, 4)))
    ours = persistence_diagram(cloud, max_dim=2)
    reference = ripser.ripser(pairwise_euclidean(cloud), maxdim=2, distance_matrix=True)["dgms"]
    for dim in range(3):
        theirs = reference[dim][reference[dim][:, 1] > reference[dim][:, 0]]
        theirs = theirs[np.lexsort((theirs[:, 1], theirs[:, 0]))]
        assert ours[dim].shape == theirs.shape
        np.testing.assert_allclose(ours[dim], theirs, rtol=1e-6, atol=1e-7)
    # The comparison exercised H1 and H2, not only empty diagrams.
    assert ours[1].shape[0] > 0 and ours[2].shape[0] > 0


@pytest.mark.parametrize("seed", range(6))
def test_h0_alone_equals_giotto_ph_bar_for_bar(seed: int) -> None:
    """max_dim=0 takes single linkage instead of giotto-ph; the stored diagram must not change."""
    rng = np.random.default_rng(seed)
    points = _unit_rows(rng.normal(size=(int(rng.integers(2, 200)), [3, 64, 512][seed % 3])))
    if seed % 2:  # a stuck run: exact repeats and points on a coarse grid (tied distances)
        points[rng.integers(0, len(points), len(points) // 3)] = points[0]
        points = np.round(points, 1)
    assert persistence_diagram(points, max_dim=0)[0].tobytes() == persistence_diagram(points, max_dim=1)[0].tobytes()
