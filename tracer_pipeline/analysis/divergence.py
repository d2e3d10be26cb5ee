"""Divergence of a group of runs: how fast runs that start alike move apart.

A group is R runs that differ in one thing only (same network and prompt, different seeds; or
same network and seed, different prompts), given as R trajectories of equal length T. At step t
their spread is the mean pairwise cosine distance

    D(t) = 2 / (R (R − 1)) · Σ_{i<j} (1 − s(x_i(t), x_j(t))).

If nearby runs separate exponentially, D(t) ≈ D(0) e^{λt} while D is small; λ (per invocation)
is a finite-time Lyapunov exponent of the network's map. Distances cannot grow past what the
embedding space allows, so once D(t) reaches its plateau the fitted λ measures the approach to
saturation, not sensitivity: ``fit_divergence_rate`` flags that case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracer_pipeline.analysis.cosine import unit_rows

MIN_FIT_POINTS = 3


def mean_pairwise_distance_by_step(trajectories: Sequence[np.ndarray]) -> np.ndarray:
    """D(t), the mean pairwise cosine distance between R ≥ 2 runs at each step t.

    With unit vectors u_i(t), 1 − s(u_i, u_j) = ‖u_i − u_j‖² / 2, and the mean over pairs is the
    sample variance Σ_i ‖u_i − ū‖² / (R − 1). It is accumulated in O(R·T·d) time and O(T·d)
    memory from w_i = u_i − u_0 (variance does not depend on the origin) as
    (Σ_i ‖w_i‖² − ‖Σ_i w_i‖² / R) / (R − 1): runs that coincide give exactly 0, not rounding
    noise that a logarithmic fit would read as a distance.

    Args:
        trajectories: R arrays of shape (T, d), one per run, all of the same length T (align or
            truncate runs of different lengths before calling).

    Returns:
        (T,) float64 array in [0, 2].
    """
    if len(trajectories) < 2:
        raise ValueError(f"divergence needs at least 2 runs, got {len(trajectories)}")
    lengths = sorted({np.shape(t)[0] for t in trajectories})
    if len(lengths) > 1:
        raise ValueError(f"trajectories must have equal lengths, got lengths {lengths}")
    runs = len(trajectories)
    origin = unit_rows(trajectories[0])
    offset_sum = np.zeros_like(origin)
    squared_norm_sum = np.zeros(origin.shape[0])
    for trajectory in trajectories[1:]:
        offset = unit_rows(trajectory) - origin
        offset_sum += offset
        squared_norm_sum += np.einsum("td,td->t", offset, offset)
    spread = squared_norm_sum - np.einsum("td,td->t", offset_sum, offset_sum) / runs
    return np.clip(spread / (runs - 1), 0.0, 2.0)


@dataclass(frozen=True)
class DivergenceFit:
    """An exponential fit D(t) ≈ e^{a + λt} over the first ``fit_steps`` steps.

    ``rate`` is λ per invocation and ``r_squared`` the coefficient of determination of the
    linear fit of ln D(t); both are None when fewer than 3 steps with D(t) > 0 were available
    (``r_squared`` also when ln D is constant, where R² is undefined). ``points_used`` counts
    those steps. ``saturated`` says the distances reached the plateau or the bound of the space
    inside the fit window, so λ says little about sensitivity. ``peak_distance`` is max D(t)
    over the whole series.
    """

    rate: float | None
    intercept: float | None
    r_squared: float | None
    points_used: int
    saturated: bool
    peak_distance: float


def fit_divergence_rate(
    mean_distance: np.ndarray,
    fit_steps: int = 10,
    saturation_fraction: float = 0.9,
    bound: float = 1.0,
) -> DivergenceFit:
    """Finite-time exponential growth rate of a divergence series D(t).

    Fits ln D(t) = a + λt by least squares over t < ``fit_steps`` where D(t) > 0 (ln 0 is
    undefined; identical runs contribute nothing).

    Saturation: with W = max D(t) over the fit window, the fit is ``saturated`` when
    W ≥ f · ``bound`` (the distance of unrelated embeddings: 1 for cosine distance, since random
    directions are orthogonal; the hard maximum 2 is reached only by opposite vectors) or, when
    the series goes on past the window, W ≥ f · median D(t) over the later steps (growth had
    already stopped), with f = ``saturation_fraction``.

    Args:
        mean_distance: (T,) D(t), e.g. from ``mean_pairwise_distance_by_step``.
        fit_steps: how many early steps the fit may use.
        saturation_fraction: f above.
        bound: the level counted as the bound of the space.
    """
    distance = np.asarray(mean_distance, dtype=np.float64).reshape(-1)
    if fit_steps < 2:
        raise ValueError(f"fit_steps must be at least 2, got {fit_steps}")
    if not np.all(np.isfinite(distance)):
        raise ValueError("mean_distance holds NaN or inf")
    peak = float(distance.max()) if distance.size else 0.0
    window = distance[:fit_steps]
    later = distance[fit_steps:]
    window_peak = float(window.max()) if window.size else 0.0
    saturated = window_peak >= saturation_fraction * bound or (
        later.size > 0 and window_peak >= saturation_fraction * float(np.median(later))
    )

    steps = np.flatnonzero(window > 0)
    if steps.size < MIN_FIT_POINTS:
        return DivergenceFit(None, None, None, int(steps.size), saturated, peak)
    log_distance = np.log(window[steps])
    rate, intercept = np.polyfit(steps.astype(np.float64), log_distance, 1)
    residual = log_distance - (intercept + rate * steps)
    total = float(np.sum((log_distance - log_distance.mean()) ** 2))
    r_squared = 1.0 - float(np.sum(residual**2)) / total if total > 0 else None
    return DivergenceFit(
        float(rate), float(intercept), r_squared, int(steps.size), saturated, peak
    )
