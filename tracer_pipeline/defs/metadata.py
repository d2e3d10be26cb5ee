"""Asset metadata and check results, one run partition at a time.

Metadata lives in Dagster's event log, once per partition: every partition's metadata is its own
run's, of a size that does not grow with the number of runs in a Dagster run (images tiny, 48 px,
and few).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator
from PIL import Image

from tracer_pipeline.config import network_label
from tracer_pipeline.defs.partitions import run_id_of
from tracer_pipeline.store import InvocationRecord, RunRecord

THUMBNAIL_PX = 48
PREVIEW_INVOCATIONS = 10


def thumbnail_markdown(image: Image.Image, alt: str) -> str:
    image = image.copy()
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def trajectory_preview(start: str, invocations: Sequence[InvocationRecord], total: int) -> str:
    """A strip of the first invocations of a run (of ``total``): thumbnails and captions, in order."""
    cells = [f"**{html.escape(start[:80])}**"]
    for inv in invocations[:PREVIEW_INVOCATIONS]:
        if inv.error:
            cells.append(f"⚠ {html.escape(inv.error[:80])}")
        elif inv.output_type == "image":
            cells.append(thumbnail_markdown(inv.output, f"#{inv.sequence_number}"))
        else:
            cells.append(f"“{html.escape((inv.output_text or '')[:80])}”")
    more = total - min(len(invocations), PREVIEW_INVOCATIONS)
    tail = f" → … ({more} more)" if more > 0 else ""
    return " → ".join(cells) + tail


def run_header(run: RunRecord) -> dict[str, object]:
    """What names a run in every asset's partition metadata: its id, network, start and seed,
    and where it stands."""
    return {
        "run_id": run.run_id, "network": network_label(run.network),
        "prompt": run.prompt if run.prompt is not None else "(initial image)", "seed": run.seed,
        "status": str(run.status), "stop_reason": run.stop_reason or run.error or "",
    }


def table(rows: Sequence[dict], descriptions: dict[str, str] | None = None) -> dg.MetadataValue:
    """A metadata table from a list of flat dicts (all with the same keys)."""
    if not rows:
        return dg.MetadataValue.md("_(nothing)_")
    descriptions = descriptions or {}
    kinds = {bool: "bool", int: "int", float: "float"}
    columns = [
        dg.TableColumn(name, kinds.get(type(value), "string"), description=descriptions.get(name))
        for name, value in rows[0].items()
    ]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: (v if isinstance(v, bool | int | float) else str(v)) for k, v in r.items()})
                 for r in rows],
        schema=dg.TableSchema(columns=columns),
    )


def record_partitions(context: dg.AssetExecutionContext, metadata: dict[str, dict]) -> None:
    """Attach each partition's own metadata (run id → metadata) to its materialization (the
    partition whose key names that run).

    What ``context.add_asset_metadata(values, partition_key=...)`` does, for all partitions at
    once: that call reads every dynamic partition to validate its key, which made a Dagster run
    over N partitions cost O(N²) (minutes at 1,000 runs). The keys are validated here once.
    """
    targeted = {run_id_of(k): k for k in context.partition_keys}
    unknown = sorted(set(metadata) - set(targeted))
    if unknown:
        raise dg.DagsterInvariantViolationError(f"metadata for partitions not in this run: {unknown[:5]}")
    step = context.op_execution_context._step_execution_context  # noqa: SLF001
    accumulator = step._metadata_accumulator  # noqa: SLF001
    key = context.assets_def.key
    merged = dict(accumulator.per_output_metadata)
    for run_id, values in metadata.items():
        handle = AssetMetadataHandle(asset_key=key, partition_key=targeted[run_id])
        merged[handle] = {**merged.get(handle, {}), **values}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # noqa: SLF001


def partition_checks(
    context: dg.AssetExecutionContext, check_name: str, problems: dict[str, list[str]],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One check result per run partition, each naming only that run's problems (run id →
    problems); a run with problems fails the check at ``severity``.

    Dagster's ``AssetCheckResult`` has no partition, so the per-partition evaluations are
    yielded as events, and the check's output is then filled without a result of its own.
    """
    asset_key = context.assets_def.key
    keys = {run_id_of(k): k for k in context.partition_keys}
    targets = _latest_materializations(context.instance, asset_key, list(keys.values()))
    for run_id, found in problems.items():
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=not found, partition=keys[run_id], severity=severity,
            metadata={"run_id": run_id, "problems": problem_list(found)},
            target_materialization_data=targets.get(keys[run_id]),
        )
    [output] = [name for name, spec in context.assets_def.check_specs_by_output_name.items()
                if spec.name == check_name]
    yield dg.Output(None, output_name=output)


def _latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest materialization, which its check result is about: without it the
    UI counts the partition's check as not yet executed. One query for all partitions (Dagster's
    own ``AssetCheckResult`` makes one per partition)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=len(partitions)).records
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:  # newest first
        partition = record.event_log_entry.dagster_event.partition
        if partition not in targets:
            targets[partition] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.event_log_entry.run_id, storage_id=record.storage_id, timestamp=record.timestamp)
    return targets


def problem_list(problems: Sequence[str], limit: int = 50) -> dg.MetadataValue:
    """An asset check's problems as a Markdown list (the first ``limit`` of them)."""
    lines = [f"- {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"- … and {len(problems) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) or "none")


def combined_version(by_run: Mapping[str, str]) -> dg.DataVersion:
    """One data version for several partitions materialized in one Dagster run (Dagster records
    the same result for each of them), from each run's content hash."""
    versions = list(by_run.values())
    if len(versions) == 1:
        return dg.DataVersion(versions[0])
    return dg.DataVersion(hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16])
