"""Reports on disk: ``<data dir>/reports/<experiment>/report.md`` with its PNG figures."""

from __future__ import annotations

import shutil
from pathlib import Path

from tracer_pipeline.reporting.data import Report


def write_report(report: Report, folder: Path) -> Path:
    """Write the Markdown and its figures into ``folder`` (replacing an older report there)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, png in report.figures.items():
        (folder / name).write_bytes(png)
    path = folder / "report.md"
    path.write_text(report.markdown, encoding="utf-8")
    return path
