"""Semantic states: the outputs of each experiment's runs clustered per embedding model."""

import dagster as dg

from tracer_pipeline.defs.assets.diagrams import persistence_diagrams
from tracer_pipeline.defs.metadata import table
from tracer_pipeline.defs.partitions import experiments_partitions
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.tracing.clusters import cluster_experiment

ALL_RUNS = dg.AssetDep(persistence_diagrams, partition_mapping=dg.AllPartitionMapping())


@dg.asset(partitions_def=experiments_partitions, deps=[ALL_RUNS], code_version="1", group_name="analysis",
          kinds={"sqlite"})
def clusters(context: dg.AssetExecutionContext, store: TraceStoreResource) -> dg.MaterializeResult:
    """The experiment's outputs clustered per embedding model (HDBSCAN, text and images apart;
    −1 for noise), with each cluster's medoid, stored per output. Per experiment rather than
    store-wide, so that an experiment's clusters change only when its own runs do, and their cost
    grows with the experiment. An embedding model whose clusters were made from the same
    embeddings is skipped."""
    outcomes = cluster_experiment(store.get_store(), context.partition_key)
    for o in outcomes:
        context.log.info(f"{o.embedding_model}: {o.clusters} clusters in {o.outputs} outputs"
                         f"{' (already stored)' if o.skipped else ''}")
    return dg.MaterializeResult(metadata={"clusters": table([
        {"embedding_model": o.embedding_model, "outputs": o.outputs, "clusters": o.clusters, "noise": o.noise,
         "skipped": o.skipped} for o in outcomes])})
