"""The frozen records the store hands out; ORM rows (:mod:`tracer_pipeline.store.schema`) stay
inside the store.

``StoreComparison`` and ``AttractorData`` are computed by :mod:`tracer_pipeline.reporting.compare`
but persisted and read back here, so they live with the store: reporting depends on the store,
never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image

from tracer_pipeline.config import DEFAULT_SEED_MODE, RunKind
from tracer_pipeline.errors import StoreError
from tracer_pipeline.models.base import Output, png_to_image
from tracer_pipeline.status import RunStatus


@dataclass(frozen=True)
class RunRecord:
    """A run as stored, with what the experiments naming it ask of it."""

    run_id: str
    network: tuple[str, ...]
    prompt: str | None
    initial_image: bytes | None
    seed: int
    status: RunStatus
    stop_reason: str | None
    error: str | None
    max_length: int  # the largest any experiment asks for
    embedding_models: tuple[str, ...]  # the union of what the experiments ask for
    stop_when_stuck: bool  # False when any experiment asks to continue
    max_homology_dim: int
    experiments: tuple[str, ...]
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    spec: dict = field(default_factory=dict, compare=False)  # the canonical specification

    @property
    def seed_mode(self) -> str:
        """``fixed`` or ``per_invocation``: part of the identity, so in the specification only
        when not the default."""
        return self.spec.get("seed_mode", DEFAULT_SEED_MODE)

    @property
    def kind(self) -> RunKind:
        """Which engine computes this run's steps (network runs' specifications have no kind)."""
        return RunKind(self.spec.get("kind", RunKind.NETWORK))

    def model_params(self, position: int) -> dict:
        """The params of the network's model at ``position`` as the run's identity holds them:
        for a model with options, the options it runs with."""
        return dict(self.spec["network"][position]["params"])

    @property
    def initial_input(self) -> Output:
        """The prompt, or the initial image: the input of invocation 0."""
        if self.prompt is not None:
            return self.prompt
        if self.initial_image is None:
            raise StoreError(f"run {self.run_id} has neither a prompt nor an initial image")
        return png_to_image(self.initial_image)


@dataclass(frozen=True)
class InvocationRecord:
    id: int
    run_id: str
    sequence_number: int
    model: str
    model_version: str
    input_invocation_id: int | None
    seed: int
    output_type: str | None
    output_text: str | None
    output_image: bytes | None
    output_sha256: str | None
    error: str | None
    started_at: datetime
    completed_at: datetime

    @property
    def empty_caption(self) -> bool:
        """The model answered with an empty text: an output the run continued from."""
        return self.output_type == "text" and not self.output_text

    @property
    def output(self) -> Output:
        if self.output_type == "text":
            return self.output_text or ""
        if self.output_type == "image" and self.output_image is not None:
            return png_to_image(self.output_image)
        raise StoreError(f"invocation {self.run_id}#{self.sequence_number} has no output ({self.error})")


@dataclass(frozen=True)
class IntermediateRecord:
    """An image an invocation's output passed through at optimisation step ``step``."""

    run_id: str
    sequence_number: int
    invocation_id: int
    step: int
    image_png: bytes

    @property
    def image(self) -> Image.Image:
        return png_to_image(self.image_png)


@dataclass(frozen=True)
class DiagramRecord:
    run_id: str
    embedding_model: str
    subset: str
    params: dict
    params_hash: str
    n_points: int
    input_sha256: str
    points: dict[int, np.ndarray]  # dim -> (k, 2) array, death = inf for the infinite H0 bar
    summary: dict
    duration_s: float


@dataclass(frozen=True)
class AttractorData:
    """A recurring end state: the runs whose end states cluster together, and the medoid run."""

    modality: str  # the modality of the end states clustered ("text" or "image")
    run_ids: tuple[str, ...]
    medoid_run_id: str
    mean_distance_to_medoid: float


