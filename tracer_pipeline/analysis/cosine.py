"""Cosine geometry of embedding vectors, shared by every trajectory measure.

Embedding models return (nearly) unit vectors; every measure here normalises again in float64
so that a vector's length never leaks into a similarity. Cosine similarity
s(x, y) = ⟨x, y⟩ / (‖x‖ ‖y‖) ∈ [−1, 1]; cosine distance 1 − s(x, y) ∈ [0, 2]. Independent
directions in a high-dimensional space are nearly orthogonal, so unrelated embeddings sit near
distance 1, and 2 is reached only by opposite vectors.

Distances between given pairs of vectors are computed as 1 − s(x, y) = ‖x̂ − ŷ‖² / 2 (x̂ the unit
vector of x) from exact differences: identical outputs (a stuck run repeats them exactly) are
then exactly 0 apart, and small distances keep their relative precision instead of drowning in
the rounding of 1 − ⟨x̂, ŷ⟩ ≈ 1e-16.
"""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows of ``vectors`` (N, d) scaled to unit Euclidean length, as float64.

    Raises:
        ValueError: not a 2-D array, a non-finite entry, or a zero row (no direction).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array (N, d) of embeddings, got shape {vectors.shape}")
    if not np.all(np.isfinite(vectors)):
        raise ValueError("embeddings hold NaN or inf")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"embedding rows {np.flatnonzero(norms[:, 0] == 0).tolist()} are zero")
    return vectors / norms


def paired_cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """D_t = 1 − s(a_t, b_t) = ‖â_t − b̂_t‖² / 2 for rows paired by index (b may be one row).

    Returns:
        (N,) float64 array in [0, 2], exactly 0 for identical directions.
    """
    difference = unit_rows(a) - unit_rows(b)
    return np.einsum("td,td->t", difference, difference) / 2


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """S_ij = s(a_i, b_j) for the rows of ``a`` (N, d) and ``b`` (M, d): an (N, M) array.

    Clipped to [−1, 1]: rounding can push ⟨u, u⟩ of a unit vector just past 1.
    """
    return np.clip(unit_rows(a) @ unit_rows(b).T, -1.0, 1.0)
