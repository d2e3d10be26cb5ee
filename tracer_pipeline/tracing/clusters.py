"""Cluster an experiment's outputs per embedding model and store each output's cluster.

Per experiment, not store-wide: an experiment's clusters then change only when its own runs do
(a new experiment elsewhere in the store does not renumber them), and the cost grows with the
experiment, not with everything ever stored. Text and image outputs are clustered apart, since
even a good joint embedding keeps a gap between the modalities; cluster numbers run on from the
text clusters to the image clusters, so each number names one cluster in the experiment.
Runs whose outputs the embedding model is unsuited to (``models.suitability.unsuited_reason``)
are left out: clusters of an embedder's blindness are not states of the network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tracer_pipeline.analysis.clusters import NOISE, cluster_points, medoids
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.models.suitability import unsuited_reason
from tracer_pipeline.store import ClusterRecord, TraceStore

# A state is a place at least this many outputs (of one modality) share.
MIN_CLUSTER_SIZE = 5
MODALITIES = ("text", "image")


@dataclass(frozen=True)
class ClusterOutcome:
    embedding_model: str
    outputs: int
    clusters: int
    noise: int
    skipped: bool  # stored clusters were computed from the same embeddings


def cluster_experiment(store: TraceStore, experiment: str,
                       min_cluster_size: int = MIN_CLUSTER_SIZE) -> list[ClusterOutcome]:
    """Cluster the outputs of ``experiment``'s runs for each of its embedding models (HDBSCAN,
    ``analysis.clusters.cluster_points``) and store them; an embedding model whose stored
    clusters were made from the same embeddings is skipped."""
    row = store.require_experiment(experiment)
    runs = sorted(store.get_runs(store.experiment_run_ids(experiment)), key=lambda r: r.run_id)
    outcomes = []
    for name in row.config["embedding_models"]:
        model = get_model(name).name
        points: dict[str, list[tuple[str, int, np.ndarray]]] = {m: [] for m in MODALITIES}
        digest = hashlib.sha256(f"{min_cluster_size}".encode())
        suited = [run.run_id for run in runs if unsuited_reason(model, run.network) is None]
        for run_id, (seqs, types, vectors) in store.trajectories(suited, model).items():
            for seq, kind, vector in zip(seqs, types, vectors, strict=True):
                points[kind].append((run_id, seq, vector))
                digest.update(f"{run_id}:{seq}:".encode() + np.asarray(vector, dtype=np.float32).tobytes())
        input_sha256 = digest.hexdigest()
        stored = store.clusters([experiment], model)
        total = sum(len(p) for p in points.values())
        if stored and stored[0].input_sha256 == input_sha256:
            outcomes.append(ClusterOutcome(model, total, len({r.cluster for r in stored} - {NOISE}),
                                           sum(r.cluster == NOISE for r in stored), skipped=True))
            continue
        records: list[ClusterRecord] = []
        offset = 0
        for modality in MODALITIES:
            if not points[modality]:
                continue
            vectors = np.stack([v for _, _, v in points[modality]])
            labels = cluster_points(vectors, min_cluster_size)
            centres = set(medoids(vectors, labels).values())
            found = int(labels.max()) + 1 if labels.size else 0
            for index, ((run_id, seq, _), label) in enumerate(zip(points[modality], labels, strict=True)):
                records.append(ClusterRecord(experiment, model, run_id, seq, modality,
                                             NOISE if label == NOISE else int(label) + offset,
                                             index in centres, input_sha256))
            offset += max(found, 0)
        store.put_clusters(experiment, model, records)
        outcomes.append(ClusterOutcome(model, total, offset, sum(r.cluster == NOISE for r in records), skipped=False))
    return outcomes
