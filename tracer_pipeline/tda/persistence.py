"""Vietoris–Rips persistence diagrams of embedding trajectories, and their summary statistics.

A trajectory is a point cloud X = {x_1, …, x_N} ⊂ R^d (the embeddings of a run's outputs, unit
vectors). For r ≥ 0 the Vietoris–Rips complex VR_r(X) holds every simplex whose vertices are
pairwise within Euclidean distance r. As r grows these complexes form a filtration; a homology
class of dimension k that appears at r = b and vanishes at r = d is a bar (b, d) of the H_k
persistence diagram.

Conventions (every diagram stored by the pipeline follows them; change one and bump
``TDA_VERSION``):

* Distance is Euclidean on the rows as given. On unit vectors the cosine-distance diagram is the
  image of this one under r ↦ r²/2, so it is never computed separately.
* H0 keeps its single infinite bar (0, +inf): one connected component never dies. It is not
  capped at any radius; consumers that need finite values drop it (``diagram_summary`` does).
* Zero-length bars (birth == death) are dropped. They carry no topology, and they are what
  exact duplicate points (a run stuck on a fixed point repeats its outputs exactly) would add to
  H0, so the number of H0 bars equals the number of distinct points.
* Distances are computed in float64 from exact coordinate differences, so exact duplicates are
  exactly 0 apart; the engine (giotto-ph, float32 internally) then rounds bar values to float32
  precision (relative error ≤ 6e-8), returned as float64.

Engines: giotto-ph for H1 and up (1–2.6× faster than ripser for H1, 3–7× for H2, identical
diagrams), imported only when a diagram needs it (it imports scikit-learn: about a second).
H0 alone (``max_dim=0``) needs no Rips engine: the deaths of the H0 bars of a Rips filtration
are the merge heights of single-linkage clustering (the edge lengths of a minimum spanning
tree), so scipy's ``linkage`` gives them in O(N²), rounded to float32 as giotto-ph rounds them;
the diagrams are identical to giotto-ph's, bar for bar (the tests check it).

Cost: full Rips grows about as N³ in time. Up to N ≈ 1,000 points H0+H1 takes seconds; at
N ≈ 2,000 it takes 10–50 s and 1–2.5 GB; beyond that compute H0 only (``max_dim=0``) or embed
a subsample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Bump when a diagram computed from the same points would differ (engine, distance, conventions).
TDA_VERSION = "1"

MAX_HOMOLOGY_DIM = 2


def pairwise_euclidean(points: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix D_ij = ‖x_i − x_j‖₂ of the rows, float64, exact zero diagonal.

    Computed from exact differences (not the Gram shortcut √(2 − 2⟨x_i, x_j⟩), which leaves
    ~1e-3 error in float32 and small non-zeros between duplicates), so identical rows are exactly
    0 apart and every entry is ≥ 0 without clipping.
    """
    from scipy.spatial.distance import pdist, squareform  # here: loading the pipeline needs no scipy

    return squareform(pdist(np.asarray(points, dtype=np.float64), metric="euclidean"))


def persistence_diagram(points: np.ndarray, max_dim: int = 1) -> dict[int, np.ndarray]:
    """Vietoris–Rips persistence diagrams H_0 … H_max_dim of the rows of ``points``.

    Args:
        points: (N, d) array, one point per row (typically float32 unit embeddings).
        max_dim: highest homology dimension, 0 ≤ max_dim ≤ 2.

    Returns:
        ``{k: bars}`` for k = 0 … max_dim, each a float64 array of shape (n_k, 2) holding
        (birth, death) rows sorted by birth then death, with the conventions of this module:
        H0 keeps one (0, inf) bar, zero-length bars are dropped. 0 points gives empty arrays in
        every dimension; 1 point gives H0 = [[0, inf]] and empty higher dimensions.

    Raises:
        ValueError: ``points`` is not 2-D or holds NaN/inf, or ``max_dim`` is out of range.
    """
    if not 0 <= max_dim <= MAX_HOMOLOGY_DIM:
        raise ValueError(f"max_dim must be between 0 and {MAX_HOMOLOGY_DIM}, got {max_dim}")
    points = np.asarray(points)
    if points.ndim != 2:
        raise ValueError(f"points must be a 2-D array (N, d), got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points hold NaN or inf; a persistence diagram needs finite coordinates")

    empty = np.empty((0, 2), dtype=np.float64)
    n_points = points.shape[0]
    if n_points == 0:
        return {dim: empty.copy() for dim in range(max_dim + 1)}
    if n_points == 1:
        # giotto-ph handles this too, but the answer is known and documented: one component.
        diagram = {dim: empty.copy() for dim in range(max_dim + 1)}
        diagram[0] = np.array([[0.0, math.inf]])
        return diagram

    if max_dim == 0:
        dgms = [_h0_by_single_linkage(points)]
    else:
        import gph  # only here: it imports scikit-learn

        # metric="precomputed" with a dense matrix: a sparse input would read the exact zeros
        # between duplicates as missing edges. One thread: a second one gained nothing at
        # N ≥ 500 on a 2-core machine, and runs are computed side by side.
        dgms = gph.ripser_parallel(
            pairwise_euclidean(points), maxdim=max_dim, metric="precomputed", n_threads=1
        )["dgms"]
    diagram = {}
    for dim, bars in enumerate(dgms):
        bars = np.asarray(bars, dtype=np.float64).reshape(-1, 2)
        bars = bars[bars[:, 1] > bars[:, 0]]
        diagram[dim] = bars[np.lexsort((bars[:, 1], bars[:, 0]))]
    return diagram


