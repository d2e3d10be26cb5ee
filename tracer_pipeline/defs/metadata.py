"""Small previews for asset metadata: tables and Markdown with embedded thumbnails.

Metadata lives in Dagster's event log, so images are kept tiny (48 px) and few.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image

from tracer_pipeline.store import InvocationRecord

THUMBNAIL_PX = 48
PREVIEW_INVOCATIONS = 10


def thumbnail_markdown(image: Image.Image, alt: str) -> str:
    image = image.copy()
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def trajectory_preview(run_id: str, start: str, invocations: Sequence[InvocationRecord]) -> str:
    """A strip of the first invocations of a run: thumbnails and captions, in order."""
    cells = [f"**{html.escape(start[:80])}**"]
    for inv in invocations[:PREVIEW_INVOCATIONS]:
        if inv.error:
            cells.append(f"⚠ {html.escape(inv.error[:80])}")
        elif inv.output_type == "image":
            cells.append(thumbnail_markdown(inv.output, f"{run_id}#{inv.sequence_number}"))
        else:
            cells.append(f"“{html.escape((inv.output_text or '')[:80])}”")
    more = len(invocations) - PREVIEW_INVOCATIONS
    tail = f" → … ({more} more)" if more > 0 else ""
    return f"Run `{run_id}`: " + " → ".join(cells) + tail


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


def problem_list(problems: Sequence[str], limit: int = 50) -> dg.MetadataValue:
    """An asset check's problems as a Markdown list (the first ``limit`` of them)."""
    lines = [f"- {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"- … and {len(problems) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) or "none")


def combined_version(versions: Sequence[str]) -> dg.DataVersion:
    """One data version for several partitions materialized in one Dagster run (Dagster records
    the same result for each of them)."""
    if len(versions) == 1:
        return dg.DataVersion(versions[0])
    return dg.DataVersion(hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16])
