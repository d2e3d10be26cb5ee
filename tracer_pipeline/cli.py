"""``trajectory-tracer``: run experiments and look at what they stored, from the command line.

Everything goes through the same Dagster instance (``DAGSTER_HOME``) and trace store that
``trajectory-tracer ui`` (``dagster dev``) shows, so CLI work appears in the UI with its lineage.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import click

from tracer_pipeline import settings
from tracer_pipeline.errors import ConfigError, TracerError

CLI_PID_TAG = "tracer/cli_pid"
CLI_HOST_TAG = "tracer/cli_host"


class Context:
    def __init__(self, data_dir: str | None, db_url: str | None, device: str | None, verbose: bool):
        # Resources are built from the environment when the Dagster definitions load, so the
        # options become environment variables before anything imports them.
        self.data = settings.data_dir(data_dir)
        os.environ["TRACER_DATA_DIR"] = str(self.data)
        if db_url:
            os.environ["TRACER_DB_URL"] = db_url
        if device:
            os.environ["TRACER_DEVICE"] = device
        self.verbose = verbose
        self._store = None

    @property
    def store(self):
        if self._store is None:
            from tracer_pipeline.store import TraceStore

            self._store = TraceStore(settings.db_url())
        return self._store


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


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
    ctx.obj = Context(data_dir, db_url, device, verbose)


def main() -> None:
    try:
        cli()
    except TracerError as exc:
        fail(str(exc))


# run-experiment ------------------------------------------------------------------------------


def _release_abandoned_runs(instance) -> None:
    """Mark Dagster runs started by a CLI process that no longer exists as failed, freeing the
    'gpu' pool slot they held (a killed run-experiment would otherwise block the next one)."""
    from dagster import DagsterRunStatus, RunsFilter

    host = socket.gethostname()
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING])):
        run = record.dagster_run
        pid = run.tags.get(CLI_PID_TAG)
        if pid is None or run.tags.get(CLI_HOST_TAG) != host:
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        instance.report_run_failed(run, "the trajectory-tracer process running it stopped (killed or crashed)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


class Progress:
    """Progress bars fed by polling the trace store (the source of truth) while Dagster runs."""

    def __init__(self, store, run_ids: list[str]):
        from tqdm import tqdm

        self.store, self.run_ids = store, run_ids
        runs = store.get_runs(run_ids)
        self.targets = {r.run_id: r.max_length for r in runs}
        self._stop = threading.Event()
        bar = "{desc:<12}{bar:30} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
        quiet = not sys.stderr.isatty()  # bars redrawn into a log file are noise; the summary says it all
        totals = {"runs": len(run_ids), "invocations": sum(self.targets.values()), "embeddings": 0, "diagrams": 0}
        self.bars = {name: tqdm(total=total, desc=name, bar_format=bar, leave=True, disable=quiet)
                     for name, total in totals.items()}
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        for bar in self.bars.values():
            bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.update()
            except Exception:  # a busy database at one poll is no reason to stop the run
                continue

    def update(self) -> None:
        from tracer_pipeline.models.registry import get_model

        runs = self.store.get_runs(self.run_ids)
        counts = self.store.counts(self.run_ids)
        finished = [r for r in runs if r.status in ("complete", "stuck", "failed")]
        invocations = sum(counts[r.run_id]["invocations"] for r in runs)
        # A run that stopped early (stuck or failed) will not reach its target.
        target = sum(counts[r.run_id]["invocations"] if r in finished and r.status != "complete" else r.max_length
                     for r in runs)
        embeddable = 0
        for r in runs:
            outputs = {get_model(m).output_modality for m in r.network}
            per_output = sum(len(outputs & get_model(e).embeds) for e in r.embedding_models) / len(outputs)
            embeddable += int(round(counts[r.run_id]["invocations"] * per_output))
        values = {
            "runs": (len(finished), len(runs)),
            "invocations": (invocations, target),
            "embeddings": (sum(counts[r.run_id]["embeddings"] for r in runs), embeddable),
            "diagrams": (sum(counts[r.run_id]["diagrams"] for r in runs), None),
        }
        for name, (n, total) in values.items():
            bar = self.bars[name]
            if total is not None:
                bar.total = max(total, n)
            elif bar.total < n:
                bar.total = n
            bar.n = n
            bar.refresh()


@cli.command("run-experiment")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db-url", "db_url_here", help="Trace store SQLAlchemy URL (same as the global option).")
@click.pass_obj
def run_experiment(obj: Context, config: Path, db_url_here: str | None) -> None:
    """Validate CONFIG, register its runs and materialize them through Dagster in this process.

    A bad config exits with code 2, listing every problem, and writes nothing. Interrupted or
    killed, the same command continues where it stopped. Exit code 1 when runs fail.

    \b
    Example:
      trajectory-tracer run-experiment experiments/quickstart.json
    """
    from tracer_pipeline.config import load_experiment

    if db_url_here:
        os.environ["TRACER_DB_URL"] = db_url_here
    try:
        experiment = load_experiment(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)

    settings.ensure_dagster_home(obj.data)
    if not obj.verbose:  # the libraries' own loading bars would break up ours
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import dagster as dg

    from tracer_pipeline.definitions import defs
    from tracer_pipeline.jobs import range_tags
    from tracer_pipeline.partitions import runs_partitions
    from tracer_pipeline.tracing.registration import contiguous_ranges, register_experiment

    store = obj.store
    instance = dg.DagsterInstance.get()
    _release_abandoned_runs(instance)
    registration = register_experiment(store, instance, experiment)
    run_ids = list(dict.fromkeys(registration.run_ids))
    click.echo(f"experiment {experiment.name}: {len(run_ids)} runs "
               f"({len(registration.new_partitions)} new) in {store.url}")
    job = defs.resolve_job_def("trace")
    order = instance.get_dynamic_partitions(runs_partitions.name)
    log_level = "INFO" if obj.verbose else "CRITICAL"
    started = time.perf_counter()
    dagster_failures: list[str] = []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean Dagster run status on kill -TERM
    try:
        with Progress(store, run_ids):
            for first, last in contiguous_ranges(run_ids, order):
                result = job.execute_in_process(
                    instance=instance,
                    tags={**range_tags(first, last), CLI_PID_TAG: str(os.getpid()),
                          CLI_HOST_TAG: socket.gethostname(), "tracer/experiment": experiment.name},
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                    raise_on_error=False,
                )
                if not result.success:
                    dagster_failures += _step_failures(result)
        report = _materialize_report(instance, experiment.name, log_level)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: everything computed so far is stored; run the same command to continue.",
                   err=True)
        sys.exit(130)
    _print_summary(store, run_ids, time.perf_counter() - started)
    if report.failure:
        dagster_failures.append(report.failure)
    else:
        click.echo(f"report: {report.path}")
    failed = [r for r in store.get_runs(run_ids) if r.status == "failed"]
    for message in dagster_failures:
        click.echo(f"dagster step failed: {message}", err=True)
    if failed or dagster_failures:
        for run in failed:
            click.echo(f"run {run.run_id} failed: {run.error}", err=True)
        sys.exit(1)


def _step_failures(result) -> list[str]:
    """One line per failed step: the asset's own description, or the error that ended it."""
    lines = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            message = data.user_failure_data.description
        else:
            error = data.error.cause or data.error if data.error else None
            message = error.message.strip().splitlines()[-1] if error else "unknown error"
        lines.append(f"{event.step_key}: {message}")
    return lines


