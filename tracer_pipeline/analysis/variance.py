"""Which factor (t2i model, i2t model, network, prompt, seed) explains what happens to runs.

Two questions, one per kind of outcome:

* a scalar feature per run (say its final drift or its H1 entropy): the share of its variance
  explained by each factor on its own, eta² (one-way ANOVA);
* a distance matrix between runs (say diagram distances): PERMANOVA (Anderson 2001), the
  distance-based analogue, with a permutation p-value.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MANY_GROUPS = 32  # above this many groups, sum same-group pairs directly
PERMUTATION_BATCH = 64
# Permuted statistics within this relative tolerance of the observed one count as ties (and so
# against significance): a relabelling that reproduces the observed grouping can differ from it
# only by rounding.
TIE_TOLERANCE = 1e-10


def _encode(levels: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0 … k−1 of the levels (in order of first appearance) and each code's count."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter(
        (index.setdefault(level, len(index)) for level in levels), dtype=np.int64, count=len(levels)
    )
    return codes, np.bincount(codes, minlength=len(index))


@dataclass(frozen=True)
class FactorEffect:
    """eta² of one factor, with the sample sizes needed to judge it.

    ``eta_squared`` is None when the feature does not vary at all (SS_total = 0).
    ``too_few`` is True when the factor has fewer than 2 levels, or a level with fewer than
    ``min_group_size`` runs: eta² then reflects the grouping, not the factor (n singleton
    groups give eta² = 1 whatever the data).
    """

    eta_squared: float | None
    n: int
    n_groups: int
    smallest_group: int
    too_few: bool


def eta_squared_by_factor(
    values: np.ndarray,
    factors: Mapping[str, Sequence[Hashable]],
    min_group_size: int = 2,
) -> dict[str, FactorEffect]:
    """One-way eta² of a per-run scalar for each factor separately.

    For groups g of sizes n_g and means ȳ_g, eta² = SS_between / SS_total with
    SS_between = Σ_g n_g (ȳ_g − ȳ)² and SS_total = Σ_i (y_i − ȳ)²: the fraction of the
    variance of y that the factor's levels account for. Each factor is taken alone (not partial
    eta²), so the shares add up to 1 only in a balanced, fully crossed design.

    Args:
        values: (n,) one finite value per run.
        factors: factor name → the level of each run (n labels, e.g. model names or seeds).
        min_group_size: the smallest group that still says something about its level.
    """
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(y)):
        raise ValueError("values hold NaN or inf")
    ss_total = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    effects = {}
    for name, levels in factors.items():
        if len(levels) != y.size:
            raise ValueError(f"factor {name!r} has {len(levels)} labels for {y.size} values")
        codes, sizes = _encode(levels)
        group_means = np.bincount(codes, weights=y, minlength=sizes.size) / sizes
        ss_between = float(np.sum(sizes * (group_means - y.mean()) ** 2)) if y.size else 0.0
        smallest = int(sizes.min()) if sizes.size else 0
        effects[name] = FactorEffect(
            eta_squared=min(ss_between / ss_total, 1.0) if ss_total > 0 else None,
            n=int(y.size),
            n_groups=int(sizes.size),
            smallest_group=smallest,
            too_few=sizes.size < 2 or smallest < min_group_size,
        )
    return effects


@dataclass(frozen=True)
class PermanovaResult:
    """PERMANOVA of a distance matrix against one grouping.

    ``pseudo_f``, ``r_squared`` and ``p_value`` are None when ``too_few`` (fewer than 2 groups,
    or no residual degrees of freedom: n ≤ number of groups) or when all distances are 0.
    ``pseudo_f`` is inf when every group has zero within-group distance but groups differ.
    """

    pseudo_f: float | None
    r_squared: float | None
    p_value: float | None
    permutations: int
    n: int
    n_groups: int
    too_few: bool


def _within_sum_of_squares(
    squared: np.ndarray, labels: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """SS_W for each row of ``labels`` (B, n): Σ_g (1/n_g) Σ_{i<j in g} d_ij².

    With few groups, one matrix product per batch of labellings (cost ∝ n²·B·groups); with many
    (a factor such as the seed, with a level per pair of runs), only the pairs in the same group
    are summed (cost ∝ B·Σ n_g²): a labelling keeps the group sizes, so sorted by label its
    same-group pairs sit at the same places of the order every time.
    """
    batch, n = labels.shape
    groups = sizes.size
    if groups <= MANY_GROUPS:
        # One-hot (n, B·groups): column b·groups + g marks the members of group g in labelling b.
        onehot = np.zeros((n, batch * groups))
        onehot[np.arange(n)[:, None], np.arange(batch) * groups + labels.T] = 1.0
        within = np.einsum("ik,ik->k", onehot, squared @ onehot).reshape(batch, groups)
        return (within / (2 * sizes)).sum(axis=1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pairs = [np.triu_indices(size, k=1) for size in sizes]
    first = np.concatenate([start + a for start, (a, _) in zip(starts, pairs, strict=True)])
    second = np.concatenate([start + b for start, (_, b) in zip(starts, pairs, strict=True)])
    weights = np.concatenate([np.full(a.size, 1.0 / size) for size, (a, _) in zip(sizes, pairs, strict=True)])
    order = np.argsort(labels, axis=1, kind="stable")
    return (squared[order[:, first], order[:, second]] * weights).sum(axis=1)


def permanova(
    distances: np.ndarray,
    groups: Sequence[Hashable],
    permutations: int = 999,
    seed: int = 0,
) -> PermanovaResult:
    """Permutational multivariate analysis of variance (Anderson 2001) on a distance matrix.

    With n runs in a groups of sizes n_g and distances d_ij:
    SS_T = (1/n) Σ_{i<j} d_ij², SS_W = Σ_g (1/n_g) Σ_{i<j in g} d_ij², SS_A = SS_T − SS_W,
    pseudo-F = (SS_A / (a − 1)) / (SS_W / (n − a)) and R² = SS_A / SS_T.
    p = (1 + #{permutations with F* ≥ F}) / (1 + permutations), relabelling runs uniformly at
    random (a generator seeded with ``seed``, so the p-value is reproducible).

    Args:
        distances: (n, n) symmetric distance matrix with zero diagonal.
        groups: the group of each run (n labels).
        permutations: number of random relabellings.
        seed: seed of the permutation generator.
    """
    d = np.asarray(distances, dtype=np.float64)
    n = d.shape[0]
    if d.shape != (n, n) or len(groups) != n:
        raise ValueError(
            f"distances must be square and match the {len(groups)} group labels, got {d.shape}"
        )
    if not np.all(np.isfinite(d)):
        raise ValueError("distances hold NaN or inf")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    labels, sizes = _encode(groups)
    n_groups = int(sizes.size)
    if n_groups < 2 or n <= n_groups:
        return PermanovaResult(None, None, None, permutations, n, n_groups, True)

    squared = d**2
    ss_total = float(squared.sum()) / (2 * n)
    if ss_total == 0:
        return PermanovaResult(None, None, None, permutations, n, n_groups, False)
    ss_within = float(_within_sum_of_squares(squared, labels[None, :], sizes)[0])

    # F* ≥ F exactly when SS_W* ≤ SS_W, since SS_T and the group sizes do not change.
    rng = np.random.default_rng(seed)
    at_least_as_extreme = 0
    for start in range(0, permutations, PERMUTATION_BATCH):
        batch = min(PERMUTATION_BATCH, permutations - start)
        shuffled = rng.permuted(np.tile(labels, (batch, 1)), axis=1)
        permuted_within = _within_sum_of_squares(squared, shuffled, sizes)
        at_least_as_extreme += int(
            np.count_nonzero(permuted_within <= ss_within * (1 + TIE_TOLERANCE))
        )

    ss_among = ss_total - ss_within
    pseudo_f = (
        (ss_among / (n_groups - 1)) / (ss_within / (n - n_groups)) if ss_within > 0 else np.inf
    )
    return PermanovaResult(
        pseudo_f=float(pseudo_f),
        r_squared=ss_among / ss_total,
        p_value=(1 + at_least_as_extreme) / (1 + permutations),
        permutations=permutations,
        n=n,
        n_groups=n_groups,
        too_few=False,
    )
