"""Commands that look after a store that lives for weeks: doctor, delete, copy."""

from __future__ import annotations

import shutil
import sys

import click

from tracer_pipeline.cli.context import Context, pass_context
from tracer_pipeline.store.opening import describe


def _abandoned_dagster_runs(obj: Context, release: bool) -> list[str]:
    """Dagster runs left started (or never started) by a killed trajectory-tracer process; with
    ``release``, marked as failed. Empty when this data directory has no Dagster instance."""
    if not (obj.settings.dagster_home / "dagster.yaml").exists():
        return []
    from tracer_pipeline.cli.launcher import Launcher

    launcher = Launcher(obj.settings, obj.verbose)
    if release:
        return launcher.release_abandoned_runs()
    return [run.run_id for run in launcher.abandoned_runs()]


@click.command("doctor")
@click.option("--fix", is_flag=True, help="Delete what is damaged and what was derived from it, so that the "
              "next run-experiment recomputes it.")
@pass_context
def doctor(obj: Context, fix: bool) -> None:
    """Check the store: sequence gaps, non-finite vectors, vectors of the wrong dimension, orphans,
    diagrams whose inputs changed, runs marked running with no live process, abandoned Dagster
    runs. Each problem is named by run id; exit 1 when any is found (after --fix: any is left).

    \b
    Example:
      trajectory-tracer doctor
      trajectory-tracer doctor --fix && trajectory-tracer run-experiment experiments/quickstart.json
    """
    from tracer_pipeline.tracing.doctor import find_problems, repair

    store = obj.store if fix else obj.read_store
    problems = find_problems(store)
    for problem in problems:
        click.echo(str(problem))
    dagster_runs = _abandoned_dagster_runs(obj, release=False)
    for run_id in dagster_runs:
        click.echo(f"(dagster run {run_id}): abandoned: its trajectory-tracer process is gone, "
                   "it still holds its place (and the 'gpu' pool slot)")
    found = len(problems) + len(dagster_runs)
    if not found:
        click.echo(f"{describe(store.url)}: no problems found")
        return
    if not fix:
        click.echo(f"{found} problems; `trajectory-tracer doctor --fix` deletes what is damaged so that "
                   "the next run-experiment recomputes it", err=True)
        sys.exit(1)
    repair(store, problems)
    _abandoned_dagster_runs(obj, release=True)
    left = find_problems(store) + [f"dagster run {r}" for r in _abandoned_dagster_runs(obj, release=False)]
    click.echo(f"repaired {found - len(left)} of {found} problems; run the experiments again "
               "(trajectory-tracer run-experiment CONFIG) to recompute what was deleted")
    if left:
        for problem in left:
            click.echo(f"left: {problem}", err=True)
        sys.exit(1)


@click.command("delete")
@click.argument("experiment")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def delete(obj: Context, experiment: str, yes: bool) -> None:
    """Delete EXPERIMENT: its record, its report, its Dagster partition, and the runs no other
    experiment names (with their invocations, embeddings, diagrams and partitions). Runs that
    another experiment names are kept.

    \b
    Example:
      trajectory-tracer delete red-balloon --yes
    """
    store = obj.store
    store.require_experiment(experiment)
    run_ids = store.experiment_run_ids(experiment)
    shared = [r for r in store.get_runs(run_ids) if len(r.experiments) > 1]
    if not yes:
        click.confirm(f"delete experiment {experiment} from {describe(store.url)}: {len(run_ids) - len(shared)} "
                      f"runs deleted, {len(shared)} kept (named by other experiments)?", abort=True)
    deleted, kept = store.delete_experiment(experiment)
    if (obj.settings.dagster_home / "dagster.yaml").exists():
        from tracer_pipeline.cli.launcher import Launcher

        Launcher(obj.settings, obj.verbose).forget(experiment, deleted)
    shutil.rmtree(obj.settings.reports_dir(experiment), ignore_errors=True)
    click.echo(f"deleted experiment {experiment}: {len(deleted)} runs deleted, {len(kept)} kept "
               "(named by other experiments)")


@click.command("copy")
@click.option("--experiment", required=True, help="The experiment to copy.")
@click.option("--to", "to_url", required=True,
              help="SQLAlchemy URL of the new store, e.g. sqlite:///subset.sqlite (must hold no data yet).")
@pass_context
def copy(obj: Context, experiment: str, to_url: str) -> None:
    """Copy one experiment, its runs and everything computed for them into a new store (a subset
    to share or archive). Store-wide comparisons are recomputed there on the next report.

    \b
    Example:
      trajectory-tracer copy --experiment quickstart --to sqlite:///quickstart.sqlite
    """
    from tracer_pipeline.store.copy import copy_experiment

    copied = copy_experiment(obj.read_store, experiment, to_url)
    click.echo(f"copied experiment {experiment} to {describe(to_url)}: "
               + ", ".join(f"{n} {table}" for table, n in copied.items()))
