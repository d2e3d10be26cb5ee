"""The CLI's one door into Dagster: register experiments as partitions, launch the ``trace`` and
``report`` jobs on this project's instance, and clean up after CLI processes that were killed."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from tracer_pipeline.config import Experiment
from tracer_pipeline.defs import build_defs
from tracer_pipeline.defs.partitions import experiments_partitions, range_tags, runs_partitions
from tracer_pipeline.defs.registration import Registration, contiguous_ranges, register_experiment
from tracer_pipeline.defs.storage import DAGSTER_ENVIRONMENT
from tracer_pipeline.settings import Settings
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.liveness import process_exists

CLI_PID_TAG = "tracer/cli_pid"
CLI_HOST_TAG = "tracer/cli_host"
EXPERIMENT_TAG = "tracer/experiment"
CODE_LOCATION = "tracer_pipeline"  # as in workspace.yaml and [tool.dagster]


@dataclass(frozen=True)
class ReportOutcome:
    path: Path | None
    failure: str | None


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
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


class Launcher:
    """Dagster runs of this project's code location, executed in this process on its instance."""

    def __init__(self, settings: Settings, verbose: bool = False):
        for name, value in DAGSTER_ENVIRONMENT.items():  # Dagster's own knobs, read where events are written
            os.environ.setdefault(name, value)
        self.settings = settings
        self.instance = dg.DagsterInstance.from_config(str(settings.ensure_dagster_home()))
        self.defs = build_defs(settings)
        self.log_level = "INFO" if verbose else "CRITICAL"

    def _tags(self, experiment: str) -> dict[str, str]:
        # The repository label is what the UI files a run under (Jobs → trace → Runs, the
        # timeline): runs launched here belong to the same code location as the UI's own.
        return {CLI_PID_TAG: str(os.getpid()), CLI_HOST_TAG: socket.gethostname(), EXPERIMENT_TAG: experiment,
                REPOSITORY_LABEL_TAG: f"__repository__@{CODE_LOCATION}"}

    def _run_config(self) -> dict:
        return {"loggers": {"console": {"config": {"log_level": self.log_level}}}}

    def abandoned_runs(self) -> list[dg.DagsterRun]:
        """Dagster runs of this instance started by a trajectory-tracer process on this host that
        no longer exists, still marked as not started, starting or started."""
        host = socket.gethostname()
        statuses = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
        abandoned = []
        for record in self.instance.get_run_records(dg.RunsFilter(statuses=statuses)):
            run = record.dagster_run
            pid = run.tags.get(CLI_PID_TAG)
            if pid is not None and run.tags.get(CLI_HOST_TAG) == host and not process_exists(int(pid)):
                abandoned.append(run)
        return abandoned

    def release_abandoned_runs(self) -> list[str]:
        """Mark the :meth:`abandoned_runs` as failed, freeing the 'gpu' pool slot they held (a
        killed run-experiment would otherwise block the next one), and return their ids. A run
        killed before Dagster started it would otherwise stay 'not started' for ever."""
        released = []
        for run in self.abandoned_runs():
            self.instance.report_run_failed(run, "the trajectory-tracer process running it stopped (killed or crashed)")
            self.instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
        return released

    def forget(self, experiment: str, run_ids: list[str]) -> None:
        """Remove a deleted experiment's partition and its deleted runs' partitions."""
        known = set(self.instance.get_dynamic_partitions(runs_partitions.name))
        for run_id in run_ids:
            if run_id in known:
                self.instance.delete_dynamic_partition(runs_partitions.name, run_id)
        if experiment in self.instance.get_dynamic_partitions(experiments_partitions.name):
            self.instance.delete_dynamic_partition(experiments_partitions.name, experiment)

    def register(self, store: TraceStore, experiment: Experiment) -> Registration:
        return register_experiment(store, self.instance, experiment)

    def trace(self, run_ids: list[str], experiment: str,
              after_each: Callable[[], None] | None = None) -> list[str]:
        """Materialize the runs' chains, one Dagster run per range of consecutive partitions;
        returns the failed steps."""
        job = self.defs.resolve_job_def("trace")
        order = self.instance.get_dynamic_partitions(runs_partitions.name)
        failures: list[str] = []
        for first, last in contiguous_ranges(run_ids, order):
            result = job.execute_in_process(
                instance=self.instance, tags={**range_tags(first, last), **self._tags(experiment)},
                run_config=self._run_config(), raise_on_error=False,
            )
            if not result.success:
                failures += step_failures(result)
            if after_each:
                after_each()
        return failures

    def report(self, experiment: str, embedding_model: str | None = None) -> ReportOutcome:
        """Compare the store's runs, cluster the experiment's outputs and write its report (on
        ``embedding_model`` only, when given), through Dagster."""
        self.instance.add_dynamic_partitions(experiments_partitions.name, [experiment])
        run_config = {**self._run_config(),
                      "ops": {"experiment_report": {"config": {"embedding_model": embedding_model}}}}
        result = self.defs.resolve_job_def("report").execute_in_process(
            instance=self.instance, partition_key=experiment, tags=self._tags(experiment),
            run_config=run_config, raise_on_error=False,
        )
        if not result.success:
            return ReportOutcome(None, "; ".join(step_failures(result)) or "report: unknown error")
        return ReportOutcome(self.settings.reports_dir(experiment) / "report.md", None)

    def train_sceneworld(self, seed: int) -> list[str]:
        """Materialize the sceneworld_models asset with ``seed``; returns the failed steps."""
        result = dg.materialize(
            [self.defs.get_assets_def("sceneworld_models")], instance=self.instance,
            resources={"folders": self.defs.resources["folders"]},
            run_config={"ops": {"sceneworld_models": {"config": {"seed": seed}}},
                        "loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
        return [] if result.success else step_failures(result)
