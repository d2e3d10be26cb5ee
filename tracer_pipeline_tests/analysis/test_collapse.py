import numpy as np

from tracer_pipeline.analysis.collapse import normalised_entropy, snap_generation


def test_entropy_is_one_for_uniform_labels_and_zero_for_one_label() -> None:
    assert normalised_entropy(np.array([5, 5, 5, 5])) == 1.0
    assert normalised_entropy(np.array([0, 20, 0, 0])) == 0.0
    assert 0 < normalised_entropy(np.array([1, 9, 0, 0])) < 0.5


def test_a_snap_is_the_largest_fall_when_it_is_large_enough() -> None:
    assert snap_generation(np.array([1.0, 0.95, 0.9, 0.3, 0.1])) == (3, 0.6000000000000001)
    snap, fall = snap_generation(np.array([1.0, 0.9, 0.8, 0.7]))
    assert snap is None and abs(fall - 0.1) < 1e-12  # a gradual decline is not a snap
