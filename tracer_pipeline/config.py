"""Experiment configs: load, validate (every problem at once), expand into runs.

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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tracer_pipeline.errors import ConfigError, UnknownModelError
from tracer_pipeline.models.base import Modality, ModelKind, output_digest
from tracer_pipeline.models.options import resolve_options
from tracer_pipeline.models.registry import get_model

# Persistence diagrams of a trajectory cost about N^3: at 2,000 points full Rips already takes
# tens of seconds and GBs of memory, at 5,000 it is out of reach on a laptop.
MAX_LENGTH_LIMIT = 5000
MAX_SEED = 2**63 - 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch: "$" would let "name\n" through
KNOWN_KEYS = {
    "name", "networks", "seeds", "prompts", "initial_images", "embedding_models", "max_length",
    "stop_when_stuck", "max_homology_dim", "seed_schedule", "seed_mode", "self_consuming", "steering",
}
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _string_list(data: dict, key: str, problems: list[str], what: str) -> list[str]:
    value = data[key]
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list of {what}, got {_type_name(value)}")
        return []
    if not value:
        problems.append(f"{key}: is empty; give at least one {what.rstrip('s')}")
        return []
    good: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            problems.append(f"{key}[{i}]: expected a non-empty string, got {_type_name(item)}")
        elif item in seen:
            problems.append(f"{key}[{i}]: duplicate {what.rstrip('s')} {item!r}")
        else:
            seen.add(item)
            good.append(item)
    return good


def _check_networks(data: dict, problems: list[str],
                    base_dir: Path) -> list[tuple[tuple[str, ...], tuple[ModelOptions, ...]]]:
    """Each valid network's canonical model names and its entries' resolved options (() for a
    network whose models take none)."""
    value = data["networks"]
    if not isinstance(value, list):
        problems.append(f"networks: expected a list of networks (lists of model names), got {_type_name(value)}")
        return []
    if not value:
        problems.append("networks: is empty; give at least one network, e.g. [\"DummyT2I\", \"DummyI2T\"]")
        return []
    networks: list[tuple[tuple[str, ...], tuple[ModelOptions, ...]]] = []
    for i, network in enumerate(value):
        if not isinstance(network, list) or not network:
            problems.append(f"networks[{i}]: expected a non-empty list of model names, got {_type_name(network)}")
            continue
        specs = []
        entry_options: list[ModelOptions] = []
        for j, entry in enumerate(network):
            given: dict[str, Any] = {}
            if isinstance(entry, dict) and isinstance(entry.get("model"), str):
                name, given = entry["model"], {k: v for k, v in entry.items() if k != "model"}
            elif isinstance(entry, str):
                name = entry
            else:
                problems.append(f'networks[{i}][{j}]: expected a model name or {{"model": NAME, …options}}, '
                                f"got {_type_name(entry)}")
                continue
            try:
                spec = get_model(name)
            except UnknownModelError as exc:
                problems.append(f"networks[{i}][{j}]: {exc}")
                continue
            if spec.kind is ModelKind.EMBEDDING:
                problems.append(
                    f"networks[{i}][{j}]: {name} is an embedding model; networks are made of "
                    "text-to-image and image-to-text models (put it in embedding_models)"
                )
                continue
            if spec.kind is ModelKind.GENERATOR:
                problems.append(
                    f'networks[{i}][{j}]: {name} is a self-consuming generator; list it as '
                    f'"self_consuming": [{{"generator": "{name}"}}] instead'
                )
                continue
            if spec.kind is ModelKind.NOISE_TO_IMAGE:
                problems.append(
                    f'networks[{i}][{j}]: {name} is a noise-to-image generator; steer it with '
                    f'"steering": [{{"generator": "{name}", "target": CAPTION}}] instead'
                )
                continue
            resolved, option_problems = resolve_options(spec, given, base_dir)
            problems.extend(f"networks[{i}][{j}] ({spec.name}) option {p}" for p in option_problems)
            if option_problems:
                continue
            specs.append(spec)
            entry_options.append(tuple(sorted(resolved.items())) if spec.options else ())
        if len(specs) != len(network):
            continue
        for j, spec in enumerate(specs):
            following = specs[(j + 1) % len(specs)]
            if spec.output_modality is not following.input_modality:
                where = "the first model (the network is a cycle)" if j == len(specs) - 1 else following.name
                problems.append(
                    f"networks[{i}]: {spec.name} outputs {spec.output_modality} but {where} "
                    f"takes {following.input_modality}; each model's output must be the next "
                    "model's input"
                )
                break
        else:
            canonical = (tuple(spec.name for spec in specs),
                         tuple(entry_options) if any(entry_options) else ())
            if canonical in networks:
                problems.append(f"networks[{i}]: duplicate network {list(canonical[0])}"
                                + (" with the same options" if canonical[1] else ""))
            else:
                networks.append(canonical)
    return networks


def parse_experiment(
    data: Any, source: str, default_name: str | None = None, base_dir: Path | None = None
) -> Experiment:
    """Validate a parsed config; raise :class:`ConfigError` listing every problem found."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a JSON object at the top level, got {_type_name(data)}"])
    for key in sorted(set(data) - KNOWN_KEYS):
        problems.append(f"{key}: unknown field (known fields: {', '.join(sorted(KNOWN_KEYS))})")
    for key in ("seeds", "embedding_models", "max_length"):
        if key not in data:
            problems.append(f"{key}: missing (required)")
    if "networks" not in data and "self_consuming" not in data and "steering" not in data:
        problems.append("networks: missing (required)")  # unless self_consuming or steering is given

    name = data.get("name", default_name)
    if name is None:
        problems.append("name: missing, and there is no file name to take it from")
    elif not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"name: {name!r} must be 1-64 letters, digits, '-' or '_' "
            "(it names the experiment in the store and in Dagster)"
        )

    checked_networks = _check_networks(data, problems, base_dir or Path.cwd()) if "networks" in data else []
    networks = [names for names, _ in checked_networks]
    generators = _check_self_consuming(data["self_consuming"], problems) if "self_consuming" in data else []
    steering = (_check_steering(data["steering"], problems, base_dir or Path.cwd())
                if "steering" in data else [])

    seeds: list[int] = []
    if "seeds" in data:
        value = data["seeds"]
        if not isinstance(value, list):
            problems.append(f"seeds: expected a list of integers, got {_type_name(value)}")
        elif not value:
            problems.append("seeds: is empty; give at least one seed")
        else:
            for i, seed in enumerate(value):
                if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
                    problems.append(f"seeds[{i}]: expected an integer from 0 to 2**63-1, got {seed!r}")
                elif seed in seeds:
                    problems.append(f"seeds[{i}]: duplicate seed {seed}")
                else:
                    seeds.append(seed)

    first_inputs = {get_model(n[0]).input_modality for n in networks}
    prompts: list[str] = []
    if "prompts" in data:
        prompts = _string_list(data, "prompts", problems, "prompts")
        if networks and Modality.TEXT not in first_inputs:
            problems.append("prompts: no network starts with a text-to-image model; use initial_images")
    elif Modality.TEXT in first_inputs:
        problems.append("prompts: missing; networks starting with a text-to-image model need prompts")

    images: list[tuple[str, str]] = []
    if "initial_images" in data:
        base = base_dir or Path.cwd()
        for i, entry in enumerate(_string_list(data, "initial_images", problems, "image paths")):
            path = (base / entry).resolve()
            digest = _image_digest(path, f"initial_images[{i}]", problems)
            if digest is not None:
                images.append((str(path), digest))
        if networks and Modality.IMAGE not in first_inputs:
            problems.append("initial_images: no network starts with an image-to-text model; use prompts")
    elif Modality.IMAGE in first_inputs:
        problems.append("initial_images: missing; networks starting with an image-to-text model need initial_images")

    embedders: list[str] = []
    if "embedding_models" in data:
        for i, emb in enumerate(_string_list(data, "embedding_models", problems, "embedding models")):
            try:
                spec = get_model(emb)
            except UnknownModelError as exc:
                problems.append(f"embedding_models[{i}]: {exc}")
                continue
            if spec.kind is not ModelKind.EMBEDDING:
                problems.append(f"embedding_models[{i}]: {emb} is a {spec.kind} model, not an embedding model")
                continue
            for n, network in enumerate(networks):
                outputs = {get_model(m).output_modality for m in network}
                if not outputs & spec.embeds:
                    problems.append(
                        f"embedding_models[{i}]: {spec.name} embeds {', '.join(sorted(spec.embeds))} "
                        f"but networks[{n}] outputs only {', '.join(sorted(outputs))}"
                    )
            if generators and Modality.IMAGE not in spec.embeds:
                problems.append(f"embedding_models[{i}]: {spec.name} does not embed images, but "
                                "self-consuming runs output one image (a grid of samples) per generation")
            if steering and Modality.IMAGE not in spec.embeds:
                problems.append(f"embedding_models[{i}]: {spec.name} does not embed images, but "
                                "steering runs output one image (the destination's picture) per round")
            if spec.name in embedders:
                problems.append(f"embedding_models[{i}]: duplicate embedding model {spec.name}")
            else:
                embedders.append(spec.name)

    max_length = data.get("max_length")
    if "max_length" in data and (not _is_int(max_length) or not 1 <= max_length <= MAX_LENGTH_LIMIT):
        problems.append(
            f"max_length: expected an integer from 1 to {MAX_LENGTH_LIMIT}, got {max_length!r} "
            f"(persistence diagrams cost about N^3: beyond {MAX_LENGTH_LIMIT} points they take "
            "hours and tens of GB; split the work into more seeds instead)"
        )

    stop_when_stuck = data.get("stop_when_stuck", True)
    if not isinstance(stop_when_stuck, bool):
        problems.append(f"stop_when_stuck: expected true or false, got {stop_when_stuck!r}")
    max_dim = data.get("max_homology_dim", 1)
    if not _is_int(max_dim) or max_dim not in (0, 1, 2):
        problems.append(f"max_homology_dim: expected 0, 1 or 2, got {max_dim!r}")

    seed_mode = data.get("seed_mode", DEFAULT_SEED_MODE)
    if seed_mode not in SEED_MODES:
        problems.append(f"seed_mode: expected one of {', '.join(repr(m) for m in SEED_MODES)}, got {seed_mode!r} "
                        "(\"fixed\": every invocation uses the run's seed; \"per_invocation\": a new seed per "
                        "invocation, derived from the run's seed)")

    schedule = None
    if "seed_schedule" in data:
        schedule = _check_seed_schedule(data["seed_schedule"], problems)

    if problems:
        raise ConfigError(source, problems)
    return Experiment(
        name=name, source=source, networks=tuple(networks), seeds=tuple(seeds),
        prompts=tuple(prompts), initial_images=tuple(images), embedding_models=tuple(embedders),
        max_length=max_length, stop_when_stuck=stop_when_stuck, max_homology_dim=max_dim,
        seed_schedule=schedule, seed_mode=seed_mode, raw=data, self_consuming=tuple(generators),
        steering=tuple(steering),
        network_options=(tuple(options for _, options in checked_networks)
                         if any(options for _, options in checked_networks) else ()),
    )


