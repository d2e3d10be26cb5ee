import dagster as dg

from tracer_pipeline.config import canonical_json, network_label, sha256_hex
from tracer_pipeline.defs.assets.per_run import per_run_asset
from tracer_pipeline.defs.metadata import combined_version, table
from tracer_pipeline.defs.resources import TraceStoreResource
from tracer_pipeline.errors import RunNotRegisteredError, StoreError


@per_run_asset()
def runs(context: dg.AssetExecutionContext, store: TraceStoreResource) -> dg.MaterializeResult:
    """A run's specification (network, prompt or initial image, seed) and the experiments that
    name it, as registered in the trace store. The partition key is the run id: the hash of the
    canonical specification, which is checked here."""
    trace = store.get_store()
    try:
        records = [trace.get_run(key) for key in context.partition_keys]
    except RunNotRegisteredError as exc:
        raise dg.Failure(description=str(exc)) from exc
    for record in records:
        spec = trace.run_spec(record.run_id)
        if sha256_hex(canonical_json(spec))[:16] != record.run_id:
            raise StoreError(f"run {record.run_id}: stored specification does not hash to its id")
    rows = [{
        "run_id": r.run_id, "network": network_label(r.network),
        "start": r.prompt if r.prompt is not None else "(initial image)", "seed": r.seed,
        "max_length": r.max_length, "experiments": ", ".join(r.experiments),
        "embedding_models": ", ".join(r.embedding_models),
    } for r in records]
    metadata: dict = {"runs": table(rows), "count": len(records)}
    if len(records) == 1:
        metadata["spec"] = dg.MetadataValue.json(trace.run_spec(records[0].run_id))
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=combined_version([trace.content_hash(r.run_id, "runs") for r in records]),
    )

