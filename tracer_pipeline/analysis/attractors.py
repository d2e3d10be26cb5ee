"""Attractors: where runs end up, found by clustering their end states.

An end state is one vector per run (for example the embedding of its last output, or of the last
output of a given model in the network, so that every end state has the same modality). Runs
whose end states cluster together are said to share an attractor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist, squareform

from tracer_pipeline.analysis.cosine import unit_rows

COMPONENT_BLOCK = 512  # end states compared with every other at a time
GRAM_MARGIN = 1e-9  # far above the rounding of 1 − ⟨x̂, ŷ⟩ on unit float64 vectors


@dataclass(frozen=True)
class Attractor:
    """A cluster of runs: their indices (ascending), the medoid run and the cluster's spread.

    The medoid is the member m minimising Σ_i d(x_i, x_m) over the members (ties: lowest
    index); ``mean_distance_to_medoid`` is that sum divided by the cluster size.
    """

    members: tuple[int, ...]
    medoid: int
    mean_distance_to_medoid: float


def find_attractors(end_states: np.ndarray, distance_threshold: float) -> list[Attractor]:
    """Cluster end states by average-linkage (UPGMA) agglomeration on cosine distance.

    Two clusters merge while the mean cosine distance between their members is at most
    ``distance_threshold`` (scipy ``linkage(method="average")`` cut with
    ``fcluster(criterion="distance")``), so every attractor's members are on average within the
    threshold of each other. The threshold depends on the embedding model: unrelated embeddings
    are near distance 1, and the same content in different wording may sit well below it.

    Args:
        end_states: (R, d) one end-state embedding per run.
        distance_threshold: the largest average cosine distance inside a cluster, ≥ 0.

    Returns:
        Attractors ordered by size (largest first), then by their smallest member; every run is
        in exactly one (a run alone is an attractor of size 1). Empty for R = 0.
    """
    if distance_threshold < 0:
        raise ValueError(f"distance_threshold must be ≥ 0, got {distance_threshold}")
    end_states = np.asarray(end_states)
    if end_states.ndim != 2:
        raise ValueError(f"end_states must be a 2-D array (R, d), got shape {end_states.shape}")
    runs = end_states.shape[0]
    if runs == 0:
        return []
    points = unit_rows(end_states)
    attractors = []
    for component in _threshold_components(points, distance_threshold):
        if component.size == 1:
            attractors.append(Attractor((int(component[0]),), int(component[0]), 0.0))
            continue
        # 1 − s(x, y) = ‖x̂ − ŷ‖² / 2 from exact differences: identical end states (runs stuck on
        # the same fixed point) are exactly 0 apart, so a threshold of 0 still joins them.
        condensed = pdist(points[component], metric="sqeuclidean") / 2
        labels = fcluster(linkage(condensed, method="average"), t=distance_threshold, criterion="distance")
        distance = squareform(condensed)
        for label in np.unique(labels):
            local = np.flatnonzero(labels == label)
            spread = distance[np.ix_(local, local)].sum(axis=1)
            best = int(np.argmin(spread))
            members = component[local]
            attractors.append(
                Attractor(tuple(int(m) for m in members), int(members[best]), float(spread[best]) / len(members))
            )
    attractors.sort(key=lambda a: (-len(a.members), a.members[0]))
    return attractors


def _threshold_components(points: np.ndarray, distance_threshold: float) -> list[np.ndarray]:
    """The connected components (ascending indices) of the graph joining end states at most
    ``distance_threshold`` apart, a block of rows against all at a time.

    Average linkage never merges across two components (every pair between them is farther than
    the threshold, so is their mean), so clustering each component alone gives the clusters of
    the whole cut at the threshold, with the memory of the largest component instead of R²."""
    # Equal end states (runs stuck on one fixed point) join one component: the graph is built
    # on the distinct ones, or 3,000 runs on one output would make 9 million edges.
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    points = distinct
    count = points.shape[0]
    rows, cols = [], []
    for start in range(0, count, COMPONENT_BLOCK):
        # Candidates from the Gram matrix (1 − ⟨x̂, ŷ⟩, fast, off by rounding), kept when the
        # exact distance from differences is within the threshold.
        block = points[start:start + COMPONENT_BLOCK]
        i, j = np.nonzero(1 - block @ points.T <= distance_threshold + GRAM_MARGIN)
        exact = np.einsum("kd,kd->k", block[i] - points[j], block[i] - points[j]) / 2 <= distance_threshold
        rows.append(i[exact] + start)
        cols.append(j[exact])
    graph = coo_matrix((np.ones(sum(r.size for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    labels = labels[inverse]
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
