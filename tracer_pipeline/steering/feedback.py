"""Preference sources: who says which of two images is better.

:class:`PreferenceSource` is what a steering round asks; :class:`ArtificialUser` answers as in
the original method, preferring the image closer to the target in a named feature space (an
embedding model's image embedding; the target is placed there by the same model's embedding of
the target caption or target image). A person answering through a UI could implement the same
interface; their answers would be stored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from PIL import Image

from tracer_pipeline.errors import TracerError
from tracer_pipeline.models.base import EmbeddingModel, ModelFailure


class Choice(StrEnum):
    FIRST = "first"
    SECOND = "second"
    BOTH_GOOD = "both_good"
    BOTH_BAD = "both_bad"

    @property
    def target(self) -> float:
        """The Bradley–Terry target P(first ≻ second): 1, 0, or ½ for "both good/bad"."""
        return {Choice.FIRST: 1.0, Choice.SECOND: 0.0}.get(self, 0.5)


@dataclass(frozen=True)
class Judgement:
    """One answer, with the similarities it was based on when the source has them."""

    choice: Choice
    first_similarity: float | None = None
    second_similarity: float | None = None


class PreferenceSource(Protocol):
    def judge(self, pairs: Sequence[tuple[Image.Image, Image.Image]], seed: int) -> list[Judgement]:
        """One judgement per pair; ``seed`` drives any randomness of the answers."""
        ...

    def similarity(self, images: Sequence[Image.Image]) -> list[float] | None:
        """Each image's similarity to the target, where the source can measure it (None if not)."""
        ...


class FeedbackError(TracerError):
    """The artificial user could not embed an image or the target."""


def embed_one_each(model: EmbeddingModel, items: Sequence) -> np.ndarray:
    """(N, d) unit vectors of ``items``; a failed item is an error, never a silent gap."""
    vectors = model.embed(list(items))
    failures = [v for v in vectors if isinstance(v, ModelFailure)]
    if failures:
        raise FeedbackError(f"the feedback's embedding model failed: {failures[0]}")
    return np.stack(vectors).astype(np.float64)


class ArtificialUser:
    """Prefers the image whose embedding has the larger cosine similarity to the target's, after
    adding Gaussian noise of standard deviation ``noise`` to each similarity. When both (noisy)
    similarities are at least ``both_good`` the answer is "both good"; when both are at most
    ``both_bad``, "both bad" (either threshold may be None: never)."""

    def __init__(self, model: EmbeddingModel, target: np.ndarray, noise: float = 0.0,
                 both_good: float | None = None, both_bad: float | None = None):
        self.model, self.target = model, np.asarray(target, np.float64)
        self.noise, self.both_good, self.both_bad = noise, both_good, both_bad

    def similarity(self, images: Sequence[Image.Image]) -> list[float]:
        return [float(v) for v in embed_one_each(self.model, images) @ self.target]

    def judge(self, pairs: Sequence[tuple[Image.Image, Image.Image]], seed: int) -> list[Judgement]:
        if not pairs:
            return []
        similarities = np.array(self.similarity([image for pair in pairs for image in pair])).reshape(-1, 2)
        noisy = similarities + self.noise * np.random.default_rng(seed).standard_normal(similarities.shape)
        judgements = []
        for (first, second), (a, b) in zip(similarities, noisy, strict=True):
            if self.both_good is not None and min(a, b) >= self.both_good:
                choice = Choice.BOTH_GOOD
            elif self.both_bad is not None and max(a, b) <= self.both_bad:
                choice = Choice.BOTH_BAD
            else:
                choice = Choice.FIRST if a >= b else Choice.SECOND
            judgements.append(Judgement(choice, float(first), float(second)))
        return judgements
