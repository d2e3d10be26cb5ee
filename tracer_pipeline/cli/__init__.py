"""``trajectory-tracer``: run experiments and look at what they stored, from the command line.

Everything goes through the same Dagster instance (``DAGSTER_HOME``) and trace store that
``trajectory-tracer ui`` (``dagster dev``) shows, so CLI work appears in the UI with its lineage.
The settings are resolved once, here, from the flags and the environment, and passed down.
"""

from __future__ import annotations

import gc

import click

from tracer_pipeline.cli.cluster import worker
from tracer_pipeline.cli.context import Context, fail
from tracer_pipeline.cli.experiments import report_command, run_experiment, train_sceneworld
from tracer_pipeline.cli.exports import export_data_command, export_images_command
from tracer_pipeline.cli.inspect import list_models, list_runs, status
from tracer_pipeline.cli.operate import copy, delete, doctor
from tracer_pipeline.cli.ui import dagster_home, ui
from tracer_pipeline.errors import TracerError
from tracer_pipeline.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", envvar="TRACER_DATA_DIR",
              help="Data directory (default: TRACER_DATA_DIR or ./tracer_data).")
@click.option("--db-url", envvar="TRACER_DB_URL",
              help="Trace store SQLAlchemy URL (default: sqlite:///<data dir>/tracer.sqlite).")
@click.option("--device", envvar="TRACER_DEVICE", help="auto (default), cpu, cuda or cuda:N.")
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's log lines.")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, db_url: str | None, device: str | None, verbose: bool) -> None:
    """Trace what happens when generative models feed each other.

    \b
    Example:
      trajectory-tracer run-experiment experiments/quickstart.json
      trajectory-tracer list-runs
    """
    ctx.obj = Context(Settings.resolve(data_dir=data_dir, db_url=db_url, device=device), verbose)


for command in (run_experiment, report_command, train_sceneworld, list_runs, status, list_models,
                ui, dagster_home, export_images_command, export_data_command, doctor, delete, copy, worker):
    cli.add_command(command)


# The collector's first threshold: a young collection every this many allocations instead of
# Python's 700. The CLI keeps most of what it allocates (records, events, models), which the
# default walked again and again: 1.4 s of SceneWorld's 10 x 50 run, 3.6 s of 1,000 x 20 dummy
# runs, to 0.5 s and 1.0 s, with the same peak memory.
YOUNG_COLLECTION_EVERY = 20_000


def main() -> None:
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    try:
        cli()
    except TracerError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        # Everything is written and closed: spare the interpreter's last collections, which walk
        # every object of torch, Dagster and the models (1–3 s at exit).
        gc.freeze()
