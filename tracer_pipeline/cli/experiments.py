"""Commands that compute: run-experiment, report, train-sceneworld."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import click

from tracer_pipeline.cli.context import Context, fail, pass_context, writable_folder
from tracer_pipeline.config import Experiment, load_experiment
from tracer_pipeline.errors import ConfigError
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore

SHOWN_STUCK_RUNS = 10
# In an experiment's report folder: the fingerprint of what its last complete run-experiment left.
CURRENT_FILE = ".current"


def _quiet_libraries() -> None:
    # The model libraries' own loading bars would break up ours; these are their documented knobs.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@click.command("run-experiment")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db-url", "db_url_here", help="Trace store SQLAlchemy URL (same as the global option).")
@click.option("--launch", is_flag=True,
              help="Submit the runs to the Dagster instance's run queue, for its daemon and workers, and "
                   "follow them, instead of running them in this process.")
@click.option("--dagster-runs", type=click.IntRange(min=1), default=None,
              help="With --launch: split the experiment into at least this many Dagster runs "
                   "(default: TRACER_GPU_POOL_SIZE, one per GPU worker).")
@pass_context
def run_experiment(obj: Context, config: Path, db_url_here: str | None, launch: bool,
                   dagster_runs: int | None) -> None:
    """Validate CONFIG, register its runs and materialize them through Dagster: in this process,
    or with --launch on the instance's daemon and workers (see deploy/README.md).

    A bad config exits with code 2, listing every problem, and writes nothing. Interrupted or
    killed, the same command continues where it stopped. Exit code 1 when runs fail.

    \b
    Example:
      trajectory-tracer run-experiment experiments/quickstart.json
      TRACER_GPU_POOL_SIZE=4 trajectory-tracer run-experiment --launch experiments/quickstart.json
    """
    if db_url_here:
        obj.settings = dataclasses.replace(obj.settings, db_url=db_url_here)
    try:
        experiment = load_experiment(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    _require_weights(obj, experiment)
    if not obj.verbose:
        _quiet_libraries()
    if dagster_runs is not None and not launch:
        fail("--dagster-runs only applies with --launch", code=2)
    store = obj.store
    if _already_current(obj, store, experiment):
        return
    from tracer_pipeline.cli.launcher import Launcher
    from tracer_pipeline.cli.progress import PairsBar, ProgressBars

    launcher = Launcher(obj.settings, obj.verbose)
    launcher.release_abandoned_runs()
    registration = launcher.register(store, experiment)
    run_ids = registration.run_ids
    click.echo(f"experiment {experiment.name}: {len(run_ids)} runs "
               f"({len(registration.new_partitions)} new) in {store.url}")
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean Dagster run status on kill -TERM
    try:
        with ProgressBars(store, run_ids):
            if launch:
                failures = _launch_and_follow(launcher, registration.partition_keys, experiment.name,
                                              dagster_runs or obj.settings.gpu_pool_size)
            else:
                failures = launcher.trace(registration.partition_keys, experiment.name)
        # Minutes for thousands of long runs the first time (the store comparison's distances).
        click.echo("comparing the store's runs and writing the report…", err=True)
        with PairsBar():
            report = launcher.report(experiment.name)
    except KeyboardInterrupt:
        if launch:
            click.echo("\nstopped following: the submitted Dagster runs go on (see the UI's Runs page).", err=True)
        else:
            click.echo("\ninterrupted: everything computed so far is stored; run the same command to continue.",
                       err=True)
        sys.exit(130)
    _print_summary(store, run_ids, time.perf_counter() - started)
    if report.failure:
        failures.append(report.failure)
    else:
        click.echo(f"report: {report.path}")
    failed = [r for r in store.get_runs(run_ids) if r.status == RunStatus.FAILED]
    for message in failures:
        click.echo(f"dagster step failed: {message}", err=True)
    if failed or failures:
        for run in failed:
            click.echo(f"run {run.run_id} failed: {run.error}", err=True)
        sys.exit(1)
    _mark_current(obj, store, experiment)


def _where(obj: Context, store: TraceStore) -> dict[str, str]:
    settings = obj.settings
    return {"store": str(store.url), "dagster_home": str(settings.dagster_home), "model_dir": str(settings.model_dir)}


def _already_current(obj: Context, store: TraceStore, experiment: Experiment) -> bool:
    """Print the summary and return True, without starting Dagster, when the last complete
    run-experiment of this config left nothing to compute and nothing changed since (the same
    fingerprint: see :func:`~tracer_pipeline.reporting.freshness.experiment_fingerprint`)."""
    from tracer_pipeline.reporting.freshness import experiment_fingerprint

    folder = obj.settings.reports_dir(experiment.name)
    marker, report = folder / CURRENT_FILE, folder / "report.md"
    if not (marker.exists() and report.exists() and obj.settings.dagster_home.exists()):
        return False
    started = time.perf_counter()
    fingerprint = experiment_fingerprint(store, experiment, _where(obj, store))
    if fingerprint is None or marker.read_text().strip() != fingerprint:
        return False
    run_ids = store.experiment_run_ids(experiment.name)
    click.echo(f"experiment {experiment.name}: {len(run_ids)} runs (0 new) in {store.url}")
    click.echo("nothing to compute: every run, embedding, diagram and the report are current (Dagster not started)")
    _print_summary(store, run_ids, time.perf_counter() - started)
    click.echo(f"report: {report}")
    return True


def _mark_current(obj: Context, store: TraceStore, experiment: Experiment) -> None:
    from tracer_pipeline.reporting.freshness import experiment_fingerprint

    fingerprint = experiment_fingerprint(store, experiment, _where(obj, store))
    if fingerprint is not None:
        marker = obj.settings.reports_dir(experiment.name) / CURRENT_FILE
        partial = marker.with_name(f"{CURRENT_FILE}.{os.getpid()}.partial")
        try:
            partial.write_text(fingerprint + "\n")
            partial.replace(marker)
        except FileNotFoundError:
            # Another process replaced the report folder meanwhile: no marker, so the next run of
            # this config takes the full path (and leaves one).
            pass


def _require_weights(obj: Context, experiment: Experiment) -> None:
    """Exit 2 before anything is registered when a model's weights are absent, naming them all."""
    from tracer_pipeline.models.pool import resolve_load_options
    from tracer_pipeline.models.weights import missing_weights

    options = resolve_load_options("cpu", "auto", obj.settings.model_dir)
    models = [m for n in experiment.networks for m in n] + [e.generator for e in experiment.steering]
    missing = missing_weights(models + list(experiment.embedding_models), options)
    if missing:
        click.echo(f"{experiment.source}: {len(missing)} of its models have no weights on this machine "
                   "(nothing was registered or started):", err=True)
        for line in missing:
            click.echo(f"  - {line}", err=True)
        sys.exit(2)