def _check_self_consuming(value: Any, problems: list[str]) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """``self_consuming``: a list of ``{"generator": NAME, <option>: <value>, …}``."""
    from tracer_pipeline.selfconsuming.generators import check_options

    if not isinstance(value, list) or not value:
        problems.append('self_consuming: expected a non-empty list of {"generator": NAME, …options}, '
                        f"got {_type_name(value)}")
        return []
    entries: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("generator"), str):
            problems.append(f'self_consuming[{i}]: expected {{"generator": NAME, …options}}, got {_type_name(entry)}')
            continue
        name = entry["generator"]
        try:
            spec = get_model(name)
        except UnknownModelError as exc:
            problems.append(f"self_consuming[{i}].generator: {exc}")
            continue
        if spec.kind is not ModelKind.GENERATOR:
            problems.append(f"self_consuming[{i}].generator: {spec.name} is a {spec.kind} model, not a "
                            "self-consuming generator (`trajectory-tracer list-models` lists them)")
            continue
        options, option_problems = check_options(spec.name, {k: v for k, v in entry.items() if k != "generator"})
        problems.extend(f"self_consuming[{i}].{p}" for p in option_problems)
        resolved = (spec.name, tuple(sorted(options.items())))
        if resolved in entries:
            problems.append(f"self_consuming[{i}]: duplicate entry (same generator and options)")
        elif not option_problems:
            entries.append(resolved)
    return entries


