"""What the asset checks verify, as plain functions over the store: each returns every checked
run's problems (an empty list when all is well), so that each run's partition gets its own check
result, and they can be tested without Dagster."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import DiagramRecord, TraceStore


def invocation_problems(store: TraceStore, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """Every invocation of the run is stored, numbered 0..n-1 without gaps, made by the network's
    model for its position, and the run did not fail."""
    found: dict[str, list[str]] = {}
    outlines = store.invocation_outlines(run_ids)
    for run in store.get_runs(run_ids):
        problems = found[run.run_id] = []
        stored = outlines[run.run_id]
        numbers = [seq for seq, *_ in stored]
        if numbers != list(range(len(stored))):
            problems.append(f"sequence numbers {numbers[:5]}… are not 0..{len(stored) - 1}")
        wrong = [seq for seq, model, *_ in stored if model != run.network[seq % len(run.network)]]
        if wrong:
            problems.append(f"invocations {wrong[:5]} were made by the wrong model")
        if run.status == RunStatus.FAILED:
            problems.append(f"failed: {run.error}")
        elif run.status == RunStatus.COMPLETE and len(stored) < run.max_length:
            problems.append(f"{len(stored)} of {run.max_length} invocations stored")
    return found


def stuck_problems(store: TraceStore, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """The run did not stop early at an exact fixed point or cycle. A warning, not an error: a
    stuck run is a finding (where the loop settles), and on this check's partition bar it is how
    stuck runs are found among all the runs."""
    return {run.run_id: [f"stuck: {run.stop_reason}"] if run.status == RunStatus.STUCK else []
            for run in store.get_runs(run_ids)}


def embedding_problems(store: TraceStore, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """Every stored output of the run has an embedding from each embedding model that can embed
    it; vectors are finite, of the model's dimension and of unit norm."""
    found: dict[str, list[str]] = {}
    outlines = store.invocation_outlines(run_ids)
    runs = store.get_runs(run_ids)
    trajectories = store.trajectories_by_model(runs)
    for run in runs:
        problems = found[run.run_id] = []
        for model in run.embedding_models:
            spec = get_model(model)
            seqs, _, vectors = trajectories[model][run.run_id]
            expected = sum(1 for _, _, output_type, _ in outlines[run.run_id] if output_type in spec.embeds)
            if len(seqs) != expected:
                problems.append(f"{model}: {len(seqs)} of {expected} outputs embedded")
            if len(seqs) == 0:
                continue
            if not np.all(np.isfinite(vectors)):
                problems.append(f"{model}: non-finite values")
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                problems.append(f"{model}: norms from {norms.min():.4f} to {norms.max():.4f}")
    return found


def diagram_problems(run_ids: Sequence[str], diagrams: Sequence[DiagramRecord]) -> dict[str, list[str]]:
    """In each of the run's persistence diagrams, every bar has birth ≤ death, and deaths are
    finite except exactly one H0 bar per non-empty trajectory."""
    found: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for d in diagrams:
        problems = found.setdefault(d.run_id, [])
        where = f"{d.embedding_model}/{d.subset}"
        for dim, points in d.points.items():
            if len(points) and np.any(points[:, 0] > points[:, 1]):
                problems.append(f"{where}: H{dim} has a bar born after it dies")
            infinite = int(np.sum(np.isinf(points[:, 1]))) if len(points) else 0
            expected = 1 if (dim == 0 and d.n_points > 0) else 0
            if infinite != expected:
                problems.append(f"{where}: H{dim} has {infinite} infinite bars")
    return found
