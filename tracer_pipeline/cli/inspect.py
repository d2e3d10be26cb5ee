"""Commands that look: list-runs, status, list-models. None of them imports torch or dagster."""

from __future__ import annotations

import json

import click

from tracer_pipeline.cli.context import Context, pass_context, print_table, short
from tracer_pipeline.config import network_label
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore


def run_rows(store: TraceStore, experiment: str | None) -> list[dict]:
    """One flat row per run (of an experiment, or of the whole store), as ``list-runs`` shows it."""
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
        "stop_reason": r.stop_reason if r.status != RunStatus.FAILED else r.error,
    } for r in runs]


@click.command("list-runs")
@click.option("--experiment", help="Only the runs this experiment names.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
def list_runs(obj: Context, experiment: str | None, as_json: bool) -> None:
    """One row per run: id, experiments, network, prompt, seed, invocations stored / target,
    status and stop reason.

    \b
    Example:
      trajectory-tracer list-runs --experiment quickstart --json
    """
    rows = run_rows(obj.read_store, experiment)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no runs stored yet: trajectory-tracer run-experiment experiments/quickstart.json")
        return
    print_table([[
        r["run_id"], ",".join(r["experiments"]), network_label(r["network"]), short(r["prompt"], 32),
        str(r["seed"]), f"{r['invocations']}/{r['max_length']}", r["status"], short(r["stop_reason"] or "", 48),
    ] for r in rows], ["RUN", "EXPERIMENTS", "NETWORK", "PROMPT", "SEED", "INVOCATIONS", "STATUS", "STOP REASON"])


@click.command("status")
@click.argument("experiment", required=False)
@pass_context
def status(obj: Context, experiment: str | None) -> None:
    """Progress of each experiment: runs done / running / failed / pending, counts, elapsed time
    and an estimate of the time left.

    \b
    Example:
      trajectory-tracer status quickstart
    """
    from tracer_pipeline.tracing.progress import experiment_progress

    store = obj.read_store
    names = [experiment] if experiment else store.experiment_names()
    if not names:
        click.echo("no experiments stored yet")
        return
    for name in names:
        p = experiment_progress(store, name)
        if p.eta_s is not None:
            eta = f"{p.eta_s:.0f} s"
        elif not p.by_status[RunStatus.RUNNING] and p.remaining_invocations:
            eta = "none running (run the experiment again to continue)"
        else:
            eta = "unknown"
        click.echo(
            f"{name}: {p.done}/{p.runs} runs done, {p.by_status[RunStatus.RUNNING]} running, "
            f"{p.by_status[RunStatus.INTERRUPTED]} interrupted, "
            f"{p.by_status[RunStatus.FAILED]} failed, {p.by_status[RunStatus.PENDING]} pending; "
            f"{p.invocations} invocations, {p.embeddings} embeddings, {p.diagrams} diagrams; "
            f"elapsed {p.elapsed_s:.0f} s; time left {eta}"
        )


@click.command("list-models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
def list_models(obj: Context, as_json: bool) -> None:
    """Every model: name, kind, family (real/tiny/dummy), modalities, source, and whether its
    weights are available on this machine; then, for models that take options in a network entry
    ({"model": NAME, <option>: value}), each option with its default and what it accepts.

    \b
    Example:
      trajectory-tracer list-models --json
    """
    from tracer_pipeline.models.pool import resolve_load_options
    from tracer_pipeline.models.registry import all_models

    options = resolve_load_options("cpu", "auto", obj.settings.model_dir)
    rows = [{
        "name": spec.name, "kind": str(spec.kind), "family": str(spec.family), "modalities": spec.modalities,
        "source": spec.source, "weights_available": bool(spec.weights_available(options)),
        "aliases": list(spec.aliases), "description": spec.description,
        "options": {key: {"default": spec.params.get(key), "accepts": option.describe(), "meaning": option.meaning}
                    for key, option in sorted(spec.options.items())},
    } for spec in all_models()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table([[r["name"], r["kind"], r["family"], ",".join(r["modalities"]), r["source"],
                  "yes" if r["weights_available"] else "no"] for r in rows],
                ["NAME", "KIND", "FAMILY", "MODALITIES", "SOURCE", "WEIGHTS HERE"])
    for r in rows:
        if r["options"]:
            click.echo(f"\n{r['name']} options (in a network: {{\"model\": \"{r['name']}\", <option>: value}}):")
            print_table([[key, json.dumps(o["default"]), f"{o['accepts']}: {o['meaning']}"]
                         for key, o in r["options"].items()], ["OPTION", "DEFAULT", "ACCEPTS"])
