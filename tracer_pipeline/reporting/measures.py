"""Per-run and per-group measures the report is built from, derived from :class:`RunData` with the
functions of :mod:`tracer_pipeline.analysis`.

Steps are sequence numbers (the position of an output in its run, from 0), never trajectory row
indices: an embedding model that embeds only some modalities leaves gaps between rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracer_pipeline.analysis.divergence import DivergenceFit, fit_divergence_rate, mean_pairwise_distance_by_step
from tracer_pipeline.analysis.drift import drift_from_reference, step_distances
from tracer_pipeline.analysis.stuck import PeriodicOrbit, find_periodic_orbit, semantic_stuck_start
from tracer_pipeline.reporting.data import RunData
from tracer_pipeline.status import RunStatus
from tracer_pipeline.tda.persistence import diagram_summary

# Semantic stuckness: each output at least this cosine-similar to the previous output of the same
# model, for this many comparisons in a row (analysis.stuck.semantic_stuck_start).
SEMANTIC_THRESHOLD = 0.95
SEMANTIC_WINDOW = 5
MODALITIES = ("text", "image")
# Divergence growth is fitted over this many first common steps, before distances saturate.
FIT_STEPS = 10
FACTORS = ("t2i_model", "i2t_model", "network", "prompt", "seed")


def trajectory_rows(run: RunData) -> np.ndarray:
    """The run's embeddings as a 2-D array (T, d); T = 0 when nothing is embedded."""
    rows = np.asarray(run.trajectory)
    return rows if rows.ndim == 2 and rows.shape[0] > 0 else np.zeros((0, 0), dtype=np.float32)


def row_modalities(run: RunData) -> tuple[str | None, ...]:
    """The output type of each trajectory row (``output_types`` is indexed by sequence number;
    None where a row's step is past the stored outputs)."""
    types = run.output_types
    return tuple(types[seq] if 0 <= seq < len(types) else None for seq in run.trajectory_seqs)


def end_state(run: RunData, modality: str) -> np.ndarray | None:
    """The embedding of the run's last output of ``modality``, or None if it has none."""
    rows = trajectory_rows(run)
    matching = [index for index, kind in enumerate(row_modalities(run)) if kind == modality]
    return rows[matching[-1]] if matching and rows.shape[0] else None


def rows_per_cycle(run: RunData) -> int:
    """How many trajectory rows one pass through the network adds: the lag that compares each
    output with the previous output of the same model."""
    return max(1, len({seq % len(run.network) for seq in run.trajectory_seqs}))


