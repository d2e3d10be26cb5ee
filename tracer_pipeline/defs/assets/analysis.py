"""Cross-run analysis: the store-wide comparison and the per-experiment report.

Both are recomputed only when their inputs changed: each computes the fingerprint of its inputs
(:mod:`tracer_pipeline.reporting.freshness`), uses it as its data version, and when it equals
the data version of its last materialization it returns at once, saying so in its metadata.
The comparison and report code (numba kernels, matplotlib) is imported only when there is work
for it.
"""

import time

import dagster as dg

from tracer_pipeline.defs.assets.clusters import clusters
from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.metadata import table
from tracer_pipeline.defs.partitions import OWNERS, experiments_partitions
from tracer_pipeline.defs.resources import DataFoldersResource, TraceStoreResource
from tracer_pipeline.reporting.freshness import comparison_fingerprint, report_fingerprint

ALL_RUNS = dg.AssetDep(persistence_diagrams, partition_mapping=dg.AllPartitionMapping())
# The fingerprint of a materialization's inputs, in its metadata: what the next one compares with.
INPUTS_KEY = "inputs_fingerprint"


# A report of every embedding model (no ``embedding_model`` chosen), in its inputs' fingerprint.
ALL_MODELS = "*"


def latest_inputs(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None) -> str | None:
    """The inputs' fingerprint recorded by the asset's (partition's) latest materialization."""
    record = instance.get_latest_data_version_record(asset_key, partition_key=partition)
    if record is None or record.asset_materialization is None:
        return None
    stored = record.asset_materialization.metadata.get(INPUTS_KEY)
    return None if stored is None else stored.value


def _already_current(context: dg.AssetExecutionContext, fingerprint: str) -> bool:
    """Whether the asset's (partition's) last materialization was computed from these inputs."""
    # Not context.has_partition_key: the unpartitioned comparison runs inside a report's
    # partitioned run, whose partition is not its own.
    partition = context.partition_key if context.assets_def.partitions_def is not None else None
    return latest_inputs(context.instance, context.asset_key, partition) == fingerprint


def _skipped(fingerprint: str, started: float, **metadata) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"skipped_already_current": True, INPUTS_KEY: fingerprint,
                  "seconds": round(time.perf_counter() - started, 3), **metadata},
        data_version=dg.DataVersion(fingerprint),
    )


@dg.asset(deps=[ALL_RUNS], code_version="2", group_name="analysis", kinds={"sqlite"}, owners=OWNERS)
def store_comparison(context: dg.AssetExecutionContext, store: TraceStoreResource) -> dg.MaterializeResult:
    """Across every run in the store, per embedding model: all-pairs bottleneck and Wasserstein
    distances between persistence diagrams (H0 and H1) up to ``MAX_ALL_PAIRS_RUNS`` runs (beyond,
    those of a fixed sample of that many, and each run's nearest earlier runs searched among
    candidates: ``reporting.compare``), and recurring end states (attractors).
    Skipped when nothing it is computed from changed; otherwise only pairs involving new or
    changed diagrams are computed. Kept fresh by ``reports_sensor`` (Dagster's staleness does not
    propagate past 100 partitions)."""
    started = time.perf_counter()
    trace = store.get_store()
    fingerprint = comparison_fingerprint(trace)
    if _already_current(context, fingerprint):
        context.log.info("store comparison already current: nothing it is computed from changed")
        return _skipped(fingerprint, started)

    from tracer_pipeline.reporting.compare import compare_store
    from tracer_pipeline.reporting.gather import store_runs

    rows = []
    for model in trace.embedding_models_in_use():
        model_started = time.perf_counter()
        runs = store_runs(trace, model)
        previous = trace.comparison(model)
        comparison = compare_store(runs, previous, embedding_model=model)
        trace.put_comparison(comparison)
        reused = len(set(previous.diagram_hashes) & set(comparison.diagram_hashes)) if previous else 0
        rows.append({"embedding_model": model, "runs": len(comparison.run_ids), "reused_runs": reused,
                     "runs_in_matrices": len(comparison.matrix_ids),
                     "attractors": len(comparison.attractors),
                     "seconds": round(time.perf_counter() - model_started, 3)})
        context.log.info(f"{model}: compared {len(comparison.run_ids)} runs ({reused} reused)")
    return dg.MaterializeResult(
        metadata={"skipped_already_current": False, INPUTS_KEY: fingerprint, "comparisons": table(rows),
                  "seconds": round(time.perf_counter() - started, 3)},
        data_version=dg.DataVersion(fingerprint),
    )


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
    ``<data dir>/reports/<experiment>/report.md`` with ``report.json`` (the same findings).
    Skipped when nothing it is computed from changed (the report on disk is kept); otherwise
    only figures whose data changed are drawn again, and only the diagram distances between its
    runs that the store comparison does not hold and the last report did not keep are computed."""
    started = time.perf_counter()
    trace = store.get_store()
    experiment = context.partition_key
    fingerprint = f"{report_fingerprint(trace, experiment)}:{config.embedding_model or ALL_MODELS}"
    folder = folders.reports_dir(experiment)
    path = folder / "report.md"
    if path.exists() and _already_current(context, fingerprint):
        context.log.info(f"report of {experiment} already current: nothing it is computed from changed")
        return _skipped(fingerprint, started, path=dg.MetadataValue.path(str(path)))

    from tracer_pipeline.reporting.distance_cache import DistanceCache
    from tracer_pipeline.reporting.figure_cache import FigureCache
    from tracer_pipeline.reporting.files import write_report
    from tracer_pipeline.reporting.findings import SECTIONS
    from tracer_pipeline.reporting.gather import embedding_models, experiment_data
    from tracer_pipeline.reporting.report import experiment_report as experiment_report_of
    from tracer_pipeline.reporting.report import inline_markdown

    models = [config.embedding_model] if config.embedding_model else embedding_models(trace, experiment)
    items = []
    for model in models:
        data = experiment_data(trace, experiment, model)
        items.append((data, trace.comparison(data.embedding_model)))
    figures = FigureCache.load(folder)
    distances = DistanceCache.load(folder)
    report = experiment_report_of(items, figures, distances)
    path = write_report(report, folder, figures.keys(report.figures), distances)
    trace.put_report(report.experiment, ",".join(report.embedding_models), report.markdown, report.tables)
    valid = {model: sum(f.valid for f in r.sections.values()) for model, r in report.reports.items()}
    return dg.MaterializeResult(
        metadata={
            "skipped_already_current": False,
            INPUTS_KEY: fingerprint,
            "report": dg.MetadataValue.md(inline_markdown(report, folder=folder)),
            "path": dg.MetadataValue.path(str(path)),
            "runs": len(items[0][0].runs),
            "embedding_models": ", ".join(report.embedding_models),
            "sections_answered": ", ".join(f"{model} {n}/{len(SECTIONS)}" for model, n in valid.items()),
            "figures_drawn": figures.drawn,
            "figures_reused": figures.reused,
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(fingerprint),
    )
