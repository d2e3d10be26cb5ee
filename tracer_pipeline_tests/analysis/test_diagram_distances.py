"""Diagram distances agree with persim's definitions; all-pairs and nearest earlier runs."""

from __future__ import annotations

import warnings

import numpy as np
import persim
import pytest

from tracer_pipeline.analysis.diagram_distances import diagram_distance, diagram_distance_matrix, distance_lower_bounds
from tracer_pipeline.analysis.nearest_runs import nearest_earlier_by_candidates, nearest_earlier_runs


def _random_diagrams(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    diagrams = []
    for size in rng.integers(0, 30, count):
        birth = rng.uniform(0, 1, size)
        # Mostly short bars near the diagonal and a few long ones, as in H1 of a trajectory.
        diagrams.append(np.column_stack([birth, birth + rng.exponential(0.1, size)]))
    return diagrams


def _persim(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # persim warns about the infinite bars it drops
        return persim.bottleneck(a, b) if metric == "bottleneck" else persim.wasserstein(a, b)


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_all_pairs_match_persim(metric: str) -> None:
    diagrams = _random_diagrams(14, seed=0)
    diagrams[2] = np.vstack([diagrams[2], [[0.0, np.inf]]])  # an H0-style infinite bar
    diagrams[5] = np.array([[0.2, 0.4], [0.2, 0.4], [0.3, 0.3]])  # duplicates, zero length
    matrix = diagram_distance_matrix(diagrams, metric, threads=2)
    expected = np.array([[_persim(a, b, metric) for b in diagrams] for a in diagrams])
    # persim's Wasserstein takes Euclidean distances from sklearn's Gram-matrix formula, ~1e-8
    # off (even d(X, X) > 0); its bottleneck uses exact differences, like ours.
    tolerance = 0.0 if metric == "bottleneck" else 1e-7
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=tolerance)
    assert np.all(np.diag(matrix) == 0)
    np.testing.assert_array_equal(matrix, matrix.T)


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_cross_distances_equal_the_block_of_the_full_matrix(metric: str) -> None:
    diagrams = _random_diagrams(9, seed=1)
    full = diagram_distance_matrix(diagrams, metric, threads=1)
    cross = diagram_distance_matrix(diagrams[:4], metric, others=diagrams[4:], threads=3)
    np.testing.assert_array_equal(cross, full[:4, 4:])


def test_known_distances() -> None:
    a = np.array([[0.0, 1.0]])
    b = np.array([[0.0, 1.2], [0.5, 0.6]])
    # Bottleneck: (0,1)↔(0,1.2) costs 0.2 (L∞); (0.5,0.6) to the diagonal 0.05.
    assert diagram_distance(a, b, "bottleneck") == pytest.approx(0.2)
    # Wasserstein: 0.2 (Euclidean) + 0.1/√2 for the short bar.
    assert diagram_distance(a, b, "wasserstein") == pytest.approx(0.2 + 0.1 / np.sqrt(2))
    empty = np.empty((0, 2))
    assert diagram_distance(empty, b, "bottleneck") == pytest.approx(0.6)
    assert diagram_distance(empty, empty, "wasserstein") == 0.0
    # The infinite bar is dropped, so it costs nothing.
    assert diagram_distance(np.array([[0.0, np.inf]]), empty, "bottleneck") == 0.0


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="bottleneck, wasserstein"):
        diagram_distance_matrix([], "heat")  # type: ignore[arg-type]


def test_nearest_earlier_runs() -> None:
    distances = np.array(
        [
            [0.0, 1.0, 2.0, 3.0],
            [1.0, 0.0, 0.5, 0.2],
            [2.0, 0.5, 0.0, 0.1],
            [3.0, 0.2, 0.1, 0.0],
        ]
    )
    order = [10, 20, 30, 30]  # runs 2 and 3 started together: neither is earlier
    assert nearest_earlier_runs(distances, order, k=2) == [
        [],
        [(0, 1.0)],
        [(1, 0.5), (0, 2.0)],
        [(1, 0.2), (0, 3.0)],
    ]


