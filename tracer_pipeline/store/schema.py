"""The trace store's tables (SQLAlchemy 2.x). Unique constraints enforce the identities:
an invocation by (run, sequence number), an embedding by (invocation, embedding model), a
persistence diagram by (run, embedding model, subset, TDA parameters)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tracer_pipeline.status import RunStatus


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(Text)
    config: Mapped[dict] = mapped_column(JSON)  # as given
    config_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    spec: Mapped[dict] = mapped_column(JSON)  # canonical specification the id hashes
    network: Mapped[list] = mapped_column(JSON)
    prompt: Mapped[str | None] = mapped_column(Text)
    initial_image: Mapped[bytes | None] = mapped_column(LargeBinary)  # PNG
    initial_image_sha256: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PENDING.value)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()


class ExperimentRunRow(Base):
    """Which experiments name a run, and what each asks of it."""

    __tablename__ = "experiment_runs"
    __table_args__ = (UniqueConstraint("experiment_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    max_length: Mapped[int] = mapped_column(Integer)
    embedding_models: Mapped[list] = mapped_column(JSON)
    stop_when_stuck: Mapped[bool] = mapped_column(default=True)
    max_homology_dim: Mapped[int] = mapped_column(Integer, default=1)
    scheduled: Mapped[bool] = mapped_column(default=False)  # added by the seed schedule


class InvocationRow(Base):
    __tablename__ = "invocations"
    __table_args__ = (UniqueConstraint("run_id", "sequence_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    sequence_number: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    input_invocation_id: Mapped[int | None] = mapped_column(ForeignKey("invocations.id"))
    seed: Mapped[int] = mapped_column(Integer)
    output_type: Mapped[str | None] = mapped_column(String(8))  # "text" | "image"; None on error
    output_text: Mapped[str | None] = mapped_column(Text)
    output_image: Mapped[bytes | None] = mapped_column(LargeBinary)  # PNG
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime] = mapped_column()


class EmbeddingRow(Base):
    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("invocation_id", "embedding_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invocation_id: Mapped[int] = mapped_column(
        ForeignKey("invocations.id", ondelete="CASCADE"), index=True
    )
    embedding_model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferenceEmbeddingRow(Base):
    """The embedding of a run's initial prompt (or image): where its trajectory started from."""

    __tablename__ = "reference_embeddings"
    __table_args__ = (UniqueConstraint("run_id", "embedding_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    embedding_model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian


class PersistenceDiagramRow(Base):
    __tablename__ = "persistence_diagrams"
    __table_args__ = (UniqueConstraint("run_id", "embedding_model", "subset", "params_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    embedding_model: Mapped[str] = mapped_column(String(64))
    subset: Mapped[str] = mapped_column(String(8))  # "all" | "text" | "image"
    params: Mapped[dict] = mapped_column(JSON)
    params_hash: Mapped[str] = mapped_column(String(16))
    n_points: Mapped[int] = mapped_column(Integer)
    input_sha256: Mapped[str] = mapped_column(String(64))  # of the embeddings it was computed from
    homology_dims: Mapped[list] = mapped_column(JSON)
    points: Mapped[dict] = mapped_column(JSON)  # {"0": [[birth, death], ...], "1": ...}; death may be null (infinite)
    summary: Mapped[dict] = mapped_column(JSON)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoreComparisonRow(Base):
    """All-pairs diagram distances and attractors across the store, per embedding model."""

    __tablename__ = "store_comparisons"

    embedding_model: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_ids: Mapped[list] = mapped_column(JSON)
    diagram_hashes: Mapped[list] = mapped_column(JSON)
    matrices: Mapped[bytes] = mapped_column(LargeBinary)  # numpy .npz, one array per "H<dim>_<metric>"
    attractors: Mapped[list] = mapped_column(JSON)
    attractor_threshold: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportRow(Base):
    """The latest report of an experiment: its Markdown and analysis tables (figures are files)."""

    __tablename__ = "reports"

    experiment: Mapped[str] = mapped_column(String(64), primary_key=True)
    embedding_model: Mapped[str] = mapped_column(String(64))
    markdown: Mapped[str] = mapped_column(Text)
    tables: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutputClusterRow(Base):
    """The cluster of each output of an experiment's runs, per embedding model (−1 for noise);
    ``is_medoid`` marks each cluster's medoid. Replaced whole when the clusters are recomputed."""

    __tablename__ = "output_clusters"
    __table_args__ = (UniqueConstraint("experiment", "embedding_model", "run_id", "sequence_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment: Mapped[str] = mapped_column(String(64), index=True)
    embedding_model: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    sequence_number: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(8))
    cluster: Mapped[int] = mapped_column(Integer)
    is_medoid: Mapped[bool] = mapped_column(default=False)
    input_sha256: Mapped[str] = mapped_column(String(64))  # of the embeddings clustered, to tell when stale


class GenerationRow(Base):
    """One generation of a self-consuming run, beside its invocation (the grid of its samples):
    its data and labels, the weights to resume from, and its losses. Deleted with its invocation."""

    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("run_id", "generation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    invocation_id: Mapped[int] = mapped_column(ForeignKey("invocations.id", ondelete="CASCADE"), unique=True)
    sample_shape: Mapped[list] = mapped_column(JSON)  # [N, height, width, channels]
    samples: Mapped[bytes] = mapped_column(LargeBinary)  # uint8, C order
    labels: Mapped[bytes] = mapped_column(LargeBinary)  # int64 little-endian, one per sample
    label_names: Mapped[list] = mapped_column(JSON)
    generator_state: Mapped[bytes] = mapped_column(LargeBinary)  # safetensors
    classifier_state: Mapped[bytes] = mapped_column(LargeBinary)  # safetensors
    generator_losses: Mapped[list] = mapped_column(JSON)  # mean loss per epoch
    classifier_losses: Mapped[list] = mapped_column(JSON)


class CrossAccuracyRow(Base):
    """The accuracy of one generation's classifier on another generation's test split."""

    __tablename__ = "cross_accuracy"
    __table_args__ = (UniqueConstraint("run_id", "trained_generation", "evaluated_generation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    trained_generation: Mapped[int] = mapped_column(Integer)
    evaluated_generation: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)


class LabelFrequencyRow(Base):
    """How many of a generation's samples a classifier ("initial" or "current") gives a label."""

    __tablename__ = "label_frequencies"
    __table_args__ = (UniqueConstraint("run_id", "generation", "classifier", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    classifier: Mapped[str] = mapped_column(String(8))  # "initial" | "current"
    label: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer)


class SteeringRoundRow(Base):
    """One round of a steering run, beside its invocation (the destination's picture): the
    destination action and reward-model weights to resume from, and the round's figures. Deleted
    with its invocation."""

    __tablename__ = "steering_rounds"
    __table_args__ = (UniqueConstraint("run_id", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    invocation_id: Mapped[int] = mapped_column(ForeignKey("invocations.id", ondelete="CASCADE"), unique=True)
    action_shape: Mapped[list] = mapped_column(JSON)
    destination: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, C order
    reward_state: Mapped[bytes] = mapped_column(LargeBinary)  # safetensors
    reward_losses: Mapped[list] = mapped_column(JSON)  # per epoch
    reward_loss: Mapped[float] = mapped_column(Float)  # the last epoch's
    heldout_accuracy: Mapped[float | None] = mapped_column(Float)
    destination_reward: Mapped[float] = mapped_column(Float)
    target_similarity: Mapped[float | None] = mapped_column(Float)


class PreferenceRow(Base):
    """One answered query of a steering round: the two actions, their scores and the answer."""

    __tablename__ = "preferences"
    __table_args__ = (UniqueConstraint("run_id", "round", "pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("steering_rounds.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    pair: Mapped[int] = mapped_column(Integer)
    first_action: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian
    second_action: Mapped[bytes] = mapped_column(LargeBinary)
    first_reward: Mapped[float] = mapped_column(Float)
    second_reward: Mapped[float] = mapped_column(Float)
    first_similarity: Mapped[float | None] = mapped_column(Float)
    second_similarity: Mapped[float | None] = mapped_column(Float)
    choice: Mapped[str] = mapped_column(String(16))



class IntermediateOutputRow(Base):
    """An image an invocation's output passed through while it was formed (every k-th step of a
    CLIP-guided optimisation), written with its invocation and deleted with it."""

    __tablename__ = "intermediate_outputs"
    __table_args__ = (UniqueConstraint("invocation_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invocation_id: Mapped[int] = mapped_column(ForeignKey("invocations.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    image: Mapped[bytes] = mapped_column(LargeBinary)  # PNG


# Raised whenever a table or column changes meaning; see store/opening.py.
# 2: the intermediate_outputs, steering_rounds and preferences tables (added to a version 1 store
#    when it is opened for writing).
SCHEMA_VERSION = 2


class StoreMetaRow(Base):
    """What kind of database this is: ``kind`` = ``tracer_pipeline trace store`` and
    ``schema_version``, so that a foreign or newer database is refused untouched."""

    __tablename__ = "tracer_store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunLeaseRow(Base):
    """The process computing a run, while its status is ``running``: its host and process id, and
    a heartbeat it refreshes, so that a killed process's runs read as interrupted at once."""

    __tablename__ = "run_leases"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
