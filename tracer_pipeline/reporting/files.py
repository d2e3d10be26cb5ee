"""Reports on disk: ``<data dir>/reports/<experiment>/report.md`` with its PNG figures (in a
folder per embedding model when there are several) and ``report.json``, the same findings."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from tracer_pipeline.reporting.distance_cache import DistanceCache
from tracer_pipeline.reporting.figure_cache import MANIFEST
from tracer_pipeline.reporting.report import ExperimentReport

JSON_NAME = "report.json"


def write_report(report: ExperimentReport, folder: Path, figure_keys: dict[str, str] | None = None,
                 distances: DistanceCache | None = None) -> Path:
    """Write the Markdown, its figures and the JSON findings into ``folder`` (replacing an older
    report there), and the figures' keys (``FigureCache.keys``) and the diagram distances it
    computed (``DistanceCache``), so that the next report redraws only the figures whose data
    changed and computes only the distances of new or changed runs; returns the Markdown's path.

    The report is written beside ``folder`` and then renamed into place, so a reader never sees
    half a report, and processes writing the same experiment's report at once (each from the
    same store) do not trip over each other's files: the last rename wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    for name, png in report.figures.items():
        (fresh / name).parent.mkdir(parents=True, exist_ok=True)
        (fresh / name).write_bytes(png)
    (fresh / JSON_NAME).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    if figure_keys:
        (fresh / MANIFEST).write_text(json.dumps(figure_keys, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if distances is not None:
        distances.write(fresh)
    (fresh / "report.md").write_text(report.markdown, encoding="utf-8")
    fresh.chmod(0o755)  # mkdtemp's folder is private; a report folder is not
    old = fresh.with_name(fresh.name + ".old")
    while True:
        with contextlib.suppress(FileNotFoundError):  # no report yet, or another process's moved aside
            folder.rename(old)
        try:
            fresh.rename(folder)
            break
        except OSError:  # another process's report was renamed in meanwhile: move it aside too
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return folder / "report.md"