class ReportOutcome:
    def __init__(self, path: Path | None, failure: str | None):
        self.path, self.failure = path, failure


def _materialize_report(instance, experiment: str, log_level: str) -> ReportOutcome:
    """Compare the store's runs and write the experiment's report, through Dagster."""
    from tracer_pipeline.definitions import defs
    from tracer_pipeline.partitions import experiments_partitions

    instance.add_dynamic_partitions(experiments_partitions.name, [experiment])
    result = defs.resolve_job_def("report").execute_in_process(
        instance=instance, partition_key=experiment,
        tags={CLI_PID_TAG: str(os.getpid()), CLI_HOST_TAG: socket.gethostname(), "tracer/experiment": experiment},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    if not result.success:
        return ReportOutcome(None, "; ".join(_step_failures(result)) or "report: unknown error")
    return ReportOutcome(settings.data_dir() / "reports" / experiment / "report.md", None)


def _print_summary(store, run_ids: list[str], seconds: float) -> None:
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
    stuck = [r for r in runs if r.status == "stuck"]
    for run in stuck[:10]:
        click.echo(f"  {run.run_id} stuck: {run.stop_reason}")
    if len(stuck) > 10:
        click.echo(f"  … and {len(stuck) - 10} more stuck runs (trajectory-tracer list-runs)")


@cli.command("report")
@click.argument("experiment")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy the report (Markdown and PNG figures) into this folder.")
@click.pass_obj
def report_command(obj: Context, experiment: str, out: Path | None) -> None:
    """Compare the store's runs and write EXPERIMENT's report (also shown in the UI as the
    experiment_report asset): drift and sensitivity, stuck runs, what the store has seen before,
    and which factor dominates.

    \b
    Example:
      trajectory-tracer report quickstart --out report/
    """
    import shutil

    obj.store.require_experiment(experiment)
    settings.ensure_dagster_home(obj.data)
    import dagster as dg

    outcome = _materialize_report(dg.DagsterInstance.get(), experiment, "INFO" if obj.verbose else "CRITICAL")
    if outcome.failure:
        fail(outcome.failure)
    path = outcome.path
    if out is not None:
        shutil.copytree(path.parent, out, dirs_exist_ok=True)
        path = out / path.name
    click.echo(f"report: {path}")


@cli.command("train-sceneworld")
@click.option("--seed", default=0, show_default=True, help="Training seed: the same seed gives the same weights.")
@click.pass_obj
def train_sceneworld(obj: Context, seed: int) -> None:
    """Retrain the SceneWorld models from scratch on CPU (about 35 CPU-minutes) through Dagster
    (the sceneworld_models asset), into <data dir>/sceneworld/seed-SEED, and print their quality
    figures. Already trained there with this code version: nothing is retrained.

    \b
    Example:
      trajectory-tracer train-sceneworld --seed 0
    """
    settings.ensure_dagster_home(obj.data)
    import dagster as dg

    from tracer_pipeline.assets.sceneworld import sceneworld_models

    result = dg.materialize(
        [sceneworld_models], instance=dg.DagsterInstance.get(),
        run_config={"ops": {"sceneworld_models": {"config": {"seed": seed}}},
                    "loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )
    if not result.success:
        fail("; ".join(_step_failures(result)))
    folder = obj.data / "sceneworld" / f"seed-{seed}"
    click.echo((folder / "metrics.json").read_text())
    click.echo(f"weights: {folder}\nto use them, copy the .safetensors, .json files into "
               f"{settings.PACKAGE_DIR / 'sceneworld' / 'weights'}")


# list-runs, status ---------------------------------------------------------------------------


def run_rows(store, experiment: str | None) -> list[dict]:
    if experiment is not None:
        store.require_experiment(experiment)
        run_ids = store.experiment_run_ids(experiment)
        runs = store.get_runs(run_ids)
    else:
        runs = store.get_runs()
        run_ids = [r.run_id for r in runs]
    counts = store.counts(run_ids)
    return [{
        "run_id": r.run_id, "experiments": list(r.experiments), "network": list(r.network),
        "prompt": r.prompt, "seed": r.seed, "max_length": r.max_length,
        "invocations": counts[r.run_id]["invocations"], "embeddings": counts[r.run_id]["embeddings"],
        "diagrams": counts[r.run_id]["diagrams"], "status": r.status,
        "stop_reason": r.stop_reason if r.status != "failed" else r.error,
    } for r in runs]


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _short(text: str | None, width: int) -> str:
    text = "(image)" if text is None else text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command("list-runs")
@click.option("--experiment", help="Only the runs this experiment names.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def list_runs(obj: Context, experiment: str | None, as_json: bool) -> None:
    """One row per run: id, experiments, network, prompt, seed, invocations stored / target,
    status and stop reason.

    \b
    Example:
      trajectory-tracer list-runs --experiment quickstart --json
    """
    rows = run_rows(obj.store, experiment)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no runs stored yet: trajectory-tracer run-experiment experiments/quickstart.json")
        return
    _print_table([[
        r["run_id"], ",".join(r["experiments"]), "→".join(r["network"]), _short(r["prompt"], 32), str(r["seed"]),
        f"{r['invocations']}/{r['max_length']}", r["status"], _short(r["stop_reason"] or "", 48),
    ] for r in rows], ["RUN", "EXPERIMENTS", "NETWORK", "PROMPT", "SEED", "INVOCATIONS", "STATUS", "STOP REASON"])


@cli.command("status")
@click.argument("experiment", required=False)
@click.pass_obj
def status(obj: Context, experiment: str | None) -> None:
    """Progress of each experiment: runs done / running / failed / pending, counts, elapsed time
    and an estimate of the time left.

    \b
    Example:
      trajectory-tracer status quickstart
    """
    from tracer_pipeline.store.schema import utcnow

    store = obj.store
    names = [experiment] if experiment else store.experiment_names()
    if not names:
        click.echo("no experiments stored yet")
        return
    for name in names:
        rows = run_rows(store, name)
        runs = store.get_runs([r["run_id"] for r in rows])
        done = sum(r["status"] in ("complete", "stuck") for r in rows)
        states = {s: sum(r["status"] == s for r in rows) for s in ("running", "failed", "pending")}
        stored = sum(r["invocations"] for r in rows)
        remaining = sum(max(0, r["max_length"] - r["invocations"]) for r in rows
                        if r["status"] not in ("complete", "stuck", "failed"))
        starts = [r.started_at for r in runs if r.started_at]
        ends = [r.completed_at for r in runs if r.completed_at]
        last = max(ends) if ends and not states["running"] and not states["pending"] else utcnow()
        elapsed = (last - min(starts)).total_seconds() if starts else 0.0
        rate = stored / elapsed if elapsed > 0 and stored else 0.0
        eta = f"{remaining / rate:.0f} s" if rate and remaining else ("0 s" if not remaining else "unknown")
        click.echo(
            f"{name}: {done}/{len(rows)} runs done, {states['running']} running, {states['failed']} failed, "
            f"{states['pending']} pending; {stored} invocations, {sum(r['embeddings'] for r in rows)} embeddings, "
            f"{sum(r['diagrams'] for r in rows)} diagrams; elapsed {elapsed:.0f} s; time left {eta}"
        )


# list-models ---------------------------------------------------------------------------------


@cli.command("list-models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def list_models(obj: Context, as_json: bool) -> None:
    """Every model: name, kind, family (real/tiny/dummy), modalities, source, and whether its
    weights are available on this machine.

    \b
    Example:
      trajectory-tracer list-models --json
    """
    from tracer_pipeline.models.pool import resolve_load_options
    from tracer_pipeline.models.registry import all_models

    options = resolve_load_options("cpu", "auto", settings.model_dir(obj.data))
    rows = [{
        "name": spec.name, "kind": str(spec.kind), "family": str(spec.family), "modalities": spec.modalities,
        "source": spec.source, "weights_available": bool(spec.weights_available(options)),
        "aliases": list(spec.aliases), "description": spec.description,
    } for spec in all_models()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table([[r["name"], r["kind"], r["family"], ",".join(r["modalities"]), r["source"],
                   "yes" if r["weights_available"] else "no"] for r in rows],
                 ["NAME", "KIND", "FAMILY", "MODALITIES", "SOURCE", "WEIGHTS HERE"])


# ui ------------------------------------------------------------------------------------------


@cli.command("ui")
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.pass_obj
def ui(obj: Context, port: int, host: str) -> None:
    """Start the Dagster UI (``dagster dev``) on this project's instance and trace store.

    \b
    Example:
      trajectory-tracer ui --port 3000    # then open http://127.0.0.1:3000
    """
    home = settings.ensure_dagster_home(obj.data)
    workspace = settings.PACKAGE_DIR.parent / "workspace.yaml"
    click.echo(f"DAGSTER_HOME={home}")
    # Run from DAGSTER_HOME: started beside the repository's own dagster.yaml, Dagster warns
    # that it is not the instance in use. Relative settings are made absolute first.
    os.environ["TRACER_EXPERIMENTS_DIR"] = str(settings.experiments_dir())
    os.environ["TRACER_MODEL_DIR"] = str(settings.model_dir(obj.data))
    os.chdir(home)
    for sig in (signal.SIGINT, signal.SIGTERM):  # a parent may have set them to "ignore"
        signal.signal(sig, signal.SIG_DFL)
    dagster = str(Path(sys.executable).parent / "dagster")
    os.execv(dagster, [dagster, "dev", "-w", str(workspace), "-h", host, "-p", str(port)])


@cli.command("dagster-home")
@click.pass_obj
def dagster_home(obj: Context) -> None:
    """Print the export line that points plain ``dagster`` commands at this project's instance.

    \b
    Example:
      eval "$(trajectory-tracer dagster-home)"; dagster job backfill -w workspace.yaml -j trace --all
    """
    click.echo(f"export DAGSTER_HOME={settings.ensure_dagster_home(obj.data)}")


# exports -------------------------------------------------------------------------------------


@cli.command("export-images")
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", help="Export every run of this experiment.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <data dir>/exports/images).")
@click.pass_obj
def export_images_command(obj: Context, run_ids: tuple[str, ...], experiment: str | None, out: Path | None) -> None:
    """Every image of the runs as JPEG with the invocation's metadata in EXIF and XMP (run id,
    sequence number, model, seed, prompt, input caption), plus a contact sheet per run. A run id
    may be a unique prefix.

    \b
    Example:
      trajectory-tracer export-images --experiment quickstart --out images/
    """
    from tracer_pipeline.exports import export_images, resolve_run_ids

    out = out or obj.data / "exports" / "images"
    ids = resolve_run_ids(obj.store, list(run_ids), experiment)
    written = export_images(obj.store, ids, out)
    click.echo(f"wrote {len(written)} files for {len(ids)} runs to {out}")


@cli.command("export-data")
@click.option("--experiment", help="Only the runs of this experiment (default: every run).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.pass_obj
def export_data_command(obj: Context, experiment: str | None, out: Path) -> None:
    """Parquet tables for notebooks: runs, invocations, embeddings, persistence_diagrams, and
    the analysis tables of the experiments' reports (analysis_*.parquet).

    \b
    Example:
      trajectory-tracer export-data --experiment quickstart --out data/
      python -c "import polars as pl; print(pl.read_parquet('data/runs.parquet'))"
    """
    from tracer_pipeline.exports import export_data

    store = obj.store
    if experiment is not None:
        from tracer_pipeline.exports import resolve_run_ids

        ids = resolve_run_ids(store, [], experiment)
    else:
        ids = [r.run_id for r in store.get_runs()]
    for name, path in export_data(store, ids, out, [experiment] if experiment else None).items():
        click.echo(f"{name}: {path}")


if __name__ == "__main__":
    main()
