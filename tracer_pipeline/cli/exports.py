"""Commands that write files for other tools: export-images, export-data."""

from __future__ import annotations

from pathlib import Path

import click

from tracer_pipeline.cli.context import Context, pass_context, writable_folder


@click.command("export-images")
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", help="Export every run of this experiment.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <data dir>/exports/images).")
@pass_context
def export_images_command(obj: Context, run_ids: tuple[str, ...], experiment: str | None, out: Path | None) -> None:
    """Every image of the runs as JPEG with the invocation's metadata in EXIF and XMP (run id,
    sequence number, model, seed, prompt, input caption), plus a contact sheet per run. A run id
    may be a unique prefix.

    \b
    Example:
      trajectory-tracer export-images --experiment quickstart --out images/
    """
    from tracer_pipeline.exports import export_images, resolve_run_ids

    store = obj.read_store
    ids = resolve_run_ids(store, list(run_ids), experiment)
    out = writable_folder(out or obj.settings.data_dir / "exports" / "images", "--out")
    written = export_images(store, ids, out)
    click.echo(f"wrote {len(written)} files for {len(ids)} runs to {out}")


@click.command("export-data")
@click.option("--experiment", help="Only the runs of this experiment (default: every run).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@pass_context
def export_data_command(obj: Context, experiment: str | None, out: Path) -> None:
    """Parquet tables for notebooks: runs, invocations, embeddings, persistence_diagrams, and
    the analysis tables of the experiments' reports (analysis_*.parquet).

    \b
    Example:
      trajectory-tracer export-data --experiment quickstart --out data/
      python -c "import polars as pl; print(pl.read_parquet('data/runs.parquet'))"
    """
    from tracer_pipeline.exports import export_data

    store = obj.read_store
    out = writable_folder(out, "--out")
    if experiment is not None:
        from tracer_pipeline.exports import resolve_run_ids

        ids = resolve_run_ids(store, [], experiment)
    else:
        ids = [r.run_id for r in store.get_runs()]
    for name, path in export_data(store, ids, out, [experiment] if experiment else None).items():
        click.echo(f"{name}: {path}")
