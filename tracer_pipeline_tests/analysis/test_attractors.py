"""End states cluster into attractors with a medoid."""

from __future__ import annotations

import numpy as np

from tracer_pipeline.analysis.attractors import find_attractors


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