def _image_digest(path: Path, where: str, problems: list[str]) -> str | None:
    """The sha256 of an image file's pixels, or None with the problem (naming ``where``) added."""
    try:
        with Image.open(path) as image:
            return output_digest(image.convert("RGB"))
    except FileNotFoundError:
        problems.append(f"{where}: file not found: {path}")
    except Image.DecompressionBombError as exc:
        problems.append(f"{where}: {path} is too large to decode safely ({exc})")
    except (UnidentifiedImageError, OSError) as exc:
        problems.append(f"{where}: cannot read {path} as an image ({exc})")
    return None


def _check_steering(value: Any, problems: list[str], base_dir: Path) -> list[SteeringEntry]:
    """``steering``: a list of ``{"generator": NAME, "target": CAPTION | "target_image": PATH,
    <option>: <value>, …}``."""
    from tracer_pipeline.steering.options import check_options

    usage = '{"generator": NAME, "target": CAPTION or "target_image": PATH, …options}'
    if not isinstance(value, list) or not value:
        problems.append(f"steering: expected a non-empty list of {usage}, got {_type_name(value)}")
        return []
    entries: list[SteeringEntry] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("generator"), str):
            problems.append(f"steering[{i}]: expected {usage}, got {_type_name(entry)}")
            continue
        try:
            spec = get_model(entry["generator"])
        except UnknownModelError as exc:
            problems.append(f"steering[{i}].generator: {exc}")
            continue
        if spec.kind is not ModelKind.NOISE_TO_IMAGE:
            problems.append(f"steering[{i}].generator: {spec.name} is a {spec.kind} model, not a noise-to-image "
                            "generator (`trajectory-tracer list-models` lists them)")
            continue
        target, image = entry.get("target"), entry.get("target_image")
        if (target is None) == (image is None):
            problems.append(f'steering[{i}]: give exactly one of "target" (a caption) and "target_image" (a path)')
            continue
        target_image = None
        if target is not None and (not isinstance(target, str) or not target.strip()):
            problems.append(f"steering[{i}].target: expected a non-empty caption, got {_type_name(target)}")
            continue
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                problems.append(f"steering[{i}].target_image: expected an image path, got {_type_name(image)}")
                continue
            path = (base_dir / image).resolve()
            digest = _image_digest(path, f"steering[{i}].target_image", problems)
            if digest is None:
                continue
            target_image = (str(path), digest)
        given = {k: v for k, v in entry.items() if k not in ("generator", "target", "target_image")}
        options, option_problems = check_options(given, Modality.TEXT if target is not None else Modality.IMAGE)
        problems.extend(f"steering[{i}].{p}" for p in option_problems)
        resolved = SteeringEntry(spec.name, target, target_image, frozen_options(options))
        if resolved in entries:
            problems.append(f"steering[{i}]: duplicate entry (same generator, target and options)")
        elif not option_problems:
            entries.append(resolved)
    return entries


