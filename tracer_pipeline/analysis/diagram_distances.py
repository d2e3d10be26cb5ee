"""Distances between persistence diagrams, all pairs at once or for chosen pairs, and a lower
bound of them (each run's nearest earlier runs: :mod:`.nearest_runs`).

Both distances are persim's definitions (``persim.bottleneck``, ``persim.wasserstein``),
computed exactly by compiled kernels instead of persim's Python loop:

* **Bottleneck.** d_B(X, Y) = min over partial matchings M of the larger of
  max_{(x,y)∈M} ‖x − y‖_∞ and max over unmatched points p of δ_∞(p) = (death − birth)/2, the
  L∞ distance from p to the diagonal.
* **Wasserstein (q = 1, Euclidean ground metric).** d_W(X, Y) = min over partial matchings M of
  Σ_{(x,y)∈M} ‖x − y‖₂ + Σ over unmatched points p of δ₂(p) = (death − birth)/√2, the Euclidean
  distance from p to the diagonal (persim's ground metric; note it is not the L∞ one).

Infinite bars (the H0 component that never dies) are dropped from every diagram before
matching, as persim does (it warns; here it is the documented convention, so no warning). An
empty diagram is the diagonal: its distance to X is max δ_∞ (bottleneck) or Σ δ₂ (Wasserstein)
over X.

Exactness: both kernels return the optimum of the same matching problem as persim, not an
approximation. Bottleneck: the answer is one of the candidate costs, found by binary search with
an exact feasibility test; it is bit-identical to persim. Wasserstein: an exact Hungarian
(shortest augmenting path) assignment on a reduced cost matrix; it agrees with persim to ~1e-7,
the error of persim's own Euclidean distances (sklearn's Gram-matrix formula: persim even gives
d(X, X) ≈ 1e-8 instead of 0), while ours are computed from exact differences.

H0 of a Rips filtration by sorting. Every H0 bar of a Vietoris–Rips diagram is born at 0, so a
finite H0 bar is one number, its death, and both distances reduce to matching points on a line:
between (0, a) and (0, b) the L∞ and the Euclidean distance are both |a − b|, and the diagonal
costs a/2 (bottleneck) or a/√2 (Wasserstein). With the deaths sorted, a₁ ≤ … ≤ aₙ and
b₁ ≤ … ≤ bₘ, and any partial matching uncrossed (pairs (a, b), (a', b') with a < a' and b > b'
swapped, which never raises |a − b| + |a' − b'| nor max(|a − b|, |a' − b'|)):

* **Bottleneck.** Some optimal matching pairs the k largest deaths of one diagram with the k
  largest of the other in sorted order and sends the rest to the diagonal. Exchange argument,
  for a matching of cost ≤ r: an unmatched death a' costs a'/2 ≤ r, so a' ≤ 2r; if a smaller
  death a < a' is matched to b (|a − b| ≤ r), then either b > 2r ≥ a', so
  |a' − b| = b − a' < b − a ≤ r and a' can take a's place, or b ≤ 2r, and a and b can both go
  to the diagonal. Repeating on both sides leaves the k largest of each matched. So
  d_B = min over k of max(max_{i ≤ k} |a_{n+1−i} − b_{m+1−i}|, a_{n−k}/2, b_{m−k}/2) (a₀ = b₀
  = 0): one pass over the sorted deaths, O((n + m) log(n + m)) with the sort, and
  bit-identical to the general kernel (the same candidate costs, computed the same way).
* **Wasserstein.** Taking the largest deaths is *not* optimal here: for deaths {1, 10} and {2},
  matching 1↔2 and sending 10 to the diagonal costs 1 + 10/√2 ≈ 8.07, less than 10↔2 plus 1/√2
  ≈ 8.71. Uncrossing still holds, so the optimum is an alignment of the two sorted sequences
  (each death matched to the next unused one of the other diagram or sent to the diagonal),
  found exactly by dynamic programming in O(n·m) time and O(m) memory, instead of an
  assignment problem on ~n × m points (O(n³)). It equals the general kernel up to the order of
  float64 additions (~1e-13).

Conditions: every finite bar of both diagrams has birth exactly 0 (Rips H0; diagrams of
another filtration, or of H1, take the general matching automatically); the infinite bar is
dropped as everywhere in this module.

Speed: the kernels are compiled with numba (the first call in a fresh checkout compiles for
10–20 s; the result is cached next to this file), release the GIL and run on several threads.
On H1 diagrams of 300-point trajectories a pair takes ~35 µs on one core, against ~2 ms
(bottleneck) and ~0.8 ms (Wasserstein) for persim; BENCHMARKS.md has the measured all-pairs
times.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numba
import numpy as np

DiagramMetric = Literal["bottleneck", "wasserstein"]
METRICS: tuple[DiagramMetric, ...] = ("bottleneck", "wasserstein")
# Pairs computed between two calls of a ``progress`` callback.
PAIRS_PER_STEP = 20_000
# progress(done, total): called with 0 before the first pair and after each step of pairs.
Progress = Callable[[int, int], None]


@numba.njit(cache=True)
def _can_saturate(cost: np.ndarray, radius: float, must: np.ndarray) -> bool:
    """Whether the bipartite graph {(i, j): cost[i, j] ≤ radius} has a matching covering every
    row i with must[i] (Kuhn's augmenting paths, breadth-first)."""
    rows, cols = cost.shape
    match_of_col = np.full(cols, -1, dtype=np.int64)
    match_of_row = np.full(rows, -1, dtype=np.int64)
    parent_row = np.empty(cols, dtype=np.int64)
    queue = np.empty(rows, dtype=np.int64)
    visited = np.zeros(cols, dtype=np.bool_)
    for root in range(rows):
        if not must[root]:
            continue
        visited[:] = False
        queue[0] = root
        head, tail = 0, 1
        free_col = -1
        while head < tail and free_col < 0:
            row = queue[head]
            head += 1
            for col in range(cols):
                if visited[col] or cost[row, col] > radius:
                    continue
                visited[col] = True
                parent_row[col] = row
                if match_of_col[col] < 0:
                    free_col = col
                    break
                queue[tail] = match_of_col[col]
                tail += 1
        if free_col < 0:
            return False
        # Flip the alternating path back to the root (whose own match is -1).
        col = free_col
        while col >= 0:
            row = parent_row[col]
            previous = match_of_row[row]
            match_of_col[col] = row
            match_of_row[row] = col
            col = previous
    return True


@numba.njit(cache=True)
def _bottleneck_pair(a: np.ndarray, b: np.ndarray) -> float:
    """Exact bottleneck distance between two finite diagrams (persim's definition).

    Feasibility of radius r: a matching inside {‖x − y‖_∞ ≤ r} must cover every point whose
    diagonal cost exceeds r, in both diagrams. By the Mendelsohn–Dulmage theorem a matching
    covering a set of rows and one covering a set of columns combine into one covering both, so
    the two sides are tested separately. The answer lies in [lo, hi] with
    lo = max over points p of min(δ(p), distance to the nearest point of the other diagram)
    and hi = max δ (everything to the diagonal); binary search over the candidate costs there.
    """
    n, m = a.shape[0], b.shape[0]
    diag_a = (a[:, 1] - a[:, 0]) / 2
    diag_b = (b[:, 1] - b[:, 0]) / 2
    if n == 0 or m == 0:
        return max(diag_a.max() if n else 0.0, diag_b.max() if m else 0.0)
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            cost[i, j] = max(abs(a[i, 0] - b[j, 0]), abs(a[i, 1] - b[j, 1]))
    cost_t = cost.T.copy()
    lo = 0.0
    for i in range(n):
        lo = max(lo, min(diag_a[i], cost[i].min()))
    for j in range(m):
        lo = max(lo, min(diag_b[j], cost_t[j].min()))
    hi = max(diag_a.max(), diag_b.max())
    if lo == hi:
        return hi
    # Only the costs in [lo, hi] can be the answer; on H1 diagrams they are a small fraction of
    # the n·m + n + m, so filter before sorting. hi is among them and always feasible; binary
    # search for the first feasible one (duplicates are harmless).
    candidates = np.empty(n * m + n + m)
    count = 0
    for value in np.concatenate((cost.ravel(), diag_a, diag_b)):
        if lo <= value <= hi:
            candidates[count] = value
            count += 1
    candidates = np.sort(candidates[:count])
    left, right = 0, count - 1
    while left < right:
        middle = (left + right) // 2
        radius = candidates[middle]
        if _can_saturate(cost, radius, diag_a > radius) and _can_saturate(
            cost_t, radius, diag_b > radius
        ):
            right = middle
        else:
            left = middle + 1
    return candidates[left]


@numba.njit(cache=True)
def _min_assignment(cost: np.ndarray) -> float:
    """Minimum Σ cost[i, σ(i)] over injective σ: rows → columns (rows ≤ columns).

    The Hungarian algorithm with potentials and shortest augmenting paths, O(rows² · columns);
    exact (every step is a comparison or a difference of the given costs).
    """
    rows, cols = cost.shape
    u = np.zeros(rows + 1)
    v = np.zeros(cols + 1)
    row_of_col = np.zeros(cols + 1, dtype=np.int64)  # 1-based rows; 0 = free
    way = np.zeros(cols + 1, dtype=np.int64)
    min_slack = np.empty(cols + 1)
    used = np.empty(cols + 1, dtype=np.bool_)
    for i in range(1, rows + 1):
        row_of_col[0] = i
        col0 = 0
        min_slack[:] = np.inf
        used[:] = False
        while True:
            used[col0] = True
            row0 = row_of_col[col0]
            delta = np.inf
            col1 = 0
            for col in range(1, cols + 1):
                if used[col]:
                    continue
                slack = cost[row0 - 1, col - 1] - u[row0] - v[col]
                if slack < min_slack[col]:
                    min_slack[col] = slack
                    way[col] = col0
                if min_slack[col] < delta:
                    delta = min_slack[col]
                    col1 = col
            for col in range(cols + 1):
                if used[col]:
                    u[row_of_col[col]] += delta
                    v[col] -= delta
                else:
                    min_slack[col] -= delta
            col0 = col1
            if row_of_col[col0] == 0:
                break
        while col0 != 0:
            col1 = way[col0]
            row_of_col[col0] = row_of_col[col1]
            col0 = col1
    total = 0.0
    for col in range(1, cols + 1):
        if row_of_col[col] != 0:
            total += cost[row_of_col[col] - 1, col - 1]
    return total


@numba.njit(cache=True)
def _wasserstein_pair(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 1-Wasserstein distance, Euclidean ground metric (persim's definition).

    With δ the Euclidean distance to the diagonal, a partial matching M costs
    Σ δ(X) + Σ δ(Y) + Σ_{(x,y)∈M} r(x, y), with reduced cost r(x, y) = ‖x − y‖₂ − δ(x) − δ(y).
    Only pairs with r < 0 can lower the cost, so the optimum is Σ δ(X) + Σ δ(Y) plus the
    minimum of Σ min(0, r) over assignments of one side into the other, restricted to the
    points that have at least one partner with r < 0 (a point without one is best left on the
    diagonal). Near-diagonal points, most of an H1 diagram, have no such partner, so the
    assignment problem is much smaller than persim's (n + m) × (n + m) one; its optimum is the
    same.
    """
    n, m = a.shape[0], b.shape[0]
    diag_a = (a[:, 1] - a[:, 0]) / math.sqrt(2.0)
    diag_b = (b[:, 1] - b[:, 0]) / math.sqrt(2.0)
    total = diag_a.sum() + diag_b.sum()
    reduced = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            birth_gap = a[i, 0] - b[j, 0]
            death_gap = a[i, 1] - b[j, 1]
            # sqrt of the sum of squares, not math.hypot: 5× faster, and diagram coordinates
            # are far from overflow.
            gap = math.sqrt(birth_gap * birth_gap + death_gap * death_gap) - diag_a[i] - diag_b[j]
            reduced[i, j] = min(gap, 0.0)
    row_helps = np.zeros(n, dtype=np.bool_)
    col_helps = np.zeros(m, dtype=np.bool_)
    for i in range(n):
        for j in range(m):
            if reduced[i, j] < 0.0:
                row_helps[i] = True
                col_helps[j] = True
    rows = np.flatnonzero(row_helps)
    cols = np.flatnonzero(col_helps)
    if rows.size == 0:
        return total
    core = np.empty((rows.size, cols.size))
    for i in range(rows.size):
        for j in range(cols.size):
            core[i, j] = reduced[rows[i], cols[j]]
    if rows.size > cols.size:
        core = core.T.copy()
    return total + _min_assignment(core)


@numba.njit(cache=True)
def _h0_bottleneck_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Bottleneck distance between two diagrams of bars (0, death), each sorted by death: the
    best k largest-with-largest matching (module docstring)."""
    n, m = a.shape[0], b.shape[0]
    matched = 0.0
    best = np.inf
    for k in range(min(n, m) + 1):
        if k > 0:
            matched = max(matched, abs(a[n - k, 1] - b[m - k, 1]))
        left_a = a[n - k - 1, 1] / 2 if n - k > 0 else 0.0
        left_b = b[m - k - 1, 1] / 2 if m - k > 0 else 0.0
        best = min(best, max(matched, left_a, left_b))
    return best


@numba.njit(cache=True)
def _h0_wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between two diagrams of bars (0, death), each sorted by death: the
    cheapest alignment of the sorted deaths (module docstring).

    cost[i, j] is the optimum for the i smallest deaths of ``a`` and the j smallest of ``b``:
    the last of them is either matched to the other's last (|a_i − b_j|) or on the diagonal.
    """
    n, m = a.shape[0], b.shape[0]
    root2 = math.sqrt(2.0)
    death_b = b[:, 1].copy()
    diagonal_b = (b[:, 1] - b[:, 0]) / root2
    row = np.empty(m + 1)
    row[0] = 0.0
    for j in range(m):
        row[j + 1] = row[j] + diagonal_b[j]
    for i in range(n):
        death_a = a[i, 1]
        diagonal_a = (a[i, 1] - a[i, 0]) / root2
        corner = row[0]
        left = corner + diagonal_a
        row[0] = left
        for j in range(m):
            above = row[j + 1]
            left = min(above + diagonal_a, left + diagonal_b[j], corner + abs(death_a - death_b[j]))
            row[j + 1] = left
            corner = above
    return row[m]


@numba.njit(cache=True)
def _pair_distance(a: np.ndarray, b: np.ndarray, bottleneck: bool, h0_sorted: bool) -> float:
    if h0_sorted:
        return _h0_bottleneck_sorted(a, b) if bottleneck else _h0_wasserstein_sorted(a, b)
    return _bottleneck_pair(a, b) if bottleneck else _wasserstein_pair(a, b)


@numba.njit(nogil=True, cache=True)
def _distances_for_pairs(
    bars: np.ndarray,
    offsets: np.ndarray,
    born_at_zero: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    bottleneck: bool,
) -> np.ndarray:
    out = np.empty(first.size)
    for k in range(first.size):
        i, j = first[k], second[k]
        out[k] = _pair_distance(
            bars[offsets[i] : offsets[i + 1]], bars[offsets[j] : offsets[j + 1]], bottleneck,
            born_at_zero[i] and born_at_zero[j],
        )
    return out


def _finite_bars(diagram: np.ndarray) -> np.ndarray:
    bars = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    if np.any(np.isnan(bars)):
        raise ValueError("a persistence diagram holds NaN")
    return bars[np.isfinite(bars).all(axis=1)]


def _pack(
    diagrams: Sequence[np.ndarray], h0_by_sorting: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All finite bars in one contiguous (Σ n_k, 2) array, offsets, and for each diagram whether
    the sorted-H0 kernels apply (every birth 0; its bars are then sorted by death)."""
    finite = [_finite_bars(d) for d in diagrams]
    born_at_zero = np.array([h0_by_sorting and not np.any(f[:, 0]) for f in finite], dtype=np.bool_)
    finite = [f[np.argsort(f[:, 1], kind="stable")] if zero else f
              for f, zero in zip(finite, born_at_zero, strict=True)]
    offsets = np.zeros(len(finite) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([f.shape[0] for f in finite])
    bars = np.concatenate(finite) if finite else np.empty((0, 2))
    return np.ascontiguousarray(bars), offsets, born_at_zero


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown diagram metric {metric!r}; use one of {', '.join(METRICS)}")


def diagram_distance(
    a: np.ndarray, b: np.ndarray, metric: DiagramMetric, h0_by_sorting: bool = True
) -> float:
    """Bottleneck or 1-Wasserstein distance between two diagrams (module docstring);
    ``h0_by_sorting=False`` takes the general matching even for two Rips H0 diagrams."""
    _check_metric(metric)
    bars, offsets, born_at_zero = _pack([a, b], h0_by_sorting)
    # Through the all-pairs kernel, so that only one compiled specialisation exists.
    pair = np.array([0], dtype=np.int64)
    return float(_distances_for_pairs(bars, offsets, born_at_zero, pair, pair + 1,
                                      metric == "bottleneck")[0])


def diagram_distance_matrix(
    diagrams: Sequence[np.ndarray],
    metric: DiagramMetric,
    others: Sequence[np.ndarray] | None = None,
    threads: int | None = None,
    h0_by_sorting: bool = True,
    progress: Progress | None = None,
) -> np.ndarray:
    """All pairwise distances between diagrams of one homology dimension, in parallel.

    Args:
        diagrams: n arrays (k_i, 2) of (birth, death); infinite bars are dropped.
        metric: "bottleneck" or "wasserstein" (module docstring for the definitions).
        others: if given, m further diagrams: the result is the (n, m) matrix of distances from
            each of ``diagrams`` to each of ``others`` (to compare new runs with stored ones
            without recomputing the stored pairs). If None, the symmetric (n, n) matrix of
            ``diagrams`` with a zero diagonal, each unordered pair computed once.
        threads: CPU threads to use (the compiled kernel releases the GIL); None uses every
            core this process may run on.
        h0_by_sorting: pairs of diagrams whose bars are all born at 0 (Rips H0) take the sorted
            kernels (module docstring); False forces the general matching, to check or time them.
        progress: told how many pairs are done, ``PAIRS_PER_STEP`` at a time (the values are
            the same as without).

    Returns:
        float64 distance matrix.
    """
    _check_metric(metric)
    count = len(diagrams)
    if others is None:
        first, second = np.triu_indices(count, k=1)
        values = diagram_distances_of_pairs(diagrams, metric, first, second, threads, h0_by_sorting, progress)
    else:
        first, second = np.divmod(np.arange(count * len(others)), len(others))
        values = diagram_distances_of_pairs([*diagrams, *others], metric, first, second + count, threads,
                                            h0_by_sorting, progress)
    if others is not None:
        return values.reshape(count, len(others))
    matrix = np.zeros((count, count))
    matrix[first, second] = values
    matrix[second, first] = values
    return matrix


def diagram_distances_of_pairs(
    diagrams: Sequence[np.ndarray],
    metric: DiagramMetric,
    first: np.ndarray,
    second: np.ndarray,
    threads: int | None = None,
    h0_by_sorting: bool = True,
    progress: Progress | None = None,
) -> np.ndarray:
    """The distances between ``diagrams[first[k]]`` and ``diagrams[second[k]]`` for every k, in
    parallel (``diagram_distance_matrix``'s kernel and arguments): for chosen pairs, where all of
    them would be too many. A pair gives the same value as in the matrix when ``first < second``
    (the matrix computes each pair in that order)."""
    _check_metric(metric)
    bars, offsets, born_at_zero = _pack(diagrams, h0_by_sorting)
    workers = len(os.sched_getaffinity(0)) if threads is None else threads
    if workers < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    values = np.empty(first.size)
    bottleneck = metric == "bottleneck"
    step = first.size if progress is None else PAIRS_PER_STEP

    # Thread w takes pairs w, w + workers, …: costly pairs (large diagrams) cluster by run, and
    # interleaving spreads them over the threads.
    def run(worker: int, start: int, stop: int) -> None:
        values[start + worker:stop:workers] = _distances_for_pairs(
            bars, offsets, born_at_zero, first[start + worker:stop:workers].copy(),
            second[start + worker:stop:workers].copy(), bottleneck,
        )

    if progress is not None:
        progress(0, first.size)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, first.size, max(step, 1)):
            stop = min(start + step, first.size)
            for done in [pool.submit(run, worker, start, stop) for worker in range(workers)]:
                done.result()
            if progress is not None:
                progress(stop, first.size)
    return values


def distance_lower_bounds(diagrams: Sequence[np.ndarray], metric: DiagramMetric) -> np.ndarray:
    """One number s per diagram such that d(X, Y) ≥ |s(X) − s(Y)| for every pair: for
    1-Wasserstein the total distance to the diagonal Σ δ₂, for bottleneck the largest δ_∞.

    Why: each point is either on the diagonal, costing its δ, or matched to a point y at a
    distance ≥ |δ(x) − δ(y)| (δ is the distance to a set, 1-Lipschitz in the ground metric). Summed
    over a matching (Wasserstein) the costs are ≥ |Σ δ(X) − Σ δ(Y)|; for the bottleneck, the point
    of X farthest from the diagonal costs ≥ max δ(X) − max δ(Y), and symmetrically."""
    _check_metric(metric)
    bounds = np.empty(len(diagrams))
    for i, diagram in enumerate(diagrams):
        bars = _finite_bars(diagram)
        lengths = bars[:, 1] - bars[:, 0]
        if metric == "wasserstein":
            bounds[i] = float(np.sum(lengths / math.sqrt(2.0)))
        else:
            bounds[i] = float(np.max(lengths) / 2) if lengths.size else 0.0
    return bounds