def _launch_and_follow(launcher, keys: list[str], experiment: str, dagster_runs: int) -> list[str]:
    """Submit the runs to the instance's queue and wait for them; returns what did not succeed."""
    from tracer_pipeline.cli.launcher import LaunchError

    submitted = launcher.launch(keys, experiment, dagster_runs)
    click.echo(f"submitted {len(submitted)} Dagster runs to the queue of {launcher.settings.dagster_home}",
               err=True)

    def show(statuses: dict[str, str]) -> None:
        counts: dict[str, int] = {}
        for status in statuses.values():
            counts[status.lower()] = counts.get(status.lower(), 0) + 1
        click.echo("Dagster runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), err=True)

    try:
        return launcher.follow(submitted, on_change=show)
    except LaunchError as exc:
        fail(str(exc))


def _print_summary(store: TraceStore, run_ids: list[str], seconds: float) -> None:
    runs = store.get_runs(run_ids)
    counts = store.counts(run_ids)
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run.status] = by_status.get(run.status, 0) + 1
    total = {k: sum(c[k] for c in counts.values()) for k in ("invocations", "embeddings", "diagrams")}
    click.echo(
        f"done in {seconds:.1f} s: {len(runs)} runs ("
        + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        + f"); stored {total['invocations']} invocations, {total['embeddings']} embeddings, "
        f"{total['diagrams']} persistence diagrams"
    )
    stuck = [r for r in runs if r.status == RunStatus.STUCK]
    for run in stuck[:SHOWN_STUCK_RUNS]:
        click.echo(f"  {run.run_id} stuck: {run.stop_reason}")
    if len(stuck) > SHOWN_STUCK_RUNS:
        click.echo(f"  … and {len(stuck) - SHOWN_STUCK_RUNS} more stuck runs (trajectory-tracer list-runs)")


