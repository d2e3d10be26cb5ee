"""The one model registry: every model the tool can run, by name."""

from __future__ import annotations

import difflib

from tracer_pipeline.clipguided import models as clip_guided
from tracer_pipeline.errors import UnknownModelError
from tracer_pipeline.models import captioning, clip, diffusion, dummy
from tracer_pipeline.models.base import ModelSpec
from tracer_pipeline.sceneworld import models as sceneworld
from tracer_pipeline.selfconsuming import generators as self_consuming
from tracer_pipeline.steering import generators as steering

_SPECS: list[ModelSpec] = [*dummy.SPECS, *diffusion.SPECS, *captioning.SPECS, *clip.SPECS,
                           *sceneworld.SPECS, *self_consuming.SPECS,
                           *steering.SPECS, *clip_guided.SPECS]
_BY_NAME: dict[str, ModelSpec] = {}
for _spec in _SPECS:
    for _name in (_spec.name, *_spec.aliases):
        if _name in _BY_NAME:
            raise RuntimeError(f"model name {_name!r} is registered twice")
        _BY_NAME[_name] = _spec


def all_models() -> list[ModelSpec]:
    return list(_SPECS)


def suggest(name: str) -> str | None:
    """The registered name closest to ``name``, if any is close."""
    lowered = {n.lower(): n for n in _BY_NAME}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def get_model(name: str) -> ModelSpec:
    """The registry entry for ``name`` (or one of its aliases)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        hint = suggest(name)
        did_you_mean = f'; did you mean "{hint}"?' if hint else ""
        raise UnknownModelError(
            f'unknown model "{name}"{did_you_mean} (`trajectory-tracer list-models` lists them)'
        ) from None
