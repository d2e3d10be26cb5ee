"""Read what a report needs from the trace store into :mod:`tracer_pipeline.reporting.data`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from PIL import Image

from tracer_pipeline.config import RunKind, network_label
from tracer_pipeline.models.base import ModelKind, png_to_image
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.models.suitability import unsuited_reason
from tracer_pipeline.reporting.data import (
    ClusterData,
    ClusterMedoid,
    ContactImages,
    ExperimentData,
    FormationData,
    GenerationsData,
    RunData,
    SteeringData,
)
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import RunRecord, TraceStore
from tracer_pipeline.tracing.clusters import MIN_CLUSTER_SIZE
from tracer_pipeline.tracing.diagrams import SURROGATE_KEY

CONTACT_IMAGES = 8


def factors(run: RunRecord) -> dict[str, str]:
    """The factors a run's behaviour is attributed to."""
    kinds = {name: get_model(name).kind for name in run.network}
    return {
        "t2i_model": "+".join(m for m in run.network if kinds[m] is ModelKind.TEXT_TO_IMAGE),
        "i2t_model": "+".join(m for m in run.network if kinds[m] is ModelKind.IMAGE_TO_TEXT),
        "network": network_label(run.network),
        "prompt": run.prompt if run.prompt is not None else "(initial image)",
        "seed": str(run.seed),
    }


