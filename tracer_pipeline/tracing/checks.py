"""What the asset checks verify, as plain functions over the store: each returns the problems
found (empty when all is well), named by run id, so they can be tested without Dagster."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import DiagramRecord, TraceStore


def invocation_problems(store: TraceStore, run_ids: Sequence[str]) -> list[str]:
    """Every invocation is stored, numbered 0..n-1 without gaps, made by the network's model for
    its position, and the run did not fail."""
    problems = []
    for run in store.get_runs(run_ids):
        stored = store.invocations(run.run_id)
        numbers = [inv.sequence_number for inv in stored]
        if numbers != list(range(len(stored))):
            problems.append(f"{run.run_id}: sequence numbers {numbers[:5]}… are not 0..{len(stored) - 1}")
        wrong = [inv.sequence_number for inv in stored
                 if inv.model != run.network[inv.sequence_number % len(run.network)]]
        if wrong:
            problems.append(f"{run.run_id}: invocations {wrong[:5]} were made by the wrong model")
        if run.status == RunStatus.FAILED:
            problems.append(f"{run.run_id}: failed: {run.error}")
        elif run.status == RunStatus.COMPLETE and len(stored) < run.max_length:
            problems.append(f"{run.run_id}: {len(stored)} of {run.max_length} invocations stored")
    return problems


def embedding_problems(store: TraceStore, run_ids: Sequence[str]) -> list[str]:
    """Every stored output has an embedding from each embedding model that can embed it; vectors
    are finite, of the model's dimension and of unit norm."""
    problems = []
    for run in store.get_runs(run_ids):
        invocations = store.invocations(run.run_id)
        for model in run.embedding_models:
            spec = get_model(model)
            seqs, _, vectors = store.trajectory(run.run_id, model)
            expected = sum(1 for inv in invocations if inv.output_type in spec.embeds)
            if len(seqs) != expected:
                problems.append(f"{run.run_id}/{model}: {len(seqs)} of {expected} outputs embedded")
            if len(seqs) == 0:
                continue
            if not np.all(np.isfinite(vectors)):
                problems.append(f"{run.run_id}/{model}: non-finite values")
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                problems.append(f"{run.run_id}/{model}: norms from {norms.min():.4f} to {norms.max():.4f}")
    return problems


def diagram_problems(diagrams: Sequence[DiagramRecord]) -> list[str]:
    """Every bar has birth ≤ death; deaths are finite except exactly one H0 bar per non-empty
    trajectory."""
    problems = []
    for d in diagrams:
        where = f"{d.run_id}/{d.embedding_model}/{d.subset}"
        for dim, points in d.points.items():
            if len(points) and np.any(points[:, 0] > points[:, 1]):
                problems.append(f"{where}: H{dim} has a bar born after it dies")
            infinite = int(np.sum(np.isinf(points[:, 1]))) if len(points) else 0
            expected = 1 if (dim == 0 and d.n_points > 0) else 0
            if infinite != expected:
                problems.append(f"{where}: H{dim} has {infinite} infinite bars")
    return problems
