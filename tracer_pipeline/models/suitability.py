"""Which embedding model can be trusted to place which models' outputs: the one rule."""

from __future__ import annotations

from collections.abc import Sequence

from tracer_pipeline.errors import UnknownModelError
from tracer_pipeline.models.base import Family
from tracer_pipeline.models.registry import get_model


def unsuited_reason(embedding_model: str, network: Sequence[str]) -> str | None:
    """Why ``embedding_model`` cannot be trusted to place the outputs of ``network``, or None.

    A SceneWorld embedder was trained only on SceneWorld scenes and captions: outputs of any other
    model (noise from a tiny model, photographs from a real one) are outside what it has seen, and
    its distances between them are not distances of meaning. A tiny embedder has random weights:
    its distances measure nothing. Names not in the registry (constructed test data) are trusted.
    """
    try:
        embedder = get_model(embedding_model)
        producers = [get_model(name) for name in network]
    except UnknownModelError:
        return None
    if embedder.family is Family.TINY:
        return f"{embedder.name} has random weights, so its distances say nothing about the outputs' content"
    if embedder.family is Family.SCENEWORLD:
        strangers = [p.name for p in producers if p.family is not Family.SCENEWORLD]
        if strangers:
            return (f"{embedder.name} was trained only on SceneWorld scenes and captions; the outputs of "
                    f"{', '.join(strangers)} are outside what it has seen")
    return None
