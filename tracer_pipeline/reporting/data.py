"""What an experiment report is computed from and what it produces: plain data, no database.

``gather.py`` fills these from the trace store; ``report.py`` turns them into a report. Keeping
them apart lets the report be tested on constructed trajectories whose answers are known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tracer_pipeline.config import network_label
from tracer_pipeline.reporting.findings import Finding
from tracer_pipeline.status import RunStatus


@dataclass(frozen=True)
class ContactImages:
    """A few of a run's image outputs for a contact sheet, read only when a sheet shows the run
    (a report shows a handful of runs; decoding every run's images held gigabytes at 10,000
    runs): the (sequence number, output sha256) of each, which is what identifies them, and
    ``reader``, which reads them as (sequence number, image) pairs."""

    outputs: tuple[tuple[int, str], ...] = ()
    reader: Callable[[], tuple[tuple[int, Image.Image], ...]] | None = field(default=None, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.outputs)

    def read(self) -> tuple[tuple[int, Image.Image], ...]:
        return self.reader() if self.reader is not None and self.outputs else ()


@dataclass(frozen=True)
class RunData:
    """One run, as far as the analysis needs it, for one embedding model."""

    run_id: str
    network: tuple[str, ...]
    prompt: str | None  # None for runs started from an image
    seed: int
    status: RunStatus
    stop_reason: str | None
    order: int  # registration order in the store: lower is earlier
    output_types: tuple[str, ...]  # "text" | "image", one per stored invocation, in sequence order
    output_hashes: tuple[str, ...]  # sha256 of each output, in sequence order
    trajectory: np.ndarray  # (T, d) float32 embeddings of the outputs this model embeds, in order
    trajectory_seqs: tuple[int, ...]  # the sequence number of each trajectory row
    reference: np.ndarray | None  # (d,) embedding of the initial prompt or image
    diagram: dict[int, np.ndarray]  # persistence diagram of the whole trajectory: dim -> (k, 2)
    last_caption: str | None = None
    images: ContactImages = ContactImages()  # a few, for contact sheets

    factors: dict[str, str] = field(default_factory=dict)  # t2i_model, i2t_model, network, prompt, seed
    embedder_unsuited: str | None = None  # why this embedding model cannot place the run's outputs
    seed_mode: str = "fixed"
    # the total H1 persistence of its shuffled-increments surrogate, as stored with the diagram
    surrogate_h1_total_persistence: float | None = None

    @property
    def network_name(self) -> str:
        return network_label(self.network)


@dataclass(frozen=True)
class ClusterMedoid:
    """The output at the centre of a cluster: its caption or its image."""

    cluster: int
    modality: str
    run_id: str
    sequence_number: int
    caption: str | None
    image: Image.Image | None


@dataclass(frozen=True)
class ClusterData:
    """The clusters of an experiment's outputs for one embedding model (``tracing.clusters``):
    run id → sequence number → cluster (−1 for noise), and each cluster's medoid."""

    labels: dict[str, dict[int, int]]
    medoids: tuple[ClusterMedoid, ...]
    min_cluster_size: int


@dataclass(frozen=True)
class GenerationsData:
    """A self-consuming run's generations, as far as the collapse section needs them; every
    array has one row per stored generation, in order."""

    run_id: str
    generator: str
    seed: int
    label_names: tuple[str, ...]
    cross_accuracy: np.ndarray  # (G, G): [trained generation, evaluated generation]; NaN if missing
    label_counts: dict[str, np.ndarray]  # "initial" | "current" -> (G, labels)
    generator_loss: np.ndarray  # (G,) the last epoch's mean loss of the generator's training
    classifier_loss: np.ndarray  # (G,) the last epoch's mean loss of the classifier's training
    grids: tuple[Image.Image, ...] = ()  # the stored grid of samples of each generation


@dataclass(frozen=True)
class SteeringData:
    """A steering run's rounds, as far as the steering section needs them; every array has one
    entry per stored round, in order (NaN where a round has no such figure)."""

    run_id: str
    generator: str
    target: str  # the caption, or "target image"
    seed: int
    reward_loss: np.ndarray  # the last epoch's Bradley–Terry loss of the reward model
    heldout_accuracy: np.ndarray  # the reward model's ranking of the round's pairs before training on them
    destination_reward: np.ndarray
    feedback_similarity: np.ndarray  # the destination's similarity to the target by the feedback's model


@dataclass(frozen=True)
class FormationData:
    """How one invocation's output formed: the images it passed through, by optimisation step."""

    run_id: str
    sequence_number: int
    model: str
    frames: tuple[tuple[int, Image.Image], ...]


@dataclass(frozen=True)
class ExperimentData:
    name: str
    embedding_model: str
    runs: list[RunData]  # this experiment's runs
    store_runs: list[RunData]  # every run in the store embedded by this model (this experiment's included)
    clusters: ClusterData | None = None  # None until the clusters asset has run
    generations: list[GenerationsData] = field(default_factory=list)  # this experiment's self-consuming runs
    steering: list[SteeringData] = field(default_factory=list)  # this experiment's steering runs
    # the first formed invocation of each of this experiment's runs that has intermediate outputs
    formations: list[FormationData] = field(default_factory=list)


@dataclass
class Report:
    """A report: Markdown that refers to its figures by file name, the figures as PNG bytes, and
    the analysis tables (each a list of flat rows) that are also exported as Parquet."""

    title: str
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    sections: dict[str, Finding] = field(default_factory=dict)  # reporting.findings.SECTIONS
