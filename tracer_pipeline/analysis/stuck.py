"""Is a run stuck? Exact periodic orbits, semantic stagnation, recurrence, collapse of diversity.

With a fixed seed (every invocation uses the run's seed) a run is the orbit of a deterministic map:
output t is the input of invocation t + 1, made by the model at network position
(t + 1) mod L for a network of L models. Hence if output j equals an earlier output i at the
same network position (i ≡ j mod L), every later output repeats with period p = j − i.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from tracer_pipeline.analysis.cosine import cosine_similarity_matrix, unit_rows
from tracer_pipeline.analysis.divergence import mean_pairwise_distance_by_step


@dataclass(frozen=True)
class PeriodicOrbit:
    """A run that has entered a cycle: output t + period = output t for every t ≥ start.

    ``period`` counts invocations and is a multiple of the network length L;
    ``network_cycles`` = period / L, so 1 is a fixed point of the whole network (each model
    returns what it returned one cycle before) and 2 a 2-cycle. ``detected_at`` is the step
    whose output was the first exact repeat (start + period).
    """

    start: int
    period: int
    network_cycles: int
    detected_at: int


def find_periodic_orbit(
    output_hashes: Sequence[Hashable], network_length: int
) -> PeriodicOrbit | None:
    """The first exact repeat of an output at the same network position, or None.

    Scans t = 0, 1, … and stops at the first j whose output hash equals that of an earlier step
    i ≡ j (mod L). That i is the earliest step from which the run is periodic (were it periodic
    from i − 1, step j − 1 would have been an earlier repeat) and p = j − i its least period
    among multiples of L. Only outputs are compared: the initial prompt is not an output.

    Args:
        output_hashes: one hash (any hashable, e.g. a hex digest of the stored bytes) per
            invocation, in sequence order.
        network_length: L, the number of models in the network.
    """
    if network_length < 1:
        raise ValueError(f"network_length must be at least 1, got {network_length}")
    first_seen: dict[tuple[int, Hashable], int] = {}
    for step, output in enumerate(output_hashes):
        key = (step % network_length, output)
        if key in first_seen:
            start = first_seen[key]
            period = step - start
            return PeriodicOrbit(start, period, period // network_length, step)
        first_seen[key] = step
    return None


def semantic_stuck_start(
    trajectory: np.ndarray, threshold: float = 0.95, window: int = 5, lag: int = 1
) -> int | None:
    """The first step from which the run stays semantically put for ``window`` comparisons.

    With s_t = s(x_t, x_{t+lag}) (cosine similarity), returns the least t such that
    s_u ≥ ``threshold`` for every u in [t, t + window), or None. ``lag=1`` compares consecutive
    outputs; in a network of L models alternating modalities, pass ``lag=L`` to compare each
    output with the previous output of the same model (a text with a text, an image with an
    image), since cross-modal similarity stays low even for matching content.
    """
    if window < 1 or lag < 1:
        raise ValueError(f"window and lag must be at least 1, got window={window}, lag={lag}")
    steps = unit_rows(trajectory)
    similarity = np.einsum("td,td->t", steps[:-lag], steps[lag:])
    above = (similarity >= threshold).astype(np.int64)
    if above.size < window:
        return None
    # Windows of `window` consecutive comparisons that are all above the threshold.
    counts = np.convolve(above, np.ones(window, dtype=np.int64), mode="valid")
    starts = np.flatnonzero(counts == window)
    return int(starts[0]) if starts.size else None


def recurrence_matrix(trajectory: np.ndarray) -> np.ndarray:
    """R_ij = s(x_i, x_j), the cosine similarity of every step to every other: (T, T)."""
    return cosine_similarity_matrix(trajectory, trajectory)


@dataclass(frozen=True)
class DiversityCollapse:
    """Diversity D(t) of a group of runs, and when it fell to a fraction of its peak.

    ``collapsed_at`` is the first step after ``peak_step`` with D(t) ≤ fraction · D(peak), or
    None if diversity never fell that far.
    """

    mean_distance: np.ndarray
    peak_step: int
    collapsed_at: int | None


def diversity_collapse(
    trajectories: Sequence[np.ndarray], fraction: float = 0.5
) -> DiversityCollapse:
    """Collapse of diversity across runs: D(t) = mean pairwise cosine distance at step t.

    D(t) is ``divergence.mean_pairwise_distance_by_step`` (R ≥ 2 runs of equal length). Runs
    drawn into one attractor show D(t) falling after its peak; ``fraction`` sets how far it must
    fall to count as a collapse.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    distance = mean_pairwise_distance_by_step(trajectories)
    peak_step = int(np.argmax(distance))
    after = np.flatnonzero(distance[peak_step:] <= fraction * distance[peak_step])
    collapsed_at = int(peak_step + after[0]) if after.size and distance[peak_step] > 0 else None
    return DiversityCollapse(distance, peak_step, collapsed_at)
