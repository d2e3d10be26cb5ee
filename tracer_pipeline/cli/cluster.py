"""Commands for running beyond one process: a Celery worker for Dagster's steps."""

from __future__ import annotations

import os

import click

from tracer_pipeline.cli.context import Context, pass_context


@click.command("worker")
@click.option("--gpu", type=click.IntRange(min=0), default=None,
              help="Make only this GPU visible to the worker (CUDA_VISIBLE_DEVICES): start one worker per GPU.")
@click.option("--name", default=None, help="The worker's name (default: gpuN, or worker).")
@pass_context
def worker(obj: Context, gpu: int | None, name: str | None) -> None:
    """Run a Celery worker that executes Dagster steps sent by the celery executor
    (TRACER_EXECUTOR=celery), one at a time, on the broker TRACER_CELERY_BROKER. It keeps the
    models it loads for as long as it runs. Stop it with Ctrl-C or SIGTERM (it finishes its step).

    \b
    Example (two GPUs, a worker each):
      trajectory-tracer worker --gpu 0 &
      trajectory-tracer worker --gpu 1 &
    """
    from tracer_pipeline.defs.workers import worker_command

    argv, env = worker_command(obj.settings, gpu=gpu, name=name, loglevel="INFO" if obj.verbose else "WARNING")
    click.echo(f"worker {argv[argv.index('--hostname') + 1]} on {obj.settings.celery_broker}"
               + (f", GPU {gpu}" if gpu is not None else ""), err=True)
    os.execve(argv[0], argv, env)  # the worker replaces this process: signals reach it directly
