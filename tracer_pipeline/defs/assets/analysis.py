"""Cross-run analysis: the store-wide comparison and the per-experiment report."""

import time

import dagster as dg

from tracer_pipeline.defs.assets.clusters import clusters
from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.metadata import table
from tracer_pipeline.defs.partitions import OWNERS, experiments_partitions
from tracer_pipeline.defs.resources import DataFoldersResource, TraceStoreResource
from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.files import write_report
from tracer_pipeline.reporting.findings import SECTIONS
from tracer_pipeline.reporting.gather import embedding_models, experiment_data, store_runs
from tracer_pipeline.reporting.report import experiment_report as experiment_report_of
from tracer_pipeline.reporting.report import inline_markdown

ALL_RUNS = dg.AssetDep(persistence_diagrams, partition_mapping=dg.AllPartitionMapping())


@dg.asset(deps=[ALL_RUNS], code_version="1", group_name="analysis", kinds={"sqlite"}, owners=OWNERS)
def store_comparison(context: dg.AssetExecutionContext, store: TraceStoreResource) -> dg.MaterializeResult:
    """Across every run in the store, per embedding model: all-pairs bottleneck and Wasserstein
    distances between persistence diagrams (H0 and H1), and recurring end states (attractors).
    Only pairs involving new or changed diagrams are computed. Kept fresh by ``reports_sensor``
    (Dagster's staleness does not propagate past 100 partitions)."""
    trace = store.get_store()
    rows = []
    for model in trace.embedding_models_in_use():
        started = time.perf_counter()
        runs = store_runs(trace, model)
        previous = trace.comparison(model)
        comparison = compare_store(runs, previous, embedding_model=model)
        trace.put_comparison(comparison)
        reused = len(set(previous.diagram_hashes) & set(comparison.diagram_hashes)) if previous else 0
        rows.append({"embedding_model": model, "runs": len(comparison.run_ids), "reused_runs": reused,
                     "attractors": len(comparison.attractors), "seconds": round(time.perf_counter() - started, 3)})
        context.log.info(f"{model}: compared {len(comparison.run_ids)} runs ({reused} reused)")
    return dg.MaterializeResult(metadata={"comparisons": table(rows)},
                                data_version=dg.DataVersion(trace.diagrams_fingerprint()))


class ReportConfig(dg.Config):
    """Which of the experiment's embedding models to report on (all of them when unset)."""

    embedding_model: str | None = None


@dg.asset(
    partitions_def=experiments_partitions,
    deps=[ALL_RUNS, store_comparison, clusters],
    code_version="2",
    group_name="analysis",
    kinds={"sqlite"},
    owners=OWNERS,
)
def experiment_report(
    context: dg.AssetExecutionContext, config: ReportConfig, store: TraceStoreResource, folders: DataFoldersResource
) -> dg.MaterializeResult:
    """The experiment's report, per embedding model: how its runs got where they did and how
    sensitive that was to prompt and seed, whether they got stuck, whether the store has seen this
    before, which factor dominates and which states the runs pass through — each section saying
    whether its data can support an answer. Shown here and written to
    ``<data dir>/reports/<experiment>/report.md`` with ``report.json`` (the same findings)."""
    trace = store.get_store()
    models = [config.embedding_model] if config.embedding_model else embedding_models(trace, context.partition_key)
    items = []
    for model in models:
        data = experiment_data(trace, context.partition_key, model)
        items.append((data, trace.comparison(data.embedding_model)))
    report = experiment_report_of(items)
    path = write_report(report, folders.reports_dir(report.experiment))
    trace.put_report(report.experiment, ",".join(report.embedding_models), report.markdown, report.tables)
    valid = {model: sum(f.valid for f in r.sections.values()) for model, r in report.reports.items()}
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(inline_markdown(report)),
        "path": dg.MetadataValue.path(str(path)),
        "runs": len(items[0][0].runs),
        "embedding_models": ", ".join(report.embedding_models),
        "sections_answered": ", ".join(f"{model} {n}/{len(SECTIONS)}" for model, n in valid.items()),
    })
