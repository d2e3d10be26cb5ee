"""Exports for people and notebooks: self-describing JPEGs, contact sheets, Parquet tables."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

from tracer_pipeline.errors import TracerError
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore

EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131
CONTACT_CELL_PX = 96
# EXIF and XMP each live in one JPEG segment of at most 64 KB; a field is cut to this many
# characters there (the store keeps the full text).
METADATA_FIELD_CHARS = 1000  # escaped (up to 6 bytes a character), twice in XMP: well under 64 KB


def _fits_metadata(fields: dict) -> dict:
    """``fields`` with every long text cut, marked with how much was left out."""
    cut = {}
    for key, value in fields.items():
        if isinstance(value, str) and len(value) > METADATA_FIELD_CHARS:
            left = len(value) - METADATA_FIELD_CHARS
            value = (f"{value[:METADATA_FIELD_CHARS]}… [truncated: {left} more characters; "
                     "the full text is in the trace store]")
        cut[key] = value
    return cut


def resolve_run_ids(store: TraceStore, prefixes: list[str], experiment: str | None) -> list[str]:
    """Run ids from unique prefixes and/or an experiment name."""
    if not prefixes and experiment is None:
        raise TracerError("name runs (RUN_ID prefixes) or --experiment NAME")
    run_ids: list[str] = []
    if experiment is not None:
        store.require_experiment(experiment)
        run_ids += store.experiment_run_ids(experiment)
    every = [r.run_id for r in store.get_runs()]
    for prefix in prefixes:
        matches = [r for r in every if r.startswith(prefix)]
        if not matches:
            raise TracerError(f"no run id starts with {prefix!r} (trajectory-tracer list-runs shows them)")
        if len(matches) > 1:
            raise TracerError(
                f"{prefix!r} matches {len(matches)} runs ({', '.join(matches[:5])}…); give more characters")
        run_ids.append(matches[0])
    return list(dict.fromkeys(run_ids))


def _xmp(fields: dict) -> bytes:
    items = "".join(f"<tracer:{k}>{escape(str(v))}</tracer:{k}>" for k, v in fields.items())
    description = escape(json.dumps(fields, ensure_ascii=False))
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:tracer="https://example.org/tracer_pipeline/1.0/">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>'
        f"{items}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def export_images(store: TraceStore, run_ids: list[str], out: Path) -> list[Path]:
    """Write every image of the runs as JPEG with its invocation's metadata in EXIF
    (ImageDescription, as JSON) and XMP, plus one contact sheet per run. Returns the files."""
    written: list[Path] = []
    for run in store.get_runs(run_ids):
        folder = out / run.run_id
        folder.mkdir(parents=True, exist_ok=True)
        invocations = store.invocations(run.run_id)
        by_id = {inv.id: inv for inv in invocations}
        caption_of = {inv.input_invocation_id: inv.output_text or "(empty caption)"
                      for inv in invocations if inv.output_type == "text"}
        cells: list[tuple[int, Image.Image, str | None]] = []
        for inv in invocations:
            if inv.output_type != "image":
                continue
            source = by_id.get(inv.input_invocation_id) if inv.input_invocation_id else None
            input_caption = source.output_text if source is not None else run.prompt
            fields = _fits_metadata({
                "run_id": run.run_id, "sequence_number": inv.sequence_number, "model": inv.model,
                "model_version": inv.model_version, "seed": inv.seed, "prompt": run.prompt,
                "input_caption": input_caption, "network": " -> ".join(run.network),
                "experiments": ", ".join(run.experiments),
                "input_is_empty_caption": bool(source is not None and source.empty_caption),
            })
            image = inv.output
            exif = Image.Exif()
            exif[EXIF_IMAGE_DESCRIPTION] = json.dumps(fields, ensure_ascii=True)
            exif[EXIF_SOFTWARE] = "tracer_pipeline"
            path = folder / f"{inv.sequence_number:05d}_{inv.model}.jpg"
            image.save(path, format="JPEG", quality=92, exif=exif, xmp=_xmp(fields))
            written.append(path)
            cells.append((inv.sequence_number, image, caption_of.get(inv.id)))
        if cells:
            start = f"from: {run.prompt}" if run.prompt else "from an initial image"
            sheet = contact_sheet(cells, f"{run.run_id}  {' -> '.join(run.network)}  seed {run.seed}  {start}")
            path = out / f"{run.run_id}_contact_sheet.jpg"
            sheet.save(path, format="JPEG", quality=90)
            written.append(path)
    return written


def contact_sheet(cells: list[tuple[int, Image.Image, str | None]], title: str) -> Image.Image:
    """A grid of thumbnails labelled with their sequence numbers and, under each, the caption the
    next model gave it."""
    columns = min(6, len(cells))
    rows = math.ceil(len(cells) / columns)
    width = CONTACT_CELL_PX + 24
    lines = 6
    height = CONTACT_CELL_PX + 14 + 11 * lines
    sheet = Image.new("RGB", (columns * width, rows * height + 20), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title[:140], fill="black")
    for i, (seq, image, caption) in enumerate(cells):
        x, y = (i % columns) * width, 20 + (i // columns) * height
        sheet.paste(image.resize((CONTACT_CELL_PX, CONTACT_CELL_PX)), (x + 12, y + 2))
        draw.text((x + 12, y + CONTACT_CELL_PX + 3), f"#{seq}", fill="black")
        wrapped = textwrap.wrap(caption, width=20)[:lines] if caption else []
        for k, line in enumerate(wrapped):
            draw.text((x + 4, y + CONTACT_CELL_PX + 15 + 11 * k), line, fill=(60, 60, 60))
    return sheet


def export_data(
    store: TraceStore, run_ids: list[str], out: Path, experiments: list[str] | None = None
) -> dict[str, Path]:
    """Write runs, invocations, embeddings, persistence_diagrams and clusters as Parquet tables, the
    self-consuming runs' cross_accuracy and label_frequencies, the steering runs' preferences (each
    query: the reward model's score of each action, the source's similarities, the choice) and
    steering_rounds (each round's figures) (each empty without such runs), and the analysis tables
    of the experiments' reports as ``analysis_<table>.parquet``.

    ``embeddings`` also holds each run's reference embedding (its initial prompt or image) with
    ``sequence_number`` −1 and no invocation; ``clusters`` holds the cluster of each output per
    experiment and embedding model (−1 for noise), for the experiments asked for (every one when
    ``experiments`` is None)."""
    out.mkdir(parents=True, exist_ok=True)
    runs = store.get_runs(run_ids)
    tables: dict[str, pl.DataFrame] = {}
    tables["runs"] = pl.DataFrame([{
        "run_id": r.run_id, "experiment": ", ".join(r.experiments), "network": " -> ".join(r.network),
        "prompt": r.prompt, "seed": r.seed, "max_length": r.max_length, "status": r.status,
        "stop_reason": r.stop_reason if r.status != RunStatus.FAILED else r.error,
    } for r in runs], schema={"run_id": pl.String, "experiment": pl.String, "network": pl.String,
                              "prompt": pl.String, "seed": pl.Int64, "max_length": pl.Int64,
                              "status": pl.String, "stop_reason": pl.String})
    invocation_rows, embedding_rows, diagram_rows = [], [], []
    for r in runs:
        for inv in store.invocations(r.run_id):
            invocation_rows.append({
                "invocation_id": inv.id, "run_id": r.run_id, "sequence_number": inv.sequence_number,
                "model": inv.model, "output_type": inv.output_type, "output_text": inv.output_text,
                "output_image_sha256": inv.output_sha256 if inv.output_type == "image" else None,
                "input_invocation_id": inv.input_invocation_id, "seed": inv.seed,
                "duration_s": (inv.completed_at - inv.started_at).total_seconds(), "error": inv.error,
            })
        for model in r.embedding_models:
            reference = store.reference_embedding(r.run_id, model)
            if reference is not None:
                # The initial prompt or image, before step 0: what drift is measured from.
                embedding_rows.append({"invocation_id": None, "run_id": r.run_id, "sequence_number": -1,
                                       "embedding_model": model,
                                       "vector": np.asarray(reference[1], dtype=np.float32).tolist()})
            ids = store.embedding_ids(r.run_id, model)
            seqs, _, vectors = store.trajectory(r.run_id, model)
            for (inv_id, seq), vector in zip(ids, vectors, strict=True):
                embedding_rows.append({"invocation_id": inv_id, "run_id": r.run_id, "sequence_number": seq,
                                       "embedding_model": model, "vector": vector.astype(np.float32).tolist()})
    for d in store.diagrams(run_ids):
        for dim, points in sorted(d.points.items()):
            for birth, death in points:
                diagram_rows.append({"run_id": d.run_id, "embedding_model": d.embedding_model, "subset": d.subset,
                                     "homology_dim": dim, "birth": float(birth), "death": float(death)})
    tables["invocations"] = pl.DataFrame(invocation_rows, schema={
        "invocation_id": pl.Int64, "run_id": pl.String, "sequence_number": pl.Int64, "model": pl.String,
        "output_type": pl.String, "output_text": pl.String, "output_image_sha256": pl.String,
        "input_invocation_id": pl.Int64, "seed": pl.Int64, "duration_s": pl.Float64, "error": pl.String})
    tables["embeddings"] = pl.DataFrame(embedding_rows, schema={
        "invocation_id": pl.Int64, "run_id": pl.String, "sequence_number": pl.Int64,
        "embedding_model": pl.String, "vector": pl.List(pl.Float32)})
    tables["persistence_diagrams"] = pl.DataFrame(diagram_rows, schema={
        "run_id": pl.String, "embedding_model": pl.String, "subset": pl.String, "homology_dim": pl.Int64,
        "birth": pl.Float64, "death": pl.Float64})
    wanted = set(run_ids)
    tables["clusters"] = pl.DataFrame([{
        "experiment": c.experiment, "run_id": c.run_id, "sequence_number": c.sequence_number,
        "embedding_model": c.embedding_model, "modality": c.modality, "cluster": c.cluster, "is_medoid": c.is_medoid,
    } for c in store.clusters(experiments) if c.run_id in wanted], schema={
        "experiment": pl.String, "run_id": pl.String, "sequence_number": pl.Int64, "embedding_model": pl.String,
        "modality": pl.String, "cluster": pl.Int64, "is_medoid": pl.Boolean})
    tables["cross_accuracy"] = pl.DataFrame(store.cross_accuracy(run_ids), schema={
        "run_id": pl.String, "trained_generation": pl.Int64, "evaluated_generation": pl.Int64,
        "accuracy": pl.Float64})
    tables["label_frequencies"] = pl.DataFrame(store.label_frequencies(run_ids), schema={
        "run_id": pl.String, "generation": pl.Int64, "classifier": pl.String, "label": pl.String,
        "count": pl.Int64})
    tables["preferences"] = pl.DataFrame(store.preferences(run_ids), schema={
        "run_id": pl.String, "round": pl.Int64, "pair": pl.Int64, "first_reward": pl.Float64,
        "second_reward": pl.Float64, "first_similarity": pl.Float64, "second_similarity": pl.Float64,
        "choice": pl.String})
    tables["steering_rounds"] = pl.DataFrame(store.steering_figures(run_ids), schema={
        "run_id": pl.String, "round": pl.Int64, "reward_loss": pl.Float64, "heldout_accuracy": pl.Float64,
        "destination_reward": pl.Float64, "target_similarity": pl.Float64})
    for name, rows in store.report_tables(experiments).items():
        tables[f"analysis_{name}"] = pl.DataFrame(rows, infer_schema_length=None)
    paths = {}
    for name, frame in tables.items():
        paths[name] = out / f"{name}.parquet"
        frame.write_parquet(paths[name])
    return paths
