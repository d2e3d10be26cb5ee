"""Experiment configs: load, validate (every problem at once), expand into runs.

One loader (:mod:`~tracer_pipeline.config.loading`: ``load_experiment``, ``parse_experiment``)
with the checks of a config's larger parts (:mod:`~tracer_pipeline.config.checks`); the validated
:class:`Experiment` and its expansion into runs (:mod:`~tracer_pipeline.config.experiment`); and
one place that decides run identity (:mod:`~tracer_pipeline.config.identity`: :class:`RunSpec`,
its canonical specification and ``run_id``). Everything is imported from here.
"""

from tracer_pipeline.config.experiment import Experiment, SeedSchedule, SteeringEntry
from tracer_pipeline.config.identity import (
    DEFAULT_SEED_MODE,
    SEED_MODES,
    ModelOptions,
    RunKind,
    RunSpec,
    canonical_json,
    frozen_options,
    network_label,
    sha256_hex,
    thawed_options,
)
from tracer_pipeline.config.loading import (
    KNOWN_KEYS,
    MAX_LENGTH_LIMIT,
    MAX_SEED,
    NAME_PATTERN,
    load_experiment,
    parse_experiment,
)

__all__ = [
    "DEFAULT_SEED_MODE", "KNOWN_KEYS", "MAX_LENGTH_LIMIT", "MAX_SEED", "NAME_PATTERN", "SEED_MODES",
    "Experiment", "ModelOptions", "RunKind", "RunSpec", "SeedSchedule", "SteeringEntry",
    "canonical_json", "frozen_options", "load_experiment", "network_label", "parse_experiment", "sha256_hex",
    "thawed_options",
]
