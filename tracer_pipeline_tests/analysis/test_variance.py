"""eta² per factor and PERMANOVA on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from tracer_pipeline.analysis.variance import eta_squared_by_factor, permanova


def test_a_factor_that_explains_all_and_one_that_explains_none() -> None:
    # 2 models × 4 seeds, fully crossed; the value depends on the model only.
    model = ["sd", "sd", "sd", "sd", "flux", "flux", "flux", "flux"]
    seed = [1, 2, 3, 4, 1, 2, 3, 4]
    values = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0])
    effects = eta_squared_by_factor(values, {"model": model, "seed": seed})
    assert effects["model"].eta_squared == pytest.approx(1.0)
    assert effects["model"].n_groups == 2 and effects["model"].smallest_group == 4
    assert not effects["model"].too_few
    assert effects["seed"].eta_squared == pytest.approx(0.0)
    assert effects["seed"].n == 8 and not effects["seed"].too_few


def test_singleton_groups_are_too_few_to_say_anything() -> None:
    values = np.array([0.3, 0.9, 0.1])
    effects = eta_squared_by_factor(values, {"prompt": ["a", "b", "c"], "network": ["n"] * 3})
    assert effects["prompt"].eta_squared == pytest.approx(1.0)  # n groups of 1: meaningless
    assert effects["prompt"].too_few
    assert effects["network"].too_few  # one level: nothing to compare


def test_constant_values_have_no_variance_to_explain() -> None:
    effects = eta_squared_by_factor(np.ones(4), {"seed": [1, 1, 2, 2]})
    assert effects["seed"].eta_squared is None


def test_labels_and_values_must_match() -> None:
    with pytest.raises(ValueError, match="3 labels for 4 values"):
        eta_squared_by_factor(np.zeros(4), {"seed": [1, 2, 3]})


def _two_groups(separation: float, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(20, 5))
    points[10:, 0] += separation
    return squareform(pdist(points)), ["a"] * 10 + ["b"] * 10


def test_permanova_separated_groups() -> None:
    distances, groups = _two_groups(separation=10.0, seed=0)
    result = permanova(distances, groups, permutations=199, seed=1)
    assert result.p_value == pytest.approx(1 / 200)
    assert result.r_squared is not None and result.r_squared > 0.8
    assert result.pseudo_f is not None and result.pseudo_f > 50
    assert result.n == 20 and result.n_groups == 2 and not result.too_few


def test_permanova_random_groups() -> None:
    distances, groups = _two_groups(separation=0.0, seed=2)
    result = permanova(distances, groups, permutations=199, seed=1)
    assert result.p_value is not None and result.p_value > 0.05
    assert result.r_squared is not None and result.r_squared < 0.15


def test_permanova_matches_the_definition_and_is_reproducible() -> None:
    distances, groups = _two_groups(separation=1.0, seed=3)
    result = permanova(distances, groups, permutations=99, seed=7)
    squared = distances**2
    ss_total = squared[np.triu_indices(20, 1)].sum() / 20
    ss_within = sum(squared[np.ix_(g, g)][np.triu_indices(10, 1)].sum() / 10
                    for g in (np.arange(10), np.arange(10, 20)))
    expected_f = (ss_total - ss_within) / (ss_within / 18)
    assert result.pseudo_f == pytest.approx(expected_f)
    assert result.r_squared == pytest.approx((ss_total - ss_within) / ss_total)
    assert permanova(distances, groups, permutations=99, seed=7) == result


def test_many_groups_sum_the_same_pairs_as_the_matrix_product(monkeypatch) -> None:
    # A level per pair of runs (the seed factor) takes the pair-sum path; forcing the product
    # path on the same distances and permutations must give the same statistics and p-value.
    from tracer_pipeline.analysis import variance

    rng = np.random.default_rng(5)
    points = rng.normal(size=(80, 3))
    points[:40] += 0.3
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    groups = [i % 40 for i in range(80)]
    assert variance.MANY_GROUPS < 40
    by_pairs = permanova(distances, groups, permutations=199, seed=3)
    monkeypatch.setattr(variance, "MANY_GROUPS", 1000)
    by_product = permanova(distances, groups, permutations=199, seed=3)
    assert by_pairs.pseudo_f == pytest.approx(by_product.pseudo_f, rel=1e-12)
    assert by_pairs.p_value == by_product.p_value


def test_permanova_with_one_group_is_too_few() -> None:
    distances, _ = _two_groups(separation=0.0, seed=4)
    result = permanova(distances, ["x"] * 20)
    assert result.too_few and result.pseudo_f is None and result.p_value is None
