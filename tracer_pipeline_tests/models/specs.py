"""The models this package defines, by role (other packages may register more)."""

from __future__ import annotations

from tracer_pipeline.models import captioning, clip, diffusion, dummy
from tracer_pipeline.models.base import Family, ModelKind, ModelSpec

SPECS: list[ModelSpec] = [*dummy.SPECS, *diffusion.SPECS, *captioning.SPECS, *clip.SPECS]
REAL = [s.name for s in SPECS if s.family is Family.REAL]
LOCAL = [s for s in SPECS if s.family in (Family.TINY, Family.DUMMY)]


def local_names(kind: ModelKind, family: Family | None = None) -> list[str]:
    """Tiny and dummy models of one kind (optionally of one family)."""
    return [s.name for s in LOCAL if s.kind is kind and (family is None or s.family is family)]
