"""An experiment's report: four questions, each answered by a number with its method, a figure,
and a sentence on what it means and what it cannot say.

1. How did it get here, and how sensitive is it to prompt and seed? (:mod:`.sections.drift`)
2. Is it stuck? (:mod:`.sections.stuck`)
3. Has it done this before? (:mod:`.sections.precedents`)
4. Which part has the biggest impact? (:mod:`.sections.factors`)

Pure: plain data in (:mod:`tracer_pipeline.reporting.data`), a :class:`Report` out. The
Markdown names its figures by file name; ``inline_markdown`` embeds them for Dagster's UI.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re

from PIL import Image

from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.figure_cache import FigureCache
from tracer_pipeline.reporting.measures import measure_run
from tracer_pipeline.reporting.sections import drift, factors, overview, precedents, stuck
from tracer_pipeline.store import StoreComparison

INLINE_BUDGET_BYTES = 1_400_000
INLINE_WIDTH_PX = 560
INLINE_MIN_WIDTH_PX = 200
FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def build_report(data: ExperimentData, comparison: StoreComparison | None,
                 figures: FigureCache | None = None) -> Report:
    """The experiment's report: Markdown answering the four questions (module docstring), its
    figures as PNG bytes keyed by file name, and its tables as flat rows:

    ``run_metrics`` (one row per run), ``drift`` (per run and step), ``drift_by_network``,
    ``divergence`` and ``divergence_by_step``, ``stuck_fractions``, ``diversity_collapse``,
    ``nearest_earlier_runs``, ``attractors`` and ``factor_effects``.

    ``comparison`` is the store-wide comparison for ``data.embedding_model`` (``compare_store``);
    without it the report says it has not been computed and answers question 3 from end states
    only.

    ``figures``, when given, supplies the figures whose data did not change since the report it
    was loaded from (:mod:`.figure_cache`), so only the others are drawn; the report is the same.
    """
    report = Report(title=f"{data.name} — {data.embedding_model}", markdown="")
    measures = [measure_run(run) for run in data.runs]
    with figures.active() if figures is not None else contextlib.nullcontext():
        lines = overview.section(report, data, measures)
        lines += drift.section(report, measures)
        lines += stuck.section(report, measures)
        lines += precedents.section(report, data, measures, comparison)
        lines += factors.section(report, measures, comparison)
    report.markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    return report


def _downscaled(png: bytes, width: int) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def inline_markdown(report: Report, max_figures: int | None = None) -> str:
    """The report's Markdown with its figures embedded as base64 PNG data URIs, for Dagster's UI.

    Figures are downscaled to at most ``INLINE_WIDTH_PX`` wide, and narrower still (down to
    ``INLINE_MIN_WIDTH_PX``) until the whole text fits ``INLINE_BUDGET_BYTES``; figures past
    ``max_figures`` (in order of appearance), or that still do not fit, are replaced by a note
    naming the file.
    """
    names = [name for _, name in FIGURE_LINK.findall(report.markdown) if name in report.figures]
    names = list(dict.fromkeys(names))[: max_figures if max_figures is not None else None]
    budget = INLINE_BUDGET_BYTES - len(report.markdown.encode())
    width = INLINE_WIDTH_PX
    while True:
        encoded = {name: base64.b64encode(_downscaled(report.figures[name], width)).decode() for name in names}
        if sum(len(e) for e in encoded.values()) <= budget or width <= INLINE_MIN_WIDTH_PX:
            break
        width = max(INLINE_MIN_WIDTH_PX, int(width * 0.75))
    kept, used = {}, 0
    for name in names:
        if used + len(encoded[name]) <= budget:
            kept[name] = encoded[name]
            used += len(encoded[name])

    def replace(match: re.Match[str]) -> str:
        alt, name = match.group(1), match.group(2)
        if name in kept:
            return f"![{alt}](data:image/png;base64,{kept[name]})"
        return f"*(figure `{name}` not inlined)*"

    return FIGURE_LINK.sub(replace, report.markdown)
