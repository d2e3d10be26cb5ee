"""A network entry's model options: checked against the model's :class:`ModelOption` table and
resolved with its defaults. The resolved options are the model's ``params`` in the run's
identity (:meth:`ModelSpec.identity` of :meth:`ModelSpec.configured`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tracer_pipeline.models.base import ModelOption, ModelSpec, output_digest

SHA256_SUFFIX = "_sha256"  # an image option's pixel hash, beside its path, in the identity


def _fits(option: ModelOption, value: Any) -> bool:
    if value is None:
        return option.nullable
    if option.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif option.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif option.type is Path:
        ok = isinstance(value, str) and bool(value.strip())
    else:
        ok = isinstance(value, option.type)
    if ok and option.type in (int, float):
        ok = (option.low is None or value >= option.low) and (option.high is None or value <= option.high)
    return ok


def resolve_options(spec: ModelSpec, given: Mapping[str, Any], base_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """``spec``'s defaults overridden by ``given``, and the problems with ``given`` (each as
    "option: what is wrong and what it accepts"). An image path is resolved against
    ``base_dir`` and read; its pixels' sha256 joins the options as ``<option>_sha256``, so that
    the run's identity follows the image's content."""
    problems: list[str] = []
    resolved: dict[str, Any] = dict(spec.params)
    for key, value in given.items():
        option = spec.options.get(key)
        if option is None:
            known = ", ".join(sorted(spec.options)) or "none"
            problems.append(f"{key}: not an option of {spec.name} (its options: {known})")
            continue
        if not _fits(option, value):
            problems.append(f"{key}: expected {option.describe()} ({option.meaning}), got {value!r}")
            continue
        if option.type is float and value is not None:
            value = float(value)
        if option.type is Path and value is not None:
            path = (base_dir / value).resolve()
            try:
                with Image.open(path) as image:
                    resolved[key + SHA256_SUFFIX] = output_digest(image.convert("RGB"))
            except FileNotFoundError:
                problems.append(f"{key}: file not found: {path}")
                continue
            except (UnidentifiedImageError, OSError) as exc:
                problems.append(f"{key}: cannot read {path} as an image ({exc})")
                continue
            value = str(path)
        resolved[key] = value
    if not problems:
        problems = spec.check_options(resolved)
    return resolved, problems
