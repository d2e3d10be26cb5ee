"""An experiment's report: five questions, each answered by a number with its method, a figure,
and a sentence on what it means and what it cannot say — or, where the data cannot support an
answer, a sentence saying why (:mod:`tracer_pipeline.reporting.findings`).

1. How did it get here, and how sensitive is it to prompt and seed? (:mod:`.sections.drift`)
2. Is it stuck? (:mod:`.sections.stuck`)
3. Has it done this before? (:mod:`.sections.precedents`)
4. Which part has the biggest impact? (:mod:`.sections.factors`)
5. Which states do the runs pass through? (:mod:`.sections.clusters`)
6. For self-consuming runs: does the generator collapse, and when? (:mod:`.sections.collapse`)
7. For steering runs: does the output move toward its target? (:mod:`.sections.steering`)
8. For outputs formed by optimisation: how did the image form? (:mod:`.sections.formation`)

Each section first computes its findings (valid or not, why, the numbers), then renders its
Markdown from them; the JSON report (:meth:`ExperimentReport.to_json`) renders the same findings.
An experiment with several embedding models gets one part per model, and the embedding model
as a factor across them.

Pure: plain data in (:mod:`tracer_pipeline.reporting.data`), a :class:`Report` out. The
Markdown names its figures by file name; ``inline_markdown`` embeds them for Dagster's UI.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.distance_cache import DistanceCache
from tracer_pipeline.reporting.figure_cache import FigureCache
from tracer_pipeline.reporting.findings import SECTIONS, Finding, notice
from tracer_pipeline.reporting.measures import FACTORS, RunMeasures, measure_run
from tracer_pipeline.reporting.sections import (
    clusters,
    collapse,
    drift,
    factors,
    formation,
    overview,
    precedents,
    steering,
    stuck,
    topology,
)
from tracer_pipeline.reporting.sections.factors import FEATURES
from tracer_pipeline.store import StoreComparison

# The UI's Markdown dialog is about 1,280 px wide: figures are shown at a readable 1,000 px, as
# many as fit a budget that keeps each materialization's event small; the rest are linked files.
INLINE_BUDGET_BYTES = 600_000
INLINE_WIDTH_PX = 1000
INLINE_MIN_WIDTH_PX = 1000
FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def build_report(data: ExperimentData, comparison: StoreComparison | None,
                 figures: FigureCache | None = None, distances: DistanceCache | None = None) -> Report:
    """The experiment's report for one embedding model: Markdown answering the questions (module
    docstring), its figures as PNG bytes keyed by file name, its tables as flat rows, and one
    :class:`~tracer_pipeline.reporting.findings.Finding` per section (``findings.SECTIONS``) that
    the Markdown was rendered from.

    Tables: ``run_metrics`` (one row per run), ``drift`` (per run and step), ``drift_by_network``,
    ``divergence`` and ``divergence_by_step``, ``stuck_fractions``, ``diversity_collapse``,
    ``nearest_earlier_runs``, ``attractors``, ``factor_effects``, ``clusters``,
    ``cluster_transitions`` and ``cluster_sequences``; with self-consuming runs also ``collapse``
    and ``collapse_by_generation``; with steering runs ``steering`` and ``steering_by_round``;
    with outputs formed by optimisation ``formation``.

    ``comparison`` is the store-wide comparison for ``data.embedding_model`` (``compare_store``);
    without it the report says it has not been computed and answers question 3 from end states
    only.

    ``figures``, when given, supplies the figures whose data did not change since the report it
    was loaded from (:mod:`.figure_cache`), so only the others are drawn; the report is the same.
    ``distances``, likewise, supplies the diagram distances between the experiment's runs that
    the store comparison does not hold (:mod:`.distance_cache`).
    """
    report = Report(title=f"{data.name} — {data.embedding_model}", markdown="")
    measures = [measure_run(run) for run in data.runs]
    shape = topology.diagram_distances(data.runs, comparison, distances, data.embedding_model)
    with figures.active() if figures is not None else contextlib.nullcontext():
        lines = overview.section(report, data, measures)
        lines += drift.section(report, measures)
        lines += stuck.section(report, measures)
        lines += precedents.section(report, data, measures, comparison, shape)
        lines += factors.section(report, measures, shape)
        lines += clusters.section(report, data, measures)
        lines += collapse.section(report, data)
        lines += steering.section(report, data)
        lines += formation.section(report, data.formations)
    report.sections = {name: report.sections[name] for name in SECTIONS}
    report.markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    return report


@dataclass
class ExperimentReport:
    """An experiment's report over its embedding models: one :class:`Report` per model, and the
    embedding model as a factor when there are several (``across``: a finding over every
    (run, embedding model) pair). ``markdown`` and ``figures`` combine the models' reports (figures
    as ``<model>/<name>`` when there are several); :meth:`to_json` renders the same findings."""

    experiment: str
    reports: dict[str, Report]
    across: Finding | None = None
    across_rows: list[dict] = field(default_factory=list)

    @property
    def embedding_models(self) -> list[str]:
        return list(self.reports)

    def _prefix(self, model: str) -> str:
        return f"{model}/" if len(self.reports) > 1 else ""

    @property
    def figures(self) -> dict[str, bytes]:
        return {f"{self._prefix(model)}{name}": png for model, report in self.reports.items()
                for name, png in report.figures.items()}

    @property
    def tables(self) -> dict[str, list[dict]]:
        """Every model's tables, concatenated per table name, each row tagged with its model."""
        tables: dict[str, list[dict]] = {}
        for model, report in self.reports.items():
            for name, rows in report.tables.items():
                tables.setdefault(name, []).extend({"embedding_model": model, **row} for row in rows)
        if self.across_rows:
            tables["factor_effects_across_embedding_models"] = self.across_rows
        return tables

    @property
    def markdown(self) -> str:
        parts = [f"# Experiment report: {self.experiment}", "", _validity_table(self), ""]
        for model, report in self.reports.items():
            prefix = self._prefix(model)
            body = report.markdown if not prefix else FIGURE_LINK.sub(
                lambda m, p=prefix: f"![{m.group(1)}]({p}{m.group(2)})", report.markdown)
            parts += [body, ""]
        if self.across is not None:
            parts += across_lines(self.across)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).strip() + "\n"

    def to_json(self) -> dict:
        """``{"experiment", "embedding_models": {name: {"sections": {section: finding}}}}``, plus
        ``"across_embedding_models"`` when the experiment has several."""
        result: dict = {"experiment": self.experiment, "embedding_models": {
            model: {"sections": {name: f.to_json() for name, f in report.sections.items()}}
            for model, report in self.reports.items()}}
        if self.across is not None:
            result["across_embedding_models"] = {"sections": {"factors": self.across.to_json()}}
        return result