def _h0_by_single_linkage(points: np.ndarray) -> np.ndarray:
    """The Rips H0 bars of ≥ 2 points: (0, h) for each single-linkage merge height h (float64
    distances, rounded to float32 like giotto-ph's), plus the component that never dies."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    heights = linkage(pdist(np.asarray(points, dtype=np.float64)), method="single")[:, 2]
    deaths = heights.astype(np.float32).astype(np.float64)
    bars = np.column_stack([np.zeros(deaths.size + 1), np.append(deaths, math.inf)])
    return bars


def persistent_entropy(bars: np.ndarray) -> float:
    """Persistent entropy E = −Σ p_i ln p_i of the finite bars, with p_i = ℓ_i / Σ_j ℓ_j.

    ℓ_i = death_i − birth_i. Infinite and zero-length bars are left out (they have no finite
    positive length). Natural logarithm, not normalised by ln n. 0.0 when no bar is left.
    """
    bars = np.asarray(bars, dtype=np.float64).reshape(-1, 2)
    lengths = bars[:, 1] - bars[:, 0]
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    if lengths.size == 0:
        return 0.0
    p = lengths / lengths.sum()
    return float(-np.sum(p * np.log(p)))


def finite_bars(diagram: dict[int, np.ndarray], dim: int) -> np.ndarray:
    """The bars of dimension ``dim`` that end, as float64 (k, 2); none when the diagram has no
    such dimension."""
    bars = np.asarray(diagram.get(dim, np.empty((0, 2))), dtype=np.float64).reshape(-1, 2)
    return bars[np.isfinite(bars).all(axis=1)]


def diagram_summary(diagram: dict[int, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per-dimension summary statistics of a persistence diagram, JSON-serialisable.

    Returns ``{"H<k>": stats}`` where, over the finite bars with lengths ℓ_i = death − birth:

    * ``count``: number of bars, infinite ones included;
    * ``infinite_bars_excluded``: how many infinite bars were left out of every statistic below
      (1 for H0 of a non-empty cloud: the component that never dies);
    * ``entropy``: persistent entropy −Σ p_i ln p_i, p_i = ℓ_i / Σℓ (see ``persistent_entropy``);
    * ``total_persistence`` Σℓ, ``max_persistence`` max ℓ, ``mean_persistence`` mean ℓ and
      ``std_persistence`` (population standard deviation, ddof = 0) of ℓ.

    Every statistic of a dimension without finite bars is 0.0.
    """
    summary: dict[str, dict[str, Any]] = {}
    for dim, bars in sorted(diagram.items()):
        bars = np.asarray(bars, dtype=np.float64).reshape(-1, 2)
        finite = np.isfinite(bars[:, 1])
        lengths = bars[finite, 1] - bars[finite, 0]
        has_bars = lengths.size > 0
        summary[f"H{dim}"] = {
            "count": int(bars.shape[0]),
            "infinite_bars_excluded": int(np.count_nonzero(~finite)),
            "entropy": persistent_entropy(bars),
            "total_persistence": float(lengths.sum()),
            "max_persistence": float(lengths.max()) if has_bars else 0.0,
            "mean_persistence": float(lengths.mean()) if has_bars else 0.0,
            "std_persistence": float(lengths.std()) if has_bars else 0.0,
        }
    return summary
