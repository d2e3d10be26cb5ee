"""Semantic states: clusters of outputs in embedding space, and how runs move between them.

Clustering is HDBSCAN (scikit-learn) on unit embeddings with the Euclidean metric, which orders
pairs as cosine distance does (‖x̂ − ŷ‖² = 2 − 2 cos). HDBSCAN because it needs no number of
clusters (how many states a network has is the question, not an input), finds clusters of
different densities (a fixed point is a tight cluster, a region a run wanders in a loose one),
and labels outputs that belong to no dense region as noise (−1) instead of forcing a run's
passage between states into one of them. It is deterministic for a given order of points.

HDBSCAN's cost grows faster than its input (its nearest-neighbour search is close to brute force
in 64 dimensions: ~10 s for 10,000 outputs on one core, ~2.5 s for 5,000, minutes for 100,000), so
above ``MAX_FITTED_OUTPUTS`` outputs it is fitted on a seeded sample of that many and every other
output takes the label of its nearest sampled output (cosine distance; noise when that output is
noise): the clusters of a large experiment are those of the sample, extended to the rest. 5,000
outputs of a modality are 500 runs of 20 invocations; the clusters of a smaller experiment are
HDBSCAN's on every output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows

NOISE = -1
MAX_FITTED_OUTPUTS = 5_000  # HDBSCAN is fitted on at most this many outputs (module docstring)
SAMPLE_SEED = 0
ASSIGN_BLOCK = 2048  # outputs assigned to their nearest sampled output at a time


def cluster_points(vectors: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN labels of the rows of ``vectors`` (−1 for noise); every row is noise when there
    are fewer than 2 × ``min_cluster_size`` rows (too few to tell a cluster from noise).

    ``min_samples`` is ``min_cluster_size`` (scikit-learn's default): a point is in a dense
    region when that many outputs lie around it. Above ``MAX_FITTED_OUTPUTS`` rows, fitted on a
    sample of that many drawn with ``SAMPLE_SEED`` and extended to the others by their nearest
    sampled row (``fitted_sample``; module docstring).
    """
    from sklearn.cluster import HDBSCAN

    points = np.asarray(vectors, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2 * min_cluster_size:
        return np.full(points.shape[0] if points.ndim == 2 else 0, NOISE, dtype=np.int64)
    points = unit_rows(points)
    fitted = fitted_sample(points.shape[0])
    labels = HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True).fit_predict(points[fitted])
    if fitted.size == points.shape[0]:
        return labels
    every = np.empty(points.shape[0], dtype=np.int64)
    every[fitted] = labels
    rest = np.setdiff1d(np.arange(points.shape[0]), fitted)
    for start in range(0, rest.size, ASSIGN_BLOCK):
        block = rest[start:start + ASSIGN_BLOCK]
        # On unit vectors the largest inner product is the smallest cosine (and Euclidean) distance.
        every[block] = labels[np.argmax(points[block] @ points[fitted].T, axis=1)]
    return every


def fitted_sample(count: int) -> np.ndarray:
    """The indices (ascending) of the outputs HDBSCAN is fitted on: all of them up to
    ``MAX_FITTED_OUTPUTS``, else that many drawn without replacement with ``SAMPLE_SEED``."""
    if count <= MAX_FITTED_OUTPUTS:
        return np.arange(count)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(count, MAX_FITTED_OUTPUTS, replace=False))


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
