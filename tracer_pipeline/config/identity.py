"""Run identity: the one place that decides what a run is and its id.

A run is one (network, prompt or initial image, seed). Its identity, ``run_id``, is the first
16 hex digits of the sha256 of its canonical specification::

    {"network": [{"name": <model>, "params": {<output-changing parameters>}}, ...],
     "prompt": <text or null>, "initial_image_sha256": <sha256 of the pixels or null>,
     "seed": <int>}

plus ``"seed_mode": "per_invocation"`` when a run draws a new seed per invocation (the default,
``"fixed"``, is left out, so the ids of runs made before seed modes existed stay the same),
serialised as JSON with sorted keys and no spaces. A self-consuming run (config key
``self_consuming``: one generator retrained on its own samples) has the specification
``{"kind": "self_consuming", "generator": {"name": <generator>, "params": {<resolved options>}},
"seed": <int>}``; network runs carry no ``kind``, so their ids are what they always were.
A steering run (config key ``steering``: a noise-to-image generator steered toward a target by
pairwise preferences) has ``{"kind": "steering", "generator": {"name": <generator>, "params": {…}},
"options": {<resolved options>}, "target": <caption or null>, "target_image_sha256": <sha256 of
the pixels or null>, "seed": <int>}``.
A network entry is a model name or ``{"model": NAME, <option>: value, …}`` for a model that takes
options (``trajectory-tracer list-models`` shows them); its ``params`` in the specification are
then its resolved options (its defaults overridden), so naming it alone and giving it its
defaults are the same run, and models without options keep the ids they always had.
``max_length`` (invocations, generations, or rounds) is not part of any: a longer
run extends the stored prefix of a shorter one, and the same run named by two experiments is
one run. Model aliases resolve to the canonical name first, so ``clip-vit-base-patch32`` and
``CLIP-ViT-B-32`` name the same run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from tracer_pipeline.models.registry import get_model

# "fixed": every invocation uses the run's seed, so a run is the orbit of a deterministic map and
# an exact repeat is final. "per_invocation": invocation i's seed is derived from the run's seed
# and i (tracing.seeds.invocation_seed), so replicates differ and nothing repeats for certain.
SEED_MODES = ("fixed", "per_invocation")
DEFAULT_SEED_MODE = "fixed"


class RunKind(StrEnum):
    """What loop a run traces: its config key, and the engine that computes its steps."""

    NETWORK = "network"  # models in a cycle: each output is the next input
    SELF_CONSUMING = "self_consuming"  # a generator retrained on its own samples
    STEERING = "steering"  # a generator's noise steered toward a target by pairwise preferences


# A network entry's resolved options, sorted by name; () for a model that takes none.
ModelOptions = tuple[tuple[str, Any], ...]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def network_label(network: Sequence[str]) -> str:
    """How a network is written for people: its model names in order, ``A → B``."""
    return " → ".join(network)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunSpec:
    """One run: a network, a starting prompt or image, and a seed; or, for a self-consuming run,
    its generator (``network`` of one name), the generator's resolved options, and a seed."""

    network: tuple[str, ...]
    seed: int
    prompt: str | None = None
    initial_image_path: str | None = None
    initial_image_sha256: str | None = None
    seed_mode: str = DEFAULT_SEED_MODE
    generator_options: tuple[tuple[str, Any], ...] | None = None  # self-consuming runs only
    steering_options: tuple[tuple[str, Any], ...] | None = None  # steering runs only (see frozen_options)
    model_options: tuple[ModelOptions, ...] = ()  # per network entry; () when no model takes options

    @property
    def kind(self) -> RunKind:
        if self.steering_options is not None:
            return RunKind.STEERING
        return RunKind.NETWORK if self.generator_options is None else RunKind.SELF_CONSUMING

    def canonical(self) -> dict[str, Any]:
        if self.steering_options is not None:
            return {"kind": RunKind.STEERING.value, "generator": get_model(self.network[0]).identity(),
                    "options": thawed_options(self.steering_options), "target": self.prompt,
                    "target_image_sha256": self.initial_image_sha256, "seed": self.seed}
        if self.generator_options is not None:
            return {"kind": RunKind.SELF_CONSUMING.value,
                    "generator": {"name": self.network[0], "params": dict(self.generator_options)},
                    "seed": self.seed}
        spec: dict[str, Any] = {
            "network": [get_model(name).configured(dict(options) if options else None).identity()
                        for name, options in zip(self.network, self.model_options or ((),) * len(self.network),
                                                 strict=True)],
            "prompt": self.prompt,
            "initial_image_sha256": self.initial_image_sha256,
            "seed": self.seed,
        }
        if self.seed_mode != DEFAULT_SEED_MODE:
            spec["seed_mode"] = self.seed_mode
        return spec

    @cached_property
    def run_id(self) -> str:
        return sha256_hex(canonical_json(self.canonical()))[:16]


def frozen_options(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options (with nested objects) as sorted tuples, so a run specification stays hashable."""
    return tuple(sorted((k, frozen_options(v) if isinstance(v, dict) else v) for k, v in options.items()))


def thawed_options(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: thawed_options(v) if isinstance(v, tuple) else v for k, v in options}
