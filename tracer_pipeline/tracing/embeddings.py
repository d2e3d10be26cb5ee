"""Embed every stored output of a run with every embedding model its experiments ask for.

Text outputs go to text-capable models, images to image-capable ones. Work is batched across
runs per embedding model; what is stored (at the model's current version) is skipped, and
embeddings made by an older model version are deleted and recomputed, never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import EmbeddingModel, ModelFailure, ModelSpec, batch_then_items
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.store import InvocationRecord, RunRecord, TraceStore
from tracer_pipeline.tracing import progress

DEFAULT_BATCH_SIZE = 64
RUNS_PER_READ = 64  # runs read, embedded and stored together: their outputs are in memory at once


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
    """Compute the missing embeddings of the given runs; return what was done per run. Runs are
    read, embedded and stored ``RUNS_PER_READ`` at a time: a few queries per group of runs, and
    only that group's outputs in memory."""
    outcomes = {run_id: EmbeddingOutcome(run_id) for run_id in run_ids}
    runs = store.get_runs(run_ids)
    for model_name in dict.fromkeys(m for run in runs for m in run.embedding_models):
        spec = get_model(model_name)
        own = [run for run in runs if spec.name in run.embedding_models]
        model: EmbeddingModel | TracerError | None = None  # loaded on the first work
        for start in range(0, len(own), RUNS_PER_READ):
            group = own[start:start + RUNS_PER_READ]
            todo = _missing_outputs(store, spec, group, outcomes)
            stored = store.reference_embeddings([run.run_id for run in group], spec.name)
            references = [run for run in group if _initial_modality(run) in spec.embeds
                          and not _current(stored.get(run.run_id), spec.version)]
            if not todo and not references:
                continue
            if model is None:
                model = _load(pool, spec.name)
            if isinstance(model, TracerError):
                for inv in todo:
                    outcomes[inv.run_id].failures.append(f"{spec.name}: {model}")
                continue
            _embed_references(store, pool, model, spec, references, outcomes, batch_size)
            _embed_outputs(store, pool, model, spec, todo, outcomes, batch_size)
    return outcomes


def _load(pool: ModelPool, name: str) -> EmbeddingModel | TracerError:
    pool.prepare([name])
    try:
        model = pool.get(name)
    except TracerError as exc:
        return exc
    assert isinstance(model, EmbeddingModel)
    return model


def _missing_outputs(store: TraceStore, spec: ModelSpec, runs: list[RunRecord],
                     outcomes: dict[str, EmbeddingOutcome]) -> list[InvocationRecord]:
    """The outputs of these runs that ``spec`` must embed; vectors of an older model version,
    and any that are not finite, are deleted to be computed again."""
    ids = [run.run_id for run in runs]
    states = store.embedding_states(ids, spec.name)
    stale = [(run_id, i) for run_id in ids for i, (version, finite) in states[run_id].items()
             if version != spec.version or not finite]
    if stale:
        store.delete_embeddings(spec.name, [i for _, i in stale])
        for run_id, _ in stale:
            outcomes[run_id].stale_replaced += 1
    todo = []
    for run_id, invocations in store.invocations_of(ids).items():
        current = {i for i, (version, finite) in states[run_id].items() if version == spec.version and finite}
        for inv in invocations:
            if inv.output_type is None or inv.output_type not in spec.embeds:
                continue
            if inv.id in current:
                outcomes[run_id].skipped += 1
            else:
                todo.append(inv)
    return todo


def _embed_references(store: TraceStore, pool: ModelPool, model: EmbeddingModel, spec: ModelSpec,
                      runs: list[RunRecord], outcomes: dict[str, EmbeddingOutcome], batch_size: int) -> None:
    """The initial prompt (or image) too: drift is measured from where a run started."""
    good: dict[str, np.ndarray] = {}
    for start in range(0, len(runs), batch_size):
        batch = runs[start : start + batch_size]
        vectors = batch_then_items(model.embed, [r.initial_input for r in batch], policy=pool.policy)
        for run, vector in zip(batch, vectors, strict=True):
            if isinstance(vector, ModelFailure) or not np.all(np.isfinite(vector)):
                why = vector if isinstance(vector, ModelFailure) else "the vector is not finite (NaN or inf)"
                outcomes[run.run_id].failures.append(f"{spec.name} on the initial input: {why}")
            else:
                good[run.run_id] = vector
    store.put_reference_embeddings(spec.name, spec.version, good)


def _embed_outputs(store: TraceStore, pool: ModelPool, model: EmbeddingModel, spec: ModelSpec,
                   todo: list[InvocationRecord], outcomes: dict[str, EmbeddingOutcome], batch_size: int) -> None:
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = batch_then_items(model.embed, [inv.output for inv in batch], policy=pool.policy)
        good: dict[int, np.ndarray] = {}
        for inv, vector in zip(batch, vectors, strict=True):
            why = _unusable(vector, model.dimension)
            if why:
                outcomes[inv.run_id].failures.append(f"{spec.name} on invocation {inv.sequence_number}: {why}")
            else:
                good[inv.id] = vector
        store.add_embeddings(spec.name, spec.version, good)
        progress.report("embeddings", len(good))
        for inv in batch:
            if inv.id in good:
                outcomes[inv.run_id].computed += 1


def _unusable(vector: np.ndarray | ModelFailure, dimension: int) -> str | None:
    if isinstance(vector, ModelFailure):
        return str(vector)
    if not np.all(np.isfinite(vector)):
        return "the vector is not finite (NaN or inf)"
    if vector.shape != (dimension,):
        return f"dimension {vector.shape} instead of {dimension}"
    return None