def _validity_table(experiment: ExperimentReport) -> str:
    """What the data can say, at a glance: one row per section, one column per embedding model."""
    models = experiment.embedding_models
    lines = ["What this experiment's data can support (✓ answered, ✗ not: the section says why):", "",
             "| section | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name in SECTIONS:
        cells = ["✓" if experiment.reports[m].sections[name].valid else "✗" for m in models]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def across_models(reports: dict[str, Report], measures: dict[str, list[RunMeasures]]) -> tuple[Finding, list[dict]]:
    """The embedding model as a factor: η² of the per-run features over every (run, embedding
    model) pair, with the embedding model beside the other factors. Runs an embedder is unsuited
    to take no part."""
    pairs = [dataclasses.replace(m, run=dataclasses.replace(m.run, factors={
        **m.run.factors, "embedding_model": model})) for model, ms in measures.items() for m in ms
        if m.run.embedder_unsuited is None]
    names = ("embedding_model", *FACTORS)
    features = [name for name, _ in FEATURES if name != "H1 entropy" or all(
        r.sections["diagram_distances"].valid for r in reports.values())]
    rows = factors.effect_rows(pairs, [], None, features, names)
    outcomes = factors.outcome_figures(rows, {})
    return factors.factors_finding(outcomes, len(pairs)), rows


def across_lines(finding: Finding) -> list[str]:
    lines = ["", "## Across embedding models", "",
             "How much of each per-run feature the choice of embedding model explains, beside the other factors "
             "(η² over every run and embedding model; features measured in different embedding spaces differ in "
             "scale as well as in content, so a large share says the embedders disagree, not which is right).", ""]
    lines += notice(finding)
    if finding.valid:
        for outcome, o in finding.figures["outcomes"].items():
            if o["valid"]:
                lines.append(f"- **{outcome}:** **{o['strongest_factor']}** explains the most, η² = "
                             f"**{o['value']:.2f}** ({o['n']} run × embedding model pairs).")
            else:
                lines.append(f"- **{outcome}:** not answered — {o['reason']}.")
    return lines


def experiment_report(
    items: Sequence[tuple[ExperimentData, StoreComparison | None]], figures: FigureCache | None = None,
    distances: DistanceCache | None = None,
) -> ExperimentReport:
    """The report of one experiment over each of its embedding models: ``items`` holds one
    (data, store comparison) pair per model, all of the same experiment. With ``figures``, only
    figures whose data changed since the last report are drawn; with ``distances``, only the
    diagram distances that involve new or changed runs are computed."""
    if not items:
        raise ValueError("an experiment report needs at least one embedding model")
    reports = {data.embedding_model: build_report(data, comparison, figures, distances)
               for data, comparison in items}
    result = ExperimentReport(items[0][0].name, reports)
    if len(items) > 1:
        measures = {data.embedding_model: [measure_run(run) for run in data.runs] for data, _ in items}
        result.across, result.across_rows = across_models(reports, measures)
    return result


def _downscaled(png: bytes, width: int) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # optimize=True: 2-4x the time for 1-3 % fewer bytes
    return buffer.getvalue()


def inline_markdown(report: Report | ExperimentReport, max_figures: int | None = None,
                    folder: Path | None = None) -> str:
    """The report's Markdown with its figures embedded as base64 PNG data URIs, for Dagster's UI.

    Figures are downscaled to at most ``INLINE_WIDTH_PX`` wide, and narrower still (down to
    ``INLINE_MIN_WIDTH_PX``) until the whole text fits ``INLINE_BUDGET_BYTES``; figures past
    ``max_figures`` (in order of appearance), or that still do not fit, are replaced by a note
    naming the file (its path in ``folder``, where the report was written).
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
        where = folder / name if folder is not None else name
        return f"*(figure not shown here: `{where}`)*"

    return FIGURE_LINK.sub(replace, report.markdown)
