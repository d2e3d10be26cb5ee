"""Diversity of a self-consuming run's generations, and the generation where it snaps.

Diversity is the normalised entropy of a generation's label counts,

    H = −Σ p_k ln p_k / ln K,

over the K labels: 1 when every label is equally frequent, 0 when every sample has one label.
The counts are those of generation 0's classifier (trained on real data): a fixed judge, so a
change of H is a change of the samples, not of the judge.

The snap is the generation whose diversity fell most from the one before, provided the fall is
at least ``min_drop`` (a fifth of the scale by default); a smaller largest fall is a gradual
decline (or none), not a snap.
"""

from __future__ import annotations

import numpy as np

SNAP_MIN_DROP = 0.2


def normalised_entropy(counts: np.ndarray) -> float:
    """H of one generation's label counts (K ≥ 2 labels), in [0, 1]; 0 when there are none."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or counts.size < 2:
        return 0.0
    p = counts[counts > 0] / total
    return float(max(0.0, -np.sum(p * np.log(p)) / np.log(counts.size)))


def snap_generation(diversity: np.ndarray, min_drop: float = SNAP_MIN_DROP) -> tuple[int | None, float]:
    """(the generation where diversity snaps, or None; the largest one-generation fall)."""
    diversity = np.asarray(diversity, dtype=np.float64)
    if diversity.size < 2:
        return None, 0.0
    falls = diversity[:-1] - diversity[1:]
    g = int(np.argmax(falls))
    largest = float(falls[g])
    return (g + 1 if largest >= min_drop else None), largest