def _h0_diagrams(count: int, seed: int) -> list[np.ndarray]:
    """Rips-style H0 diagrams: bars (0, death) with one infinite bar, ties, and sizes from 0 to
    40, including deaths far apart in scale (where the largest-with-largest pairing is wrong for
    the Wasserstein distance)."""
    rng = np.random.default_rng(seed)
    diagrams = []
    for size in rng.integers(0, 40, count):
        deaths = rng.choice([rng.uniform(0, 1, size), rng.exponential(1.0, size) ** 3])
        deaths[: size // 5] = np.round(deaths[: size // 5], 1)  # ties within and across diagrams
        bars = np.column_stack([np.zeros(size), deaths])
        diagrams.append(np.vstack([bars, [[0.0, np.inf]]]) if size % 2 else bars)
    return diagrams


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_h0_by_sorting_equals_the_general_matching(metric: str) -> None:
    diagrams = _h0_diagrams(40, seed=3)
    diagrams.append(np.array([[0.0, 1.0], [0.0, 10.0]]))
    diagrams.append(np.array([[0.0, 2.0]]))
    sorted_ = diagram_distance_matrix(diagrams, metric, threads=2)
    general = diagram_distance_matrix(diagrams, metric, threads=2, h0_by_sorting=False)
    if metric == "bottleneck":
        np.testing.assert_array_equal(sorted_, general)
    else:  # the same optimum, summed in another order
        np.testing.assert_allclose(sorted_, general, rtol=1e-12, atol=1e-12)
    for i, j in [(0, 1), (5, 17), (40, 41), (3, 40), (12, 30)]:
        assert sorted_[i, j] == pytest.approx(_persim(diagrams[i], diagrams[j], metric), abs=1e-7)


def test_h0_wasserstein_is_not_the_largest_with_largest_pairing() -> None:
    # Deaths {1, 10} and {2}: 1↔2 plus 10 on the diagonal beats 10↔2 plus 1 on the diagonal.
    a, b = np.array([[0.0, 1.0], [0.0, 10.0]]), np.array([[0.0, 2.0]])
    assert diagram_distance(a, b, "wasserstein") == pytest.approx(1 + 10 / np.sqrt(2), rel=1e-15)
    assert diagram_distance(a, b, "bottleneck") == 5.0


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_mixed_births_take_the_general_matching(metric: str) -> None:
    h0 = _h0_diagrams(6, seed=4)
    h1 = _random_diagrams(6, seed=5)
    shifted = [d + [[0.01, 0.01]] for d in h0]  # births no longer 0: not a Rips H0 diagram
    diagrams = h0 + h1 + shifted
    matrix = diagram_distance_matrix(diagrams, metric, threads=1)
    for i, j in [(0, 7), (2, 13), (14, 15), (8, 9), (1, 3)]:
        assert matrix[i, j] == pytest.approx(_persim(diagrams[i], diagrams[j], metric), abs=1e-7)


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_lower_bounds_never_exceed_the_distance(metric: str) -> None:
    diagrams = _random_diagrams(40, seed=5)
    bounds = distance_lower_bounds(diagrams, metric)
    matrix = diagram_distance_matrix(diagrams, metric)
    assert np.all(np.abs(bounds[:, None] - bounds[None, :]) <= matrix + 1e-12)


@pytest.mark.parametrize("metric", ["bottleneck", "wasserstein"])
def test_nearest_by_candidates_is_all_pairs_where_proven(metric: str) -> None:
    diagrams = _random_diagrams(60, seed=6)
    order = np.random.default_rng(7).integers(0, 40, 60)  # ties in order are not earlier
    exact = nearest_earlier_runs(diagram_distance_matrix(diagrams, metric), order, k=2)
    everyone, proven = nearest_earlier_by_candidates(diagrams, metric, order, k=2, candidates=60)
    assert everyone == exact and proven.all()
    few, proven = nearest_earlier_by_candidates(diagrams, metric, order, k=2, candidates=3)
    assert 0 < proven.sum() < len(diagrams)
    assert all(f == e for f, e, ok in zip(few, exact, proven, strict=True) if ok)
    assert all(len(f) == len(e) for f, e in zip(few, exact, strict=True))
