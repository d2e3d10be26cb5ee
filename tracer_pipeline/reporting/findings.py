"""What each section of a report finds, per embedding model, and whether the data can support it.

A :class:`Finding` is the one record a section's Markdown and the report's JSON are both rendered
from: ``valid`` says whether the data can support a conclusion, ``reason`` says why not (in words
a reader can act on), and ``figures`` hold the numbers. An invalid finding draws no conclusion:
its section prints the reason instead.

The rules of validity are here, in one place, each a function of plain data:

- enough points: a trajectory needs ``MIN_POINTS`` embedded outputs before its persistence
  diagram or recurrence matrix can show a loop or a block;
- non-empty diagrams: distances between empty H1 diagrams are 0 and say nothing, so diagram
  distances need at least ``MIN_H1_FRACTION`` of the runs with a finite H1 bar;
- enough runs per factor level: ``MIN_RUNS_PER_LEVEL`` (analysis.variance's ``too_few``);
- an embedder suited to the outputs (``models.suitability.unsuited_reason``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The sections every report has, per embedding model, in the order they appear.
SECTIONS = ("drift", "divergence", "stuck", "recurrence", "diagram_distances", "nearest_by_shape", "attractors",
            "factors", "clusters")
MIN_POINTS = 10
MIN_H1_FRACTION = 0.5
MIN_RUNS_PER_LEVEL = 2


@dataclass(frozen=True)
class Finding:
    """One section's answer: whether the data can support it, why not, and its numbers
    (JSON-ready: numbers, strings, booleans, None, and lists or dicts of them)."""

    valid: bool
    reason: str | None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "reason": self.reason, **_plain(self.figures)}


def supported(**figures: Any) -> Finding:
    return Finding(True, None, figures)


def unsupported(reason: str, **figures: Any) -> Finding:
    return Finding(False, reason, figures)


def resting_on(finding: Finding, basis: str, own: Finding) -> Finding:
    """``own``, unless the finding it rests on (named ``basis``) is invalid: then invalid too,
    for that reason."""
    if finding.valid:
        return own
    return Finding(False, f"rests on {basis}, which cannot be trusted here: {finding.reason}", own.figures)


def all_unsuited(reasons: Sequence[str | None]) -> str | None:
    """When the embedding model is unsuited to every run (``reasons``: each run's
    ``RunData.embedder_unsuited``), why — the reason every embedding-based section gives; else None."""
    if not reasons or any(r is None for r in reasons):
        return None
    return "the embedding model is unsuited to every run's outputs: " + "; ".join(dict.fromkeys(
        str(r) for r in reasons))


def notice(finding: Finding) -> list[str]:
    """The Markdown a section shows in place of its conclusion when its data cannot support one."""
    if finding.valid:
        return []
    return ["", f"**Not answered here:** {finding.reason}. No conclusion is drawn.", ""]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists; non-finite floats as None (JSON has
    no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value
