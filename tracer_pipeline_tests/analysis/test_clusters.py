"""Clusters of outputs on points whose states are known."""

from collections import Counter

import numpy as np

from tracer_pipeline.analysis import clusters
from tracer_pipeline.analysis.clusters import NOISE, cluster_points, dwell_times, medoids, transitions


def blobs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three tight groups of 10 points around orthogonal directions, and 2 points far from all."""
    centres = np.eye(8)[:3]
    points = [c + 0.01 * rng.normal(size=8) for c in centres for _ in range(10)]
    points += [np.eye(8)[6] + np.eye(8)[7], -np.eye(8)[5]]
    truth = np.repeat(np.arange(3), 10).tolist() + [NOISE, NOISE]
    return np.stack(points), np.array(truth)


def test_hdbscan_finds_the_three_states_and_calls_the_strays_noise():
    points, truth = blobs(np.random.default_rng(0))
    labels = cluster_points(points, min_cluster_size=5)
    assert (labels[-2:] == NOISE).all()
    groups = [set(labels[truth == k]) for k in range(3)]
    assert all(len(g) == 1 and NOISE not in g for g in groups) and len(set.union(*groups)) == 3
    again = cluster_points(points, min_cluster_size=5)
    assert np.array_equal(labels, again)  # deterministic


def test_too_few_points_are_all_noise():
    assert (cluster_points(np.eye(4), min_cluster_size=5) == NOISE).all()
    assert cluster_points(np.zeros((0, 4)), min_cluster_size=5).shape == (0,)


def test_the_medoid_is_the_member_nearest_the_others():
    points = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [0.0, 1.0]])
    assert medoids(points, np.array([0, 0, 0, NOISE])) == {0: 1}


def test_the_medoid_has_the_least_total_cosine_distance_as_counted_pair_by_pair():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(300, 16))
    labels = rng.integers(-1, 4, size=300)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    for cluster, medoid in medoids(points, labels).items():
        members = np.flatnonzero(labels == cluster)
        totals = (1 - unit[members] @ unit[members].T).sum(axis=1)
        assert medoid == members[int(np.argmin(totals))]


def test_transitions_skip_noise_and_stays_count_consecutive_outputs():
    sequences = [[0, 0, NOISE, 1, 1, 1, 0], [2, 2, 2, 2]]
    assert transitions(sequences) == Counter({(0, 1): 1, (1, 0): 1})
    assert dwell_times(sequences) == {0: [2, 1], 1: [3], 2: [4]}


def test_above_the_limit_hdbscan_is_fitted_on_a_sample_and_the_rest_take_their_nearest(monkeypatch):
    points, truth = blobs(np.random.default_rng(0))
    monkeypatch.setattr(clusters, "MAX_FITTED_OUTPUTS", 24)
    fitted = clusters.fitted_sample(points.shape[0])
    assert fitted.size == 24 and np.all(np.diff(fitted) > 0)
    labels = cluster_points(points, min_cluster_size=3)
    # The sampled points keep HDBSCAN's labels of the sample; each other one is its nearest's.
    sample_labels = cluster_points(points[fitted], min_cluster_size=3)
    assert np.array_equal(labels[fitted], sample_labels)
    for i in np.setdiff1d(np.arange(points.shape[0]), fitted):
        unit = points / np.linalg.norm(points, axis=1, keepdims=True)
        assert labels[i] == labels[fitted][np.argmax(unit[fitted] @ unit[i])]
    groups = [set(labels[truth == k]) for k in range(3)]
    assert all(len(g) == 1 and NOISE not in g for g in groups)