@click.command("report")
@click.argument("experiment")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy the report (Markdown, PNG figures and report.json) into this folder.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report's findings as JSON (every section, per embedding model, with whether its "
                   "data can support it and why not) instead of the report's path.")
@click.option("--embedding-model", help="Report on this one of the experiment's embedding models only "
                                        "(default: every one).")
@pass_context
def report_command(obj: Context, experiment: str, out: Path | None, as_json: bool,
                   embedding_model: str | None) -> None:
    """Compare the store's runs, cluster EXPERIMENT's outputs and write its report (also shown in
    the UI as the experiment_report asset): drift and sensitivity, stuck runs, what the store has
    seen before, which factor dominates and which states the runs pass through, for each
    embedding model — each section saying whether its data can support an answer, and why not.

    \b
    Example:
      trajectory-tracer report quickstart --out report/
      trajectory-tracer report quickstart --json --embedding-model SceneCLIP
    """
    from tracer_pipeline.cli.launcher import Launcher
    from tracer_pipeline.errors import UnknownModelError
    from tracer_pipeline.models.registry import get_model
    from tracer_pipeline.reporting.files import JSON_NAME
    from tracer_pipeline.reporting.gather import embedding_models

    models = embedding_models(obj.store, experiment)
    if embedding_model is not None:
        try:
            embedding_model = get_model(embedding_model).name
        except UnknownModelError as exc:
            fail(f"--embedding-model: {exc}", code=2)
        if embedding_model not in models:
            fail(f"--embedding-model: experiment {experiment} does not use {embedding_model}; it uses "
                 f"{', '.join(models)}", code=2)
    from tracer_pipeline.cli.progress import PairsBar

    with PairsBar():
        outcome = Launcher(obj.settings, obj.verbose).report(experiment, embedding_model)
    if outcome.failure:
        fail(outcome.failure)
    path = outcome.path
    if out is not None:
        writable_folder(out, "--out")
        shutil.copytree(path.parent, out, dirs_exist_ok=True)
        path = out / path.name
    if as_json:
        click.echo((path.parent / JSON_NAME).read_text(encoding="utf-8"), nl=False)
    else:
        click.echo(f"report: {path}")


@click.command("train-sceneworld")
@click.option("--seed", default=0, show_default=True, help="Training seed: the same seed gives the same weights.")
@pass_context
def train_sceneworld(obj: Context, seed: int) -> None:
    """Retrain the SceneWorld models from scratch on CPU (40–50 CPU-minutes) through Dagster
    (the sceneworld_models asset), into <data dir>/sceneworld/seed-SEED, and print their quality
    figures. Already trained there with this code version: nothing is retrained.

    \b
    Example:
      trajectory-tracer train-sceneworld --seed 0
    """
    from tracer_pipeline.cli.launcher import Launcher
    from tracer_pipeline.settings import PACKAGE_DIR

    failures = Launcher(obj.settings, obj.verbose).train_sceneworld(seed)
    if failures:
        fail("; ".join(failures))
    folder = obj.settings.sceneworld_dir(seed)
    click.echo((folder / "metrics.json").read_text())
    click.echo(f"weights: {folder}\nto use them, copy the .safetensors, .json files into "
               f"{PACKAGE_DIR / 'sceneworld' / 'weights'}")
