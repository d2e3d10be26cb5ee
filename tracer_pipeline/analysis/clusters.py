"""Semantic states: clusters of outputs in embedding space, and how runs move between them.

Clustering is HDBSCAN (scikit-learn) on unit embeddings with the Euclidean metric, which orders
pairs as cosine distance does (‖x̂ − ŷ‖² = 2 − 2 cos). HDBSCAN because it needs no number of
clusters (how many states a network has is the question, not an input), finds clusters of
different densities (a fixed point is a tight cluster, a region a run wanders in a loose one),
and labels outputs that belong to no dense region as noise (−1) instead of forcing a run's
passage between states into one of them. It is deterministic for a given order of points.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows

NOISE = -1


def cluster_points(vectors: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN labels of the rows of ``vectors`` (−1 for noise); every row is noise when there
    are fewer than 2 × ``min_cluster_size`` rows (too few to tell a cluster from noise).

    ``min_samples`` is ``min_cluster_size`` (scikit-learn's default): a point is in a dense
    region when that many outputs lie around it.
    """
    from sklearn.cluster import HDBSCAN

    points = np.asarray(vectors, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2 * min_cluster_size:
        return np.full(points.shape[0] if points.ndim == 2 else 0, NOISE, dtype=np.int64)
    return HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True).fit_predict(unit_rows(points))


def medoids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Cluster → the index of its medoid: the member with the least total cosine distance to
    the others (ties to the lowest index). Noise has no medoid.

    On unit vectors the total is Σⱼ (1 − ⟨xᵢ, xⱼ⟩) = n − ⟨xᵢ, Σⱼ xⱼ⟩, so the medoid is the member
    most aligned with the members' sum: linear in the cluster's size, where the pairwise
    distances of a cluster of 100,000 outputs would need 80 GB."""
    points = unit_rows(np.asarray(vectors, dtype=np.float64))
    found = {}
    for cluster in sorted(set(int(c) for c in labels) - {NOISE}):
        members = np.flatnonzero(labels == cluster)
        alignment = points[members] @ points[members].sum(axis=0)
        found[cluster] = int(members[int(np.argmax(alignment))])
    return found


def transitions(sequences: Sequence[Sequence[int]]) -> Counter[tuple[int, int]]:
    """(from, to) → how often a run's next clustered output was in another cluster, over every
    run's sequence of labels. Noise is skipped (a → noise → b counts as a → b): a passage
    between states is not a state."""
    counts: Counter[tuple[int, int]] = Counter()
    for sequence in sequences:
        states = [int(c) for c in sequence if c != NOISE]
        counts.update((a, b) for a, b in zip(states, states[1:], strict=False) if a != b)
    return counts


def dwell_times(sequences: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """Cluster → the length of every uninterrupted stay in it (consecutive outputs with its
    label), over every run's sequence of labels; noise is not a stay."""
    stays: dict[int, list[int]] = {}
    for sequence in sequences:
        labels = [int(c) for c in sequence]
        start = 0
        for i in range(1, len(labels) + 1):
            if i == len(labels) or labels[i] != labels[start]:
                if labels[start] != NOISE:
                    stays.setdefault(labels[start], []).append(i - start)
                start = i
    return stays