def _check_seed_schedule(value: Any, problems: list[str]) -> SeedSchedule | None:
    from dagster._utils.schedules import is_valid_cron_string

    if not isinstance(value, dict) or set(value) != {"cron", "new_seeds"}:
        problems.append('seed_schedule: expected {"cron": "<cron string>", "new_seeds": <integer>}')
        return None
    cron, new_seeds = value["cron"], value["new_seeds"]
    ok = True
    if not isinstance(cron, str) or not is_valid_cron_string(cron):
        problems.append(f"seed_schedule.cron: {cron!r} is not a valid cron string (e.g. \"0 3 * * *\")")
        ok = False
    if not _is_int(new_seeds) or not 1 <= new_seeds <= 1000:
        problems.append(f"seed_schedule.new_seeds: expected an integer from 1 to 1000, got {new_seeds!r}")
        ok = False
    return SeedSchedule(cron, new_seeds) if ok else None


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKeyError(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return data


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate ``path``; the experiment's name defaults to the file name."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read the file: {exc}"]) from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except _DuplicateKeyError as exc:
        raise ConfigError(source, [f"duplicate key {exc.args[0]!r} in an object (JSON would silently keep "
                                   "the last one); give each field once"]) from None
    except RecursionError:
        raise ConfigError(source, ["JSON nested too deeply to be an experiment config"]) from None
    return parse_experiment(data, source, default_name=path.stem, base_dir=path.parent.resolve())
