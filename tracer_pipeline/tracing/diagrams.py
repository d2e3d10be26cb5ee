"""Persistence diagrams of each run's trajectories, per embedding model and subset.

Subsets: ``all`` (the whole trajectory) and, where a run has outputs of both modalities,
``text`` and ``image`` (the sub-trajectories of one modality). A diagram is recomputed only
when the embeddings it was computed from, or the TDA parameters, have changed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from tracer_pipeline.analysis.surrogates import surrogate_total_persistence
from tracer_pipeline.config import canonical_json, sha256_hex
from tracer_pipeline.store import DiagramRecord, RunRecord, TraceStore
from tracer_pipeline.tda.persistence import TDA_VERSION, diagram_summary, finite_bars, persistence_diagram
from tracer_pipeline.tracing import progress


@dataclass
class DiagramOutcome:
    run_id: str
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def tda_params(max_homology_dim: int) -> tuple[dict, str]:
    """The parameters a diagram depends on, and their short hash (part of its identity)."""
    params = {"complex": "vietoris-rips", "metric": "euclidean", "max_dim": max_homology_dim,
              "tda_version": TDA_VERSION}
    return params, sha256_hex(canonical_json(params))[:16]


def trajectory_subsets(seqs: list[int], types: list[str], vectors: np.ndarray) -> dict[str, tuple[list[int], str]]:
    """subset -> (the rows of the trajectory in it, the sha256 of its points): what a diagram of
    that subset is computed from, and the digest stored with it to tell when its input changed."""
    subsets = {"all": list(range(len(seqs)))}
    if {"text", "image"} <= set(types):
        for kind in ("text", "image"):
            subsets[kind] = [i for i, t in enumerate(types) if t == kind]
    digests = {}
    for subset, rows in subsets.items():
        points = vectors[rows] if rows else vectors[:0]
        digests[subset] = (rows, hashlib.sha256(canonical_json([seqs[i] for i in rows]).encode()
                                                + points.tobytes()).hexdigest())
    return digests


WRITE_EVERY_RUNS = 64
# In the summary of a run's diagram of its whole trajectory: the total H1 persistence of its
# shuffled-increments surrogate, the report's baseline (a Rips computation as costly as the
# diagram: computed here once per run, not by every report again).
SURROGATE_KEY = "surrogate_H1_total_persistence"


def compute_diagrams(store: TraceStore, run_ids: list[str]) -> dict[str, DiagramOutcome]:
    """Compute the missing or outdated diagrams of the given runs, stored a few runs at a time
    (one transaction per ``WRITE_EVERY_RUNS`` runs: an interruption loses at most those, which a
    rerun computes again)."""
    outcomes: dict[str, DiagramOutcome] = {}
    runs = store.get_runs(run_ids)
    for start in range(0, len(runs), WRITE_EVERY_RUNS):
        batch = runs[start:start + WRITE_EVERY_RUNS]
        stored = store.diagram_keys_of([run.run_id for run in batch])
        trajectories = store.trajectories_by_model(batch)
        pending: list[DiagramRecord] = []
        for run in batch:
            outcome = outcomes[run.run_id] = DiagramOutcome(run.run_id)
            params, params_hash = tda_params(run.max_homology_dim)
            for model in run.embedding_models:
                seqs, types, vectors = trajectories[model][run.run_id]
                for subset, (rows, digest) in trajectory_subsets(seqs, types, vectors).items():
                    label = f"{model}/{subset}"
                    if stored[run.run_id].get((model, subset, params_hash)) == digest:
                        outcome.skipped.append(label)
                        continue
                    pending.append(_diagram(run, model, subset, vectors[rows] if rows else vectors[:0],
                                            params, params_hash, digest, outcome))
                    outcome.computed.append(label)
        _flush(store, pending)
    return outcomes


def _diagram(run: RunRecord, model: str, subset: str, points: np.ndarray, params: dict, params_hash: str,
             digest: str, outcome: DiagramOutcome) -> DiagramRecord:
    started = time.perf_counter()
    diagram = persistence_diagram(points, max_dim=run.max_homology_dim)
    duration = time.perf_counter() - started
    summary = diagram_summary(diagram)
    if subset == "all" and finite_bars(diagram, 1).size:  # the runs whose loops the report compares
        summary[SURROGATE_KEY] = surrogate_total_persistence(run.run_id, points)
    outcome.seconds += time.perf_counter() - started
    return DiagramRecord(
        run_id=run.run_id, embedding_model=model, subset=subset, params=params, params_hash=params_hash,
        n_points=len(points), input_sha256=digest, points=diagram, summary=summary, duration_s=duration,
    )


def _flush(store: TraceStore, pending: list[DiagramRecord]) -> None:
    store.put_diagrams(pending)
    if pending:
        progress.report("diagrams", len(pending))
