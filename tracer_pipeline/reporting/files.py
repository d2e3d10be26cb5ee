"""Reports on disk: ``<data dir>/reports/<experiment>/report.md`` with its PNG figures (in a
folder per embedding model when there are several) and ``report.json``, the same findings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tracer_pipeline.reporting.figure_cache import MANIFEST
from tracer_pipeline.reporting.report import ExperimentReport

JSON_NAME = "report.json"


def write_report(report: ExperimentReport, folder: Path, figure_keys: dict[str, str] | None = None) -> Path:
    """Write the Markdown, its figures and the JSON findings into ``folder`` (replacing an older
    report there), and the figures' keys (``FigureCache.keys``), so that the next report redraws
    only the figures whose data changed; returns the Markdown's path."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, png in report.figures.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
    (folder / JSON_NAME).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    if figure_keys:
        (folder / MANIFEST).write_text(json.dumps(figure_keys, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    path = folder / "report.md"
    path.write_text(report.markdown, encoding="utf-8")
    return path
