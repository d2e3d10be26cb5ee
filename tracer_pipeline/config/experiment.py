"""A validated experiment config, and its expansion into runs: networks × (prompts or initial
images) × seeds, then the self-consuming and steering entries × seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer_pipeline.config.identity import DEFAULT_SEED_MODE, ModelOptions, RunSpec, canonical_json, sha256_hex
from tracer_pipeline.models.base import Modality
from tracer_pipeline.models.registry import get_model


@dataclass(frozen=True)
class SteeringEntry:
    """One ``steering`` entry: a noise-to-image generator, its target (a caption, or an image's
    path and pixel sha256) and its resolved options."""

    generator: str
    target: str | None
    target_image: tuple[str, str] | None
    options: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class SeedSchedule:
    cron: str
    new_seeds: int


@dataclass(frozen=True)
class Experiment:
    """A validated experiment config. ``raw`` is the config exactly as given."""

    name: str
    source: str
    networks: tuple[tuple[str, ...], ...]
    seeds: tuple[int, ...]
    prompts: tuple[str, ...]
    initial_images: tuple[tuple[str, str], ...]  # (path, pixel sha256)
    embedding_models: tuple[str, ...]
    max_length: int
    stop_when_stuck: bool = True
    max_homology_dim: int = 1
    seed_schedule: SeedSchedule | None = None
    seed_mode: str = DEFAULT_SEED_MODE
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    # (generator name, resolved options sorted by name) per self_consuming entry
    self_consuming: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    steering: tuple[SteeringEntry, ...] = ()
    # per network, each entry's resolved options; () for a network of models without options
    network_options: tuple[tuple[ModelOptions, ...], ...] = ()

    @property
    def config_hash(self) -> str:
        return sha256_hex(canonical_json(self.raw))

    def runs(self, extra_seeds: tuple[int, ...] = ()) -> list[RunSpec]:
        """runs = networks × (prompts or initial images) × seeds, then self-consuming entries ×
        seeds, then steering entries × seeds, in config order."""
        specs: list[RunSpec] = []
        for i, network in enumerate(self.networks):
            starts_with_text = get_model(network[0]).input_modality is Modality.TEXT
            options = self.network_options[i] if self.network_options else ()
            for seed in (*self.seeds, *extra_seeds):
                if starts_with_text:
                    specs.extend(RunSpec(network, seed, prompt=p, seed_mode=self.seed_mode, model_options=options)
                                 for p in self.prompts)
                else:
                    specs.extend(
                        RunSpec(network, seed, initial_image_path=path, initial_image_sha256=digest,
                                seed_mode=self.seed_mode, model_options=options)
                        for path, digest in self.initial_images
                    )
        for generator, options in self.self_consuming:
            specs.extend(RunSpec((generator,), seed, generator_options=options)
                         for seed in (*self.seeds, *extra_seeds))
        for entry in self.steering:
            path, digest = entry.target_image or (None, None)
            specs.extend(RunSpec((entry.generator,), seed, prompt=entry.target, initial_image_path=path,
                                 initial_image_sha256=digest, steering_options=entry.options)
                         for seed in (*self.seeds, *extra_seeds))
        return specs
