"""The one config loader: read an experiment config's JSON and validate it, every problem at once,
into an :class:`~tracer_pipeline.config.experiment.Experiment`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tracer_pipeline.config.checks import (
    check_networks,
    check_seed_schedule,
    check_self_consuming,
    check_steering,
    image_digest,
    is_int,
    string_list,
    type_name,
)
from tracer_pipeline.config.experiment import Experiment
from tracer_pipeline.config.identity import DEFAULT_SEED_MODE, SEED_MODES
from tracer_pipeline.errors import ConfigError, UnknownModelError
from tracer_pipeline.models.base import Modality, ModelKind
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


def parse_experiment(
    data: Any, source: str, default_name: str | None = None, base_dir: Path | None = None
) -> Experiment:
    """Validate a parsed config; raise :class:`ConfigError` listing every problem found."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a JSON object at the top level, got {type_name(data)}"])
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

    checked_networks = check_networks(data, problems, base_dir or Path.cwd()) if "networks" in data else []
    networks = [names for names, _ in checked_networks]
    generators = check_self_consuming(data["self_consuming"], problems) if "self_consuming" in data else []
    steering = (check_steering(data["steering"], problems, base_dir or Path.cwd())
                if "steering" in data else [])

    seeds: list[int] = []
    if "seeds" in data:
        value = data["seeds"]
        if not isinstance(value, list):
            problems.append(f"seeds: expected a list of integers, got {type_name(value)}")
        elif not value:
            problems.append("seeds: is empty; give at least one seed")
        else:
            for i, seed in enumerate(value):
                if not is_int(seed) or not 0 <= seed <= MAX_SEED:
                    problems.append(f"seeds[{i}]: expected an integer from 0 to 2**63-1, got {seed!r}")
                elif seed in seeds:
                    problems.append(f"seeds[{i}]: duplicate seed {seed}")
                else:
                    seeds.append(seed)

    first_inputs = {get_model(n[0]).input_modality for n in networks}
    prompts: list[str] = []
    if "prompts" in data:
        prompts = string_list(data, "prompts", problems, "prompts")
        if networks and Modality.TEXT not in first_inputs:
            problems.append("prompts: no network starts with a text-to-image model; use initial_images")
    elif Modality.TEXT in first_inputs:
        problems.append("prompts: missing; networks starting with a text-to-image model need prompts")

    images: list[tuple[str, str]] = []
    if "initial_images" in data:
        base = base_dir or Path.cwd()
        for i, entry in enumerate(string_list(data, "initial_images", problems, "image paths")):
            path = (base / entry).resolve()
            digest = image_digest(path, f"initial_images[{i}]", problems)
            if digest is not None:
                images.append((str(path), digest))
        if networks and Modality.IMAGE not in first_inputs:
            problems.append("initial_images: no network starts with an image-to-text model; use prompts")
    elif Modality.IMAGE in first_inputs:
        problems.append("initial_images: missing; networks starting with an image-to-text model need initial_images")

    embedders: list[str] = []
    if "embedding_models" in data:
        for i, emb in enumerate(string_list(data, "embedding_models", problems, "embedding models")):
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
    if "max_length" in data and (not is_int(max_length) or not 1 <= max_length <= MAX_LENGTH_LIMIT):
        problems.append(
            f"max_length: expected an integer from 1 to {MAX_LENGTH_LIMIT}, got {max_length!r} "
            f"(persistence diagrams cost about N^3: beyond {MAX_LENGTH_LIMIT} points they take "
            "hours and tens of GB; split the work into more seeds instead)"
        )

    stop_when_stuck = data.get("stop_when_stuck", True)
    if not isinstance(stop_when_stuck, bool):
        problems.append(f"stop_when_stuck: expected true or false, got {stop_when_stuck!r}")
    max_dim = data.get("max_homology_dim", 1)
    if not is_int(max_dim) or max_dim not in (0, 1, 2):
        problems.append(f"max_homology_dim: expected 0, 1 or 2, got {max_dim!r}")

    seed_mode = data.get("seed_mode", DEFAULT_SEED_MODE)
    if seed_mode not in SEED_MODES:
        problems.append(f"seed_mode: expected one of {', '.join(repr(m) for m in SEED_MODES)}, got {seed_mode!r} "
                        "(\"fixed\": every invocation uses the run's seed; \"per_invocation\": a new seed per "
                        "invocation, derived from the run's seed)")

    schedule = None
    if "seed_schedule" in data:
        schedule = check_seed_schedule(data["seed_schedule"], problems)

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
