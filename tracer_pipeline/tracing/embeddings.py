"""Embed every stored output of a run with every embedding model its experiments ask for.

Text outputs go to text-capable models, images to image-capable ones. Work is batched across
runs per embedding model; what is stored (at the model's current version) is skipped, and
embeddings made by an older model version are deleted and recomputed, never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import EmbeddingModel, ModelFailure, batch_then_items
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.store import InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.tracing import progress

DEFAULT_BATCH_SIZE = 64


@dataclass
class EmbeddingOutcome:
    run_id: str
    computed: int = 0
    skipped: int = 0
    stale_replaced: int = 0
    failures: list[str] = field(default_factory=list)


def _initial_modality(run: RunRecord) -> str | None:
    """The modality of the run's starting input; None for a self-consuming run, which starts
    from real data (its generation 0, embedded as an invocation) rather than an input."""
    if run.prompt is not None:
        return "text"
    return "image" if run.initial_image is not None else None


def _current(stored: tuple[str, np.ndarray] | None, version: str) -> bool:
    return stored is not None and stored[0] == version and bool(np.all(np.isfinite(stored[1])))


def embed_runs(
    store: TraceStore, pool: ModelPool, run_ids: list[str], batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, EmbeddingOutcome]:
    """Compute the missing embeddings of the given runs; return what was done per run."""
    outcomes = {run_id: EmbeddingOutcome(run_id) for run_id in run_ids}
    runs = store.get_runs(run_ids)
    for model_name in dict.fromkeys(m for run in runs for m in run.embedding_models):
        spec = get_model(model_name)
        todo: list[InvocationRecord] = []
        for run in runs:
            if spec.name not in run.embedding_models:
                continue
            stored = store.embedding_status(run.run_id, spec.name)
            # An older model version's vectors, and any that are not finite, are computed again.
            stale = [i for i, version in stored.items() if version != spec.version]
            stale += store.non_finite_embeddings(run.run_id, spec.name)
            stored = {i: v for i, v in stored.items() if i not in stale}
            if stale:
                store.delete_embeddings(spec.name, stale)
                outcomes[run.run_id].stale_replaced += len(stale)
            for inv in store.invocations(run.run_id):
                if inv.output_type is None or inv.output_type not in spec.embeds:
                    continue
                if stored.get(inv.id) == spec.version:
                    outcomes[run.run_id].skipped += 1
                else:
                    todo.append(inv)
        references = [run for run in runs if spec.name in run.embedding_models
                      and _initial_modality(run) in spec.embeds
                      and not _current(store.reference_embedding(run.run_id, spec.name), spec.version)]
        if not todo and not references:
            continue
        pool.prepare([spec.name])
        try:
            model = pool.get(spec.name)
        except TracerError as exc:
            for inv in todo:
                outcomes[inv.run_id].failures.append(f"{spec.name}: {exc}")
            continue
        assert isinstance(model, EmbeddingModel)
        # The initial prompt (or image) too: drift is measured from where a run started.
        for start in range(0, len(references), batch_size):
            batch = references[start : start + batch_size]
            vectors = batch_then_items(model.embed, [r.initial_input for r in batch], policy=pool.policy)
            for run, vector in zip(batch, vectors, strict=True):
                if isinstance(vector, ModelFailure) or not np.all(np.isfinite(vector)):
                    why = vector if isinstance(vector, ModelFailure) else "the vector is not finite (NaN or inf)"
                    outcomes[run.run_id].failures.append(f"{spec.name} on the initial input: {why}")
                else:
                    store.put_reference_embedding(run.run_id, spec.name, spec.version, vector)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            vectors = batch_then_items(model.embed, [inv.output for inv in batch], policy=pool.policy)
            good: dict[int, np.ndarray] = {}
            for inv, vector in zip(batch, vectors, strict=True):
                if isinstance(vector, ModelFailure):
                    outcomes[inv.run_id].failures.append(
                        f"{spec.name} on invocation {inv.sequence_number}: {vector}")
                    continue
                if not np.all(np.isfinite(vector)):
                    outcomes[inv.run_id].failures.append(
                        f"{spec.name} on invocation {inv.sequence_number}: the vector is not finite (NaN or inf)")
                    continue
                if vector.shape != (model.dimension,):
                    outcomes[inv.run_id].failures.append(
                        f"{spec.name} on invocation {inv.sequence_number}: dimension {vector.shape} "
                        f"instead of {model.dimension}")
                    continue
                good[inv.id] = vector
            store.add_embeddings(spec.name, spec.version, good)
            progress.report("embeddings", len(good))
            for inv in batch:
                if inv.id in good:
                    outcomes[inv.run_id].computed += 1
    return outcomes