def runs_data(store: TraceStore, runs: Sequence[RunRecord], embedding_model: str, order: dict[str, int],
              with_images: set[str]) -> list[RunData]:
    """The report's view of each of ``runs`` (contact images only for those in ``with_images``, read
    from the store only when a contact sheet shows the run), read in a few queries per table
    rather than a few per run: at 10,000 runs the per-run queries were most of the report's time."""
    ids = [run.run_id for run in runs]
    outputs = store.invocation_digests(ids)
    trajectories = store.trajectories(ids, embedding_model)
    references = store.reference_embeddings(ids, embedding_model)
    diagrams = {d.run_id: d for d in store.diagrams(ids) if d.embedding_model == embedding_model and d.subset == "all"}
    found = []
    for run in runs:
        invocations = outputs[run.run_id]
        texts = [text for _, kind, _, text in invocations if kind == "text"]
        contact: tuple[tuple[int, str], ...] = ()
        if run.run_id in with_images:
            images = [(seq, digest) for seq, kind, digest, _ in invocations if kind == "image"]
            contact = tuple(images[::max(1, len(images) // CONTACT_IMAGES)][:CONTACT_IMAGES])
        seqs, _, vectors = trajectories[run.run_id]
        reference = references.get(run.run_id)
        diagram = diagrams.get(run.run_id)
        found.append(RunData(
            run_id=run.run_id, network=run.network, prompt=run.prompt, seed=run.seed, status=run.status,
            stop_reason=run.stop_reason if run.status != RunStatus.FAILED else run.error, order=order[run.run_id],
            output_types=tuple(kind for _, kind, _, _ in invocations),
            output_hashes=tuple(digest for _, _, digest, _ in invocations),
            trajectory=vectors, trajectory_seqs=tuple(seqs),
            reference=None if reference is None else reference[1],
            diagram=diagram.points if diagram else {},
            surrogate_h1_total_persistence=diagram.summary.get(SURROGATE_KEY) if diagram else None,
            last_caption=texts[-1] if texts else None,
            images=ContactImages(contact, _image_reader(store, run.run_id, contact)),
            factors=factors(run),
            embedder_unsuited=unsuited_reason(embedding_model, run.network),
            seed_mode=run.seed_mode,
        ))
    return found


def _image_reader(store: TraceStore, run_id: str,
                  outputs: Sequence[tuple[int, str]]) -> Callable[[], tuple[tuple[int, Image.Image], ...]]:
    """Reads these image outputs of a run, (sequence number, image) in order, when first called
    (a run shown for two attractors is read once)."""
    @cache
    def read() -> tuple[tuple[int, Image.Image], ...]:
        pngs = store.images([(run_id, seq) for seq, _ in outputs])
        return tuple((seq, png_to_image(pngs[(run_id, seq)])) for seq, _ in outputs)
    return read


def _ordered(store: TraceStore) -> tuple[list[RunRecord], dict[str, int]]:
    everything = store.get_runs()
    order = {r.run_id: i for i, r in enumerate(sorted(everything, key=lambda r: (r.created_at, r.run_id)))}
    return sorted(everything, key=lambda r: order[r.run_id]), order


def store_runs(store: TraceStore, embedding_model: str) -> list[RunData]:
    """Every stored run embedded by ``embedding_model``, earliest first (no images)."""
    everything, order = _ordered(store)
    return runs_data(store, [run for run in everything if embedding_model in run.embedding_models],
                     embedding_model, order, with_images=set())


def embedding_models(store: TraceStore, experiment: str) -> list[str]:
    """The experiment's embedding models by their canonical names, in config order."""
    return [get_model(name).name for name in store.require_experiment(experiment).config["embedding_models"]]


def cluster_data(store: TraceStore, experiment: str, embedding_model: str) -> ClusterData | None:
    """The experiment's stored clusters for ``embedding_model`` with each medoid's output, or
    None when the clusters asset has not run for it."""
    records = store.clusters([experiment], embedding_model)
    if not records:
        return None
    labels: dict[str, dict[int, int]] = {}
    for r in records:
        labels.setdefault(r.run_id, {})[r.sequence_number] = r.cluster
    found = []
    for r in (r for r in records if r.is_medoid):
        output = next(i for i in store.invocations(r.run_id) if i.sequence_number == r.sequence_number)
        found.append(ClusterMedoid(r.cluster, r.modality, r.run_id, r.sequence_number,
                                   output.output_text if output.output_type == "text" else None,
                                   output.output if output.output_type == "image" else None))
    return ClusterData(labels, tuple(sorted(found, key=lambda m: m.cluster)), MIN_CLUSTER_SIZE)


def experiment_data(store: TraceStore, experiment: str, embedding_model: str | None = None) -> ExperimentData:
    """An experiment's runs and every stored run embedded by the same model (for comparisons
    across the whole store), with the experiment's clusters. The embedding model defaults to
    the experiment's first."""
    model = get_model(embedding_model or embedding_models(store, experiment)[0]).name
    own = set(store.experiment_run_ids(experiment))
    everything, order = _ordered(store)
    all_runs = runs_data(store, [run for run in everything if model in run.embedding_models], model, order,
                         with_images=own)
    runs = [data for data in all_runs if data.run_id in own]
    own_runs = store.get_runs(own)
    generations = [generations_data(store, run) for run in own_runs if run.kind is RunKind.SELF_CONSUMING]
    steering = [steering_data(store, run) for run in own_runs if run.kind is RunKind.STEERING]
    return ExperimentData(experiment, model, runs, all_runs, cluster_data(store, experiment, model),
                          sorted(generations, key=lambda g: g.run_id), sorted(steering, key=lambda g: g.run_id),
                          formation_data(store, sorted(own)))


def steering_data(store: TraceStore, run: RunRecord) -> SteeringData:
    """A steering run's figures per round."""
    records = store.steering_rounds(run.run_id)

    def column(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    return SteeringData(
        run_id=run.run_id, generator=run.network[0], target=run.prompt if run.prompt is not None else "target image",
        seed=run.seed, reward_loss=column([r.reward_losses[-1] for r in records]),
        heldout_accuracy=column([r.heldout_accuracy for r in records]),
        destination_reward=column([r.destination_reward for r in records]),
        feedback_similarity=column([r.target_similarity for r in records]),
    )

def formation_data(store: TraceStore, run_ids: list[str]) -> list[FormationData]:
    """Per run, the first invocation with intermediate outputs and the images it passed through."""
    first: dict[str, list] = {}
    for record in store.intermediate_outputs(run_ids):
        frames = first.setdefault(record.run_id, [])
        if not frames or frames[0].invocation_id == record.invocation_id:
            frames.append(record)
    models = {inv.id: inv.model for run_id in first for inv in store.invocations(run_id)}
    return [FormationData(run_id, frames[0].sequence_number, models[frames[0].invocation_id],
                          tuple((r.step, r.image) for r in frames))
            for run_id, frames in first.items()]


def generations_data(store: TraceStore, run: RunRecord) -> GenerationsData:
    """A self-consuming run's figures per generation, and its grids of samples."""
    records = store.generations(run.run_id)
    count = len(records)
    matrix = np.full((count, count), np.nan)
    for record in records:
        for trained, evaluated, accuracy in record.cross_accuracy:
            matrix[trained, evaluated] = accuracy
    grids = {inv.sequence_number: inv.output for inv in store.invocations(run.run_id) if inv.output_type == "image"}
    return GenerationsData(
        run_id=run.run_id, generator=run.network[0], seed=run.seed,
        label_names=records[0].label_names if records else (),
        cross_accuracy=matrix,
        label_counts={kind: np.array([r.label_counts[kind] for r in records], dtype=np.int64).reshape(count, -1)
                      for kind in ("initial", "current")},
        generator_loss=np.array([r.generator_losses[-1] for r in records]),
        classifier_loss=np.array([r.classifier_losses[-1] for r in records]),
        grids=tuple(grids[r.generation] for r in records if r.generation in grids),
    )
