"""End states cluster into attractors with a medoid."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from tracer_pipeline.analysis.attractors import find_attractors
from tracer_pipeline.analysis.cosine import unit_rows


def test_two_attractors_and_a_loner() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 128))
    runs = [0, 0, 1, 0, 1, 2, 0]
    end_states = centres[runs] + 0.05 * rng.normal(size=(7, 128))
    end_states[3] = centres[0]  # exactly at the centre: the medoid of its attractor
    attractors = find_attractors(end_states, distance_threshold=0.2)
    assert [a.members for a in attractors] == [(0, 1, 3, 6), (2, 4), (5,)]
    assert attractors[0].medoid == 3
    assert attractors[2].medoid == 5 and attractors[2].mean_distance_to_medoid == 0.0
    assert 0 < attractors[0].mean_distance_to_medoid < 0.05


def test_identical_end_states_form_one_attractor() -> None:
    end_states = np.tile(np.arange(1.0, 9.0), (5, 1))
    [attractor] = find_attractors(end_states, distance_threshold=0.0)
    assert attractor.members == (0, 1, 2, 3, 4)
    assert attractor.medoid == 0


def test_no_runs_no_attractors() -> None:
    assert find_attractors(np.empty((0, 8)), distance_threshold=0.1) == []
    [single] = find_attractors(np.ones((1, 8)), distance_threshold=0.1)
    assert single.members == (0,) and single.medoid == 0


def test_clustering_each_component_alone_gives_the_global_average_linkage_cut() -> None:
    """Per component of the threshold graph, the same attractors as one linkage of every run."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(12, 16))
    end_states = centres[rng.integers(0, 12, 300)] + 0.15 * rng.normal(size=(300, 16))
    end_states[:20] = end_states[0]  # twenty runs on one fixed point
    points = unit_rows(end_states)
    condensed = pdist(points, metric="sqeuclidean") / 2
    distance = squareform(condensed)
    for threshold in (0.0, 0.02, 0.1, 0.3):
        labels = fcluster(linkage(condensed, method="average"), t=threshold, criterion="distance")
        expected = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            spread = distance[np.ix_(members, members)].sum(axis=1)
            best = int(np.argmin(spread))
            expected.append((tuple(members.tolist()), int(members[best]), float(spread[best]) / len(members)))
        found = [(a.members, a.medoid, a.mean_distance_to_medoid) for a in find_attractors(end_states, threshold)]
        assert found == sorted(expected, key=lambda a: (-len(a[0]), a[0][0]))
