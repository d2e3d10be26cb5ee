import dagster as dg

from tracer_pipeline.defs.assets.analysis import experiment_report, store_comparison
from tracer_pipeline.defs.assets.clusters import clusters
from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.assets.embeddings import embeddings
from tracer_pipeline.defs.assets.invocations import invocations
from tracer_pipeline.defs.assets.runs import runs
from tracer_pipeline.defs.partitions import experiments_partitions, runs_partitions

TRACE_ASSETS = [runs, invocations, embeddings, persistence_diagrams]

trace_job = dg.define_asset_job(
    "trace",
    selection=dg.AssetSelection.assets(*TRACE_ASSETS),
    partitions_def=runs_partitions,
    description="Run, embed and compute persistence diagrams for run partitions. Launched with a "
                "partition range, the runs in it advance in lockstep with batched model calls.",
)

report_job = dg.define_asset_job(
    "report",
    selection=dg.AssetSelection.assets(store_comparison, clusters, experiment_report),
    partitions_def=experiments_partitions,
    description="Compare every stored run (diagram distances, attractors), cluster an experiment's outputs and "
                "write its report.",
)
