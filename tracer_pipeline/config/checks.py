"""The checks of a config's parts that take more than a line: networks, self-consuming and
steering entries, the seed schedule, and the image files they name. Each adds every problem it
finds to ``problems`` (so a config's problems are reported all at once) and returns what was valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tracer_pipeline.config.experiment import SeedSchedule, SteeringEntry
from tracer_pipeline.config.identity import ModelOptions, frozen_options
from tracer_pipeline.errors import UnknownModelError
from tracer_pipeline.models.base import Modality, ModelKind, output_digest
from tracer_pipeline.models.options import resolve_options
from tracer_pipeline.models.registry import get_model


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def string_list(data: dict, key: str, problems: list[str], what: str) -> list[str]:
    value = data[key]
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list of {what}, got {type_name(value)}")
        return []
    if not value:
        problems.append(f"{key}: is empty; give at least one {what.rstrip('s')}")
        return []
    good: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            problems.append(f"{key}[{i}]: expected a non-empty string, got {type_name(item)}")
        elif item in seen:
            problems.append(f"{key}[{i}]: duplicate {what.rstrip('s')} {item!r}")
        else:
            seen.add(item)
            good.append(item)
    return good


def check_networks(data: dict, problems: list[str],
                    base_dir: Path) -> list[tuple[tuple[str, ...], tuple[ModelOptions, ...]]]:
    """Each valid network's canonical model names and its entries' resolved options (() for a
    network whose models take none)."""
    value = data["networks"]
    if not isinstance(value, list):
        problems.append(f"networks: expected a list of networks (lists of model names), got {type_name(value)}")
        return []
    if not value:
        problems.append("networks: is empty; give at least one network, e.g. [\"DummyT2I\", \"DummyI2T\"]")
        return []
    networks: list[tuple[tuple[str, ...], tuple[ModelOptions, ...]]] = []
    for i, network in enumerate(value):
        if not isinstance(network, list) or not network:
            problems.append(f"networks[{i}]: expected a non-empty list of model names, got {type_name(network)}")
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
                                f"got {type_name(entry)}")
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

def check_self_consuming(value: Any, problems: list[str]) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """``self_consuming``: a list of ``{"generator": NAME, <option>: <value>, …}``."""
    from tracer_pipeline.selfconsuming.generators import check_options

    if not isinstance(value, list) or not value:
        problems.append('self_consuming: expected a non-empty list of {"generator": NAME, …options}, '
                        f"got {type_name(value)}")
        return []
    entries: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("generator"), str):
            problems.append(f'self_consuming[{i}]: expected {{"generator": NAME, …options}}, got {type_name(entry)}')
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


def image_digest(path: Path, where: str, problems: list[str]) -> str | None:
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


def check_steering(value: Any, problems: list[str], base_dir: Path) -> list[SteeringEntry]:
    """``steering``: a list of ``{"generator": NAME, "target": CAPTION | "target_image": PATH,
    <option>: <value>, …}``."""
    from tracer_pipeline.steering.options import check_options

    usage = '{"generator": NAME, "target": CAPTION or "target_image": PATH, …options}'
    if not isinstance(value, list) or not value:
        problems.append(f"steering: expected a non-empty list of {usage}, got {type_name(value)}")
        return []
    entries: list[SteeringEntry] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("generator"), str):
            problems.append(f"steering[{i}]: expected {usage}, got {type_name(entry)}")
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
            problems.append(f"steering[{i}].target: expected a non-empty caption, got {type_name(target)}")
            continue
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                problems.append(f"steering[{i}].target_image: expected an image path, got {type_name(image)}")
                continue
            path = (base_dir / image).resolve()
            digest = image_digest(path, f"steering[{i}].target_image", problems)
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


def check_seed_schedule(value: Any, problems: list[str]) -> SeedSchedule | None:
    from dagster._utils.schedules import is_valid_cron_string

    if not isinstance(value, dict) or set(value) != {"cron", "new_seeds"}:
        problems.append('seed_schedule: expected {"cron": "<cron string>", "new_seeds": <integer>}')
        return None
    cron, new_seeds = value["cron"], value["new_seeds"]
    ok = True
    if not isinstance(cron, str) or not is_valid_cron_string(cron):
        problems.append(f"seed_schedule.cron: {cron!r} is not a valid cron string (e.g. \"0 3 * * *\")")
        ok = False
    if not is_int(new_seeds) or not 1 <= new_seeds <= 1000:
        problems.append(f"seed_schedule.new_seeds: expected an integer from 1 to 1000, got {new_seeds!r}")
        ok = False
    return SeedSchedule(cron, new_seeds) if ok else None