@dataclass(frozen=True)
class StoreComparison:
    """Comparisons across every run in the store for one embedding model (the "has it done this
    before?" question): persistence-diagram distances and recurring end states.

    ``matrices[(homology_dim, metric)]`` is the distance matrix between the runs in
    ``matrix_ids`` order: every run of ``run_ids`` (``matrix_run_ids`` None), or, in a store too
    large for all pairs, a fixed sample of them (``matrix_run_ids``). ``diagram_hashes`` identify
    the diagram of each run of ``run_ids`` that its rows were computed from, so a later comparison
    can reuse the rows of runs whose diagrams did not change.

    Without all pairs, ``nearest`` holds each run's nearest earlier runs by H1 Wasserstein
    distance (run id → up to ``NEAREST_STORED`` (earlier run id, distance), nearest first; every
    run with a diagram of outputs its embedding model is suited to) searched among candidates,
    and ``unproven`` the runs whose answer is not proven to be that of all pairs
    (``reporting.compare``); both are None and empty with all pairs.
    """

    embedding_model: str
    run_ids: tuple[str, ...]
    diagram_hashes: tuple[str, ...]
    matrices: dict[tuple[int, str], np.ndarray]
    attractors: tuple[AttractorData, ...]
    attractor_threshold: float
    matrix_run_ids: tuple[str, ...] | None = None
    nearest: dict[str, tuple[tuple[str, float], ...]] | None = None
    unproven: frozenset[str] = frozenset()

    @property
    def matrix_ids(self) -> tuple[str, ...]:
        """The runs the matrices' rows and columns are, in order."""
        return self.run_ids if self.matrix_run_ids is None else self.matrix_run_ids

    @property
    def all_pairs(self) -> bool:
        """Whether the matrices hold every pair of the compared runs."""
        return bool(self.matrices) and len(self.matrix_ids) == len(self.run_ids)


@dataclass(frozen=True)
class ClusterRecord:
    """One output's cluster in an experiment, for one embedding model (−1 for noise)."""

    experiment: str
    embedding_model: str
    run_id: str
    sequence_number: int
    modality: str
    cluster: int
    is_medoid: bool
    input_sha256: str


@dataclass(frozen=True)
class GenerationRecord:
    """One generation of a self-consuming run, beside its invocation (the grid of its samples):
    the data it holds, the weights to resume from, and its figures.

    ``labels`` are the real labels in generation 0 and the previous generation's classifier's
    afterwards. ``generator_state`` is the generator after training on this generation (what the
    next one samples from); ``classifier_state`` the classifier trained on it. ``label_counts``
    maps "initial" (generation 0's classifier) and "current" (``labels``) to a count per label.
    ``cross_accuracy`` holds the (trained generation, evaluated generation, accuracy) pairs this
    generation completed: its classifier on every generation so far, and every earlier classifier
    on it.
    """

    run_id: str
    generation: int
    invocation_id: int | None
    samples: np.ndarray  # (N, height, width, channels) uint8
    labels: np.ndarray  # (N,) int64
    label_names: tuple[str, ...]
    generator_state: bytes
    classifier_state: bytes
    generator_losses: tuple[float, ...]  # mean loss per epoch
    classifier_losses: tuple[float, ...]
    label_counts: dict[str, tuple[int, ...]]
    cross_accuracy: tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class StoredEmbedding:
    """One stored vector as the store's doctor checks it: an output's embedding, or (with
    ``sequence_number`` None) the embedding of a run's initial prompt or image."""

    id: int
    run_id: str
    sequence_number: int | None
    embedding_model: str
    model_version: str
    dimension: int | None  # as recorded; None for an initial input's embedding
    vector: np.ndarray


@dataclass(frozen=True)
class Orphan:
    """Rows that point at something no longer stored (possible only in a store written without
    foreign keys, or damaged), or a run that no experiment names."""

    table: str
    what: str
    run_ids: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class PreferenceRecord:
    """One answered query of a steering round: the two actions, the reward model's score of each
    when they were chosen, the source's similarity of each to the target (when it has them), and
    the answer ("first", "second", "both_good" or "both_bad")."""

    pair: int
    first_action: np.ndarray  # float32, the generator's action shape
    second_action: np.ndarray
    first_reward: float
    second_reward: float
    first_similarity: float | None
    second_similarity: float | None
    choice: str


@dataclass(frozen=True)
class SteeringRoundRecord:
    """One round of a steering run, beside its invocation (the destination's picture): what the
    next round resumes from (the destination action, the reward model's weights; the memory is
    every round's preferences) and its figures.

    ``heldout_accuracy``: how often the reward model, before it trained on this round's answers,
    ranked the answered pairs as the source did (None when no pair was decided either way).
    ``target_similarity``: the destination's similarity to the target, where the source measures it.
    """

    run_id: str
    round: int
    invocation_id: int | None
    destination: np.ndarray  # float32, the generator's action shape
    reward_state: bytes  # safetensors
    reward_losses: tuple[float, ...]  # per epoch
    heldout_accuracy: float | None
    destination_reward: float
    target_similarity: float | None
    preferences: tuple[PreferenceRecord, ...]
