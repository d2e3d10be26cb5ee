"""Markdown helpers shared by the report's sections: numbers, table cells, tables, figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer_pipeline.reporting.data import Report

TOO_FEW = "too few runs to say"
MARKDOWN_ROWS = 12

# One row of a report table: flat, so every table exports to Parquet as it is.
Row = dict[str, str | int | float | bool | None]


def num(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits; "—" where there is no finite value."""
    if value is None or not np.isfinite(value):
        return "—"
    # Rounding residue (an η² of 1e-31 where a factor explains nothing) reads as 0.
    return f"{0.0 if abs(value) < 1e-9 else value:.{digits}g}"


def _cell(value: object) -> str:
    """A table cell on one line, with pipes escaped so that captions cannot break the table."""
    if isinstance(value, float):
        return num(value)
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Row], columns: Sequence[tuple[str, str]], table: str) -> list[str]:
    """A Markdown table of the first ``MARKDOWN_ROWS`` rows; the rest are in ``Report.tables``."""
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows[:MARKDOWN_ROWS]]
    if len(rows) > MARKDOWN_ROWS:
        lines.append(f"\n*{len(rows) - MARKDOWN_ROWS} more rows in table `{table}`.*")
    return ["", *lines, ""]


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values present; None when there are none (printed "—")."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def median(values: Sequence[float | int | None]) -> float | None:
    """The median of the values present; None when there are none (printed "—")."""
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def figure(report: Report, name: str, png: bytes | None, alt: str) -> list[str]:
    """Add ``png`` to the report's figures as ``name`` and return the Markdown that shows it;
    nothing when a plot had nothing to draw (``png`` is None)."""
    if png is None:
        return []
    report.figures[name] = png
    return ["", f"![{alt}]({name})", ""]


def short_id(run_id: str) -> str:
    """A run id short enough to name runs in a sentence."""
    return run_id[:8]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