def exact_orbit(run: RunData) -> PeriodicOrbit | None:
    """The run's exact periodic orbit (``analysis.stuck.find_periodic_orbit`` on the output
    hashes with the network length), or None.

    The engine also compares outputs with the initial input, which sits at network position
    L − 1 before step 0 and is not among the output hashes. Runs with a seed per invocation
    have no exact orbit: their map changes at every step. A run it stopped as stuck (status
    "stuck") with no repeat among its outputs therefore repeated its initial input at its last
    step n − 1, so its outputs are periodic from step 0 with period n.
    """
    if run.seed_mode != "fixed":
        return None  # a new seed per invocation: a repeated output says nothing about the next one
    length = len(run.network)
    orbit = find_periodic_orbit(run.output_hashes, length)
    count = len(run.output_hashes)
    if orbit is None and run.status == RunStatus.STUCK and count:
        orbit = PeriodicOrbit(start=0, period=count, network_cycles=max(1, count // length), detected_at=count - 1)
    return orbit


@dataclass(frozen=True)
class RunMeasures:
    """What the report says about one run.

    ``drift`` (per trajectory row) is None without a reference embedding; ``step_distance`` has
    one entry per pair of consecutive rows; ``semantic_start`` is a sequence number; ``entropy``
    maps a homology dimension to the persistent entropy of its finite bars (dimensions absent
    from the stored diagram are absent here).
    """

    run: RunData
    drift: np.ndarray | None
    step_distance: np.ndarray
    orbit: PeriodicOrbit | None
    semantic_start: int | None
    entropy: dict[int, float]

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self.run.trajectory_seqs, dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return len(self.run.output_hashes)

    @property
    def stuck_start(self) -> int | None:
        """The first step from which the run is exactly or semantically stuck, or None."""
        starts = [s for s in (self.orbit.start if self.orbit else None, self.semantic_start) if s is not None]
        return min(starts) if starts else None

    @property
    def time_to_stuck(self) -> int | None:
        """``stuck_start``; for a run never stuck, its number of outputs (censored: it was not
        stuck before then, so this is a lower bound). None for a run without outputs."""
        if self.stuck_start is not None:
            return self.stuck_start
        return self.n_outputs or None

    @property
    def final_drift(self) -> float | None:
        return float(self.drift[-1]) if self.drift is not None and self.drift.size else None


def measure_run(run: RunData) -> RunMeasures:
    """Drift, step distances, exact and semantic stuckness and diagram entropies of one run.
    Semantic stuckness is not measured where the embedding model is unsuited to the run's
    outputs (``RunData.embedder_unsuited``): it would read the embedder's blindness as stuckness."""
    rows = trajectory_rows(run)
    drift = None
    if run.reference is not None and rows.shape[0]:
        drift = drift_from_reference(rows, run.reference)
    step_distance = step_distances(rows) if rows.shape[0] >= 2 else np.zeros(0)
    semantic = None
    if rows.shape[0] >= 2 and run.embedder_unsuited is None:
        start = semantic_stuck_start(rows, SEMANTIC_THRESHOLD, SEMANTIC_WINDOW, lag=rows_per_cycle(run))
        semantic = None if start is None else run.trajectory_seqs[start]
    summary = diagram_summary(run.diagram) if run.diagram else {}
    entropy = {int(key[1:]): float(stats["entropy"]) for key, stats in summary.items()}
    return RunMeasures(run, drift, step_distance, exact_orbit(run), semantic, entropy)


def factor_level(run: RunData, factor: str) -> str | None:
    """The run's level of a factor: from ``RunData.factors``, else derived from the run for the
    factors that can be (network, prompt, seed)."""
    if factor in run.factors:
        return run.factors[factor]
    derived = {
        "network": run.network_name,
        "prompt": run.prompt if run.prompt is not None else "(initial image)",
        "seed": str(run.seed),
    }
    return derived.get(factor)


def _steps_by_seq(measures: RunMeasures, until: int) -> dict[int, np.ndarray]:
    """Step → embedding for every embedded step of the run below ``until``.

    A run with an exact periodic orbit (start i, period p) is extended past its last stored
    output: its output at step t ≥ i is the output at step i + (t − i) mod p, so a run stopped
    as stuck still has a known value at every later step.
    """
    rows = trajectory_rows(measures.run)
    known = {seq: rows[index] for index, seq in enumerate(measures.run.trajectory_seqs) if seq < until}
    orbit = measures.orbit
    if orbit is not None:
        for seq in range(measures.n_outputs, until):
            source = orbit.start + (seq - orbit.start) % orbit.period
            if source in known:
                known[seq] = known[source]
    return known


def aligned_trajectories(group: Sequence[RunMeasures]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The steps at which every run of the group has an embedding, and each run's rows there.

    Runs in an exact periodic orbit are extended to the longest run of the group first
    (``_steps_by_seq``), so a run stopped as stuck does not cut the others short.
    """
    until = max((m.n_outputs for m in group), default=0)
    known = [_steps_by_seq(m, until) for m in group]
    common = sorted(set.intersection(*(set(k) for k in known))) if known else []
    steps = np.asarray(common, dtype=np.int64)
    return steps, [np.stack([k[seq] for seq in common]) if common else np.zeros((0, 0)) for k in known]


@dataclass(frozen=True)
class DivergenceGroup:
    """Runs that differ in one factor only, and their spread D(t) at their common steps.

    ``kind`` is "seed" (same network and prompt, different seeds) or "prompt" (same network and
    seed, different prompts); ``shared`` is the prompt or the seed they share. ``stride`` is the
    number of invocations between consecutive common steps (1 when every output is embedded), so
    the fitted rate per invocation is ``fit.rate / stride``. ``fit`` is None when fewer than two
    common steps exist.
    """

    kind: str
    network: str
    shared: str
    run_ids: tuple[str, ...]
    steps: np.ndarray
    distance: np.ndarray
    fit: DivergenceFit | None
    stride: int

    @property
    def rate_per_invocation(self) -> float | None:
        return None if self.fit is None or self.fit.rate is None else self.fit.rate / self.stride


def divergence_groups(measures: Sequence[RunMeasures], kind: str) -> list[DivergenceGroup]:
    """Groups of ≥ 2 runs sharing the network and the prompt (``kind="seed"``) or the network and
    the seed (``kind="prompt"``), with D(t) = ``analysis.divergence.mean_pairwise_distance_by_step``
    over their common steps and ``analysis.divergence.fit_divergence_rate`` of it.

    Failed runs and runs without embeddings are left out: a failed run's prefix would cut every
    other run of its group short.
    """
    shared_factor = {"seed": "prompt", "prompt": "seed"}[kind]
    groups: dict[tuple[str, str], list[RunMeasures]] = {}
    for m in measures:
        if m.run.status != RunStatus.FAILED and trajectory_rows(m.run).shape[0]:
            groups.setdefault((m.run.network_name, factor_level(m.run, shared_factor) or ""), []).append(m)
    result = []
    for (network, shared), group in groups.items():
        if len({factor_level(m.run, kind) for m in group}) < 2:
            continue
        steps, rows = aligned_trajectories(group)
        if steps.size == 0:
            continue
        distance = mean_pairwise_distance_by_step(rows)
        fit = fit_divergence_rate(distance, fit_steps=FIT_STEPS) if steps.size >= 2 else None
        stride = int(np.median(np.diff(steps))) if steps.size >= 2 else 1
        result.append(DivergenceGroup(kind, network, shared, tuple(m.run.run_id for m in group),
                                      steps, distance, fit, stride))
    return result
