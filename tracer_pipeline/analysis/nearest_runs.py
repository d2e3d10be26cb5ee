"""Each run's nearest earlier runs: from an all-pairs distance matrix (``nearest_earlier_runs``),
or, where all pairs would be too many, by persistence-diagram distance among candidates chosen by
a lower bound of the distance (``nearest_earlier_by_candidates``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.diagram_distances import (
    DiagramMetric,
    Progress,
    diagram_distances_of_pairs,
    distance_lower_bounds,
)


def nearest_earlier_runs(
    distances: np.ndarray, order: Sequence[float] | np.ndarray, k: int = 1
) -> list[list[tuple[int, float]]]:
    """For each run, the k runs nearest to it among those that came before it.

    Args:
        distances: (n, n) distances between runs (any metric).
        order: n sortable keys (e.g. creation timestamps); run j is earlier than run i when
            order[j] < order[i] (ties are not earlier).
        k: how many neighbours to return per run.

    Returns:
        For each run i, up to k pairs (j, distances[i, j]) sorted by distance, nearest first
        (ties broken by earlier order, then lower index); empty for the first run(s).
    """
    d = np.asarray(distances, dtype=np.float64)
    keys = np.asarray(order)
    n = d.shape[0]
    if d.shape != (n, n) or keys.shape != (n,):
        raise ValueError(
            f"distances must be square and match the {keys.shape[0]} order keys, got {d.shape}"
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    neighbours = []
    for i in range(n):
        earlier = np.flatnonzero(keys < keys[i])
        ranked = earlier[np.lexsort((earlier, keys[earlier], d[i, earlier]))][:k]
        neighbours.append([(int(j), float(d[i, j])) for j in ranked])
    return neighbours


def nearest_earlier_by_candidates(
    diagrams: Sequence[np.ndarray],
    metric: DiagramMetric,
    order: Sequence[float] | np.ndarray,
    k: int = 1,
    candidates: int = 64,
    queries: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> tuple[list[list[tuple[int, float]]], np.ndarray]:
    """``nearest_earlier_runs`` without all pairs: each run against at most ``candidates`` earlier
    runs, those whose lower bound (``distance_lower_bounds``) is closest to its own. With
    ``queries``, only those runs are answered (the others get no neighbours and count as proven):
    every run still takes part as a candidate. ``progress`` is told how many distances are done
    (``diagram_distances_of_pairs``).

    The answer of a run is proven to be that of all pairs when every earlier run was a candidate,
    or when the k-th distance found is below the lower bound of every earlier run left out (with a
    margin of 1e-9 for rounding); a run not proven has the k nearest among its candidates. The
    distances are computed in the all-pairs matrix's order of the two diagrams, so a proven answer
    equals ``nearest_earlier_runs`` on ``diagram_distance_matrix`` (same ties, same values).

    Returns:
        For each run, up to k pairs (j, distance), nearest first (ties by earlier order, then
        lower index), and whether each run's answer is proven.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if candidates < k:
        raise ValueError(f"candidates must be at least k ({k}), got {candidates}")
    keys = np.asarray(order)
    count = len(diagrams)
    if count == 0:
        return [], np.ones(0, dtype=bool)
    if keys.shape != (count,):
        raise ValueError(f"order must have one key per diagram ({count}), got shape {keys.shape}")
    bounds = distance_lower_bounds(diagrams, metric)
    asked = None
    if queries is not None:
        asked = np.zeros(count, dtype=bool)
        asked[np.asarray(queries, dtype=np.int64)] = True
    by_order = np.argsort(keys, kind="stable")
    # The earlier runs, sorted by lower bound, grow one group of equal order keys at a time.
    earlier_bounds = np.empty(0)
    earlier_index = np.empty(0, dtype=np.int64)
    chosen: list[tuple[int, np.ndarray]] = []
    left_out_bound = np.full(count, np.inf)  # the smallest |Δ bound| among earlier runs not chosen
    start = 0
    while start < count:
        stop = start
        while stop < count and keys[by_order[stop]] == keys[by_order[start]]:
            stop += 1
        for i in by_order[start:stop]:
            if asked is not None and not asked[i]:
                continue
            picked, rest = _closest_bounds(earlier_bounds, bounds[i], candidates)
            chosen.append((i, earlier_index[picked]))
            left_out_bound[i] = rest
        group = by_order[start:stop]
        group = group[np.argsort(bounds[group], kind="stable")]  # np.insert keeps their order at one place
        at = np.searchsorted(earlier_bounds, bounds[group], side="right")
        earlier_bounds = np.insert(earlier_bounds, at, bounds[group])
        earlier_index = np.insert(earlier_index, at, group)
        start = stop
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    proven = np.ones(count, dtype=bool)
    if not chosen:
        return neighbours, proven
    first = np.concatenate([np.full(js.size, i, dtype=np.int64) for i, js in chosen])
    second = np.concatenate([js for _, js in chosen]).astype(np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    values = diagram_distances_of_pairs(diagrams, metric, low, high, progress=progress)
    offset = 0
    for i, js in chosen:
        d = values[offset: offset + js.size]
        offset += js.size
        ranked = np.lexsort((js, keys[js], d))[:k]
        neighbours[i] = [(int(js[r]), float(d[r])) for r in ranked]
        if ranked.size == k:
            proven[i] = d[ranked[-1]] < left_out_bound[i] - 1e-9 * (1 + d[ranked[-1]])
        else:  # fewer than k candidates: every earlier run was one
            proven[i] = not np.isfinite(left_out_bound[i])
    return neighbours, proven


def _closest_bounds(sorted_bounds: np.ndarray, bound: float, candidates: int) -> tuple[np.ndarray, float]:
    """The positions of the ``candidates`` values of ``sorted_bounds`` nearest ``bound`` and the
    smallest distance to ``bound`` among the others (inf when none is left out)."""
    if sorted_bounds.size <= candidates:
        return np.arange(sorted_bounds.size), np.inf
    at = int(np.searchsorted(sorted_bounds, bound))
    low, high = max(at - candidates, 0), min(at + candidates, sorted_bounds.size)
    gaps = np.abs(sorted_bounds[low:high] - bound)
    order = np.argsort(gaps, kind="stable")
    picked = order[:candidates] + low
    # The nearest left out is the next in the window, or just outside it on either side.
    outside = [gaps[order[candidates]]] if order.size > candidates else []
    if low > 0:
        outside.append(abs(bound - sorted_bounds[low - 1]))
    if high < sorted_bounds.size:
        outside.append(abs(sorted_bounds[high] - bound))
    return picked, float(min(outside))
