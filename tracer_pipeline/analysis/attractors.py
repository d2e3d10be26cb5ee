"""Attractors: where runs end up, found by clustering their end states.

An end state is one vector per run (for example the embedding of its last output, or of the last
output of a given model in the network, so that every end state has the same modality). Runs
whose end states cluster together are said to share an attractor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from tracer_pipeline.analysis.cosine import unit_rows


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
    # 1 − s(x, y) = ‖x̂ − ŷ‖² / 2 from exact differences: identical end states (runs stuck on
    # the same fixed point) are exactly 0 apart, so a threshold of 0 still joins them.
    condensed = pdist(unit_rows(end_states), metric="sqeuclidean") / 2
    distance = squareform(condensed)
    if runs == 1:
        labels = np.zeros(1, dtype=np.int64)
    else:
        labels = fcluster(
            linkage(condensed, method="average"), t=distance_threshold, criterion="distance"
        )

    attractors = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        spread = distance[np.ix_(members, members)].sum(axis=1)
        best = int(np.argmin(spread))
        attractors.append(
            Attractor(
                tuple(int(m) for m in members), int(members[best]), float(spread[best]) / len(members)
            )
        )
    attractors.sort(key=lambda a: (-len(a.members), a.members[0]))
    return attractors
