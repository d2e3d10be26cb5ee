"""Reports on disk: ``<data dir>/reports/<experiment>/report.md`` with its PNG figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tracer_pipeline.reporting.data import Report
from tracer_pipeline.reporting.figure_cache import MANIFEST


def write_report(report: Report, folder: Path, figure_keys: dict[str, str] | None = None) -> Path:
    """Write the Markdown and its figures into ``folder`` (replacing an older report there), and
    the figures' keys (``FigureCache.keys``), so that the next report redraws only the figures
    whose data changed."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, png in report.figures.items():
        (folder / name).write_bytes(png)
    if figure_keys:
        (folder / MANIFEST).write_text(json.dumps(figure_keys, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    path = folder / "report.md"
    path.write_text(report.markdown, encoding="utf-8")
    return path
