"""Commands that open Dagster itself: ui (``dagster dev``) and dagster-home."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from tracer_pipeline.cli.context import Context, pass_context
from tracer_pipeline.settings import PACKAGE_DIR


@click.command("ui")
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@pass_context
def ui(obj: Context, port: int, host: str) -> None:
    """Start the Dagster UI (``dagster dev``) on this project's instance and trace store.

    \b
    Example:
      trajectory-tracer ui --port 3000    # then open http://127.0.0.1:3000
    """
    from tracer_pipeline.defs.storage import DAGSTER_ENVIRONMENT

    home = obj.settings.ensure_dagster_home()
    workspace = PACKAGE_DIR.parent / "workspace.yaml"
    click.echo(f"DAGSTER_HOME={home}")
    for sig in (signal.SIGINT, signal.SIGTERM):  # a parent may have set them to "ignore"
        signal.signal(sig, signal.SIG_DFL)
    dagster = str(Path(sys.executable).parent / "dagster")
    # dagster dev and its code server resolve the same settings from this environment. It runs
    # from DAGSTER_HOME: started beside the repository's own dagster.yaml, Dagster warns that it
    # is not the instance in use (the settings' paths are absolute already).
    os.chdir(home)
    os.execve(dagster, [dagster, "dev", "-w", str(workspace), "-h", host, "-p", str(port)],
              {**DAGSTER_ENVIRONMENT, **os.environ, **obj.settings.environment()})


@click.command("dagster-home")
@pass_context
def dagster_home(obj: Context) -> None:
    """Print the export line that points plain ``dagster`` commands at this project's instance.

    \b
    Example:
      eval "$(trajectory-tracer dagster-home)"; dagster job backfill -w workspace.yaml -j trace --all
    """
    click.echo(f"export DAGSTER_HOME={obj.settings.ensure_dagster_home()}")
