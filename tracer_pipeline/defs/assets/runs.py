import dagster as dg

from tracer_pipeline.config import canonical_json, sha256_hex
from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.metadata import combined_version, record_partitions, run_header
from tracer_pipeline.defs.partitions import run_ids_of
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.errors import RunNotRegisteredError, StoreError


@per_run_asset()
def runs(context: dg.AssetExecutionContext, store: TraceStoreResource) -> dg.MaterializeResult:
    """A run's specification (network, prompt or initial image, seed) and the experiments that
    name it, as registered in the trace store. The partition key is the run id: the hash of the
    canonical specification, which is checked here."""
    trace = store.get_store()
    run_ids = run_ids_of(context.partition_keys)
    records = trace.get_runs(run_ids)
    if len(records) != len(run_ids):
        missing = sorted(set(run_ids) - {r.run_id for r in records})
        try:
            trace.get_run(missing[0])
        except RunNotRegisteredError as exc:
            raise dg.Failure(description=str(exc)) from exc
    for record in records:
        if sha256_hex(canonical_json(record.spec))[:16] != record.run_id:
            raise StoreError(f"run {record.run_id}: stored specification does not hash to its id")
    record_partitions(context, {r.run_id: {
        **run_header(r), "max_length": r.max_length, "experiments": ", ".join(r.experiments),
        "embedding_models": ", ".join(r.embedding_models), "spec": dg.MetadataValue.json(r.spec),
    } for r in records})
    return dg.MaterializeResult(data_version=combined_version(trace.content_hashes(run_ids, "runs")))
