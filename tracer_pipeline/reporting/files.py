"""Reports on disk: ``<data dir>/reports/<experiment>/report.md`` with its PNG figures (in a
folder per embedding model when there are several) and ``report.json``, the same findings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tracer_pipeline.reporting.report import ExperimentReport

JSON_NAME = "report.json"


def write_report(report: ExperimentReport, folder: Path) -> Path:
    """Write the Markdown, its figures and the JSON findings into ``folder`` (replacing an older
    report there); returns the Markdown's path."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, png in report.figures.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
    (folder / JSON_NAME).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    path = folder / "report.md"
    path.write_text(report.markdown, encoding="utf-8")
    return path
