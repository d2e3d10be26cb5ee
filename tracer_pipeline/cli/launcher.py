"""The CLI's one door into Dagster: register experiments as partitions, run the ``trace`` and
``report`` jobs on this project's instance (in this process, or submitted to the instance's run
queue for its daemon and workers), and clean up after CLI processes that were killed."""

from __future__ import annotations

import gc
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from tracer_pipeline.config import Experiment
from tracer_pipeline.defs import build_defs
from tracer_pipeline.defs.partitions import (
    experiments_partitions,
    partition_keys_by_run,
    range_tags,
    runs_partitions,
)
from tracer_pipeline.defs.registration import Registration, contiguous_ranges, register_experiment, split_ranges
from tracer_pipeline.defs.resources import build_resources
from tracer_pipeline.defs.storage import DAGSTER_ENVIRONMENT
from tracer_pipeline.errors import TracerError
from tracer_pipeline.settings import Settings
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.liveness import process_exists

CLI_PID_TAG = "tracer/cli_pid"
CLI_HOST_TAG = "tracer/cli_host"
EXPERIMENT_TAG = "tracer/experiment"
CODE_LOCATION = "tracer_pipeline"  # workspace.yaml's location_name: where the daemon finds the jobs
DEFINITIONS_MODULE = "tracer_pipeline.definitions"
GPU_POOL = "gpu"
FOLLOW_POLL_S = 1.0
DAEMON_GRACE_S = 60.0  # queued runs and no daemon heartbeat for this long: nobody will run them


class LaunchError(TracerError):
    """Submitted runs cannot proceed: no daemon takes them from the queue."""


@dataclass(frozen=True)
class ReportOutcome:
    path: Path | None
    failure: str | None


def step_failures(events: Iterable[dg.DagsterEvent]) -> list[str]:
    """One line per failed step: the asset's own description, or the error that ended it."""
    lines = []
    for event in events:
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
        # Dagster and the definitions live as long as the process: frozen, the collector stops
        # walking them at every full collection of the run (as the model pool does for models).
        gc.freeze()

    def _tags(self, experiment: str) -> dict[str, str]:
        # The repository label is what the UI files a run under (Jobs → trace → Runs, the
        # timeline): runs launched here belong to the same code location as the UI's own.
        return {CLI_PID_TAG: str(os.getpid()), CLI_HOST_TAG: socket.gethostname(), EXPERIMENT_TAG: experiment,
                REPOSITORY_LABEL_TAG: f"__repository__@{CODE_LOCATION}"}

    def _run_config(self) -> dict:
        return {"loggers": {"console": {"config": {"log_level": self.log_level}}}}

    def _launch_config(self) -> dict:
        """Run config that carries this process's settings to wherever the run executes (daemon,
        run worker, Celery workers), so that none of them reads its own environment instead."""
        resources = {name: {"config": resource.model_dump()}
                     for name, resource in build_resources(self.settings).items()}
        return {**self._run_config(), "resources": resources}

    def launch(self, keys: list[str], experiment: str, dagster_runs: int) -> list[str]:
        """Submit the chains of the runs with these partition keys to the instance's run queue as
        at least ``dagster_runs`` Dagster runs (ranges of consecutive partitions, where there are
        enough runs), for the daemon to start and the executor to spread; returns the Dagster run
        ids.

        Also sizes the ``gpu`` pool to ``settings.gpu_pool_size``: one model-running step per
        GPU worker at a time.
        """
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        self.instance.event_log_storage.set_concurrency_slots(GPU_POOL, self.settings.gpu_pool_size)
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE,
                                 working_directory=os.getcwd()),
            location_name=CODE_LOCATION,
        )
        order = self.instance.get_dynamic_partitions(runs_partitions.name)
        run_config = self._launch_config()
        submitted: list[str] = []
        with origin.create_location(self.instance) as location:
            (repository,) = location.get_repositories().values()
            job = repository.get_full_job("trace")
            plan = location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None,
                                               instance=self.instance).execution_plan_snapshot
            for first, last in split_ranges(keys, order, dagster_runs):
                run = self.instance.create_run(
                    job_name=job.name, run_id=None, run_config=run_config, resolved_op_selection=None,
                    step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None,
                    root_run_id=None, parent_run_id=None,
                    tags={**job.tags, **range_tags(first, last), EXPERIMENT_TAG: experiment},
                    job_snapshot=job.job_snapshot, execution_plan_snapshot=plan,
                    parent_job_snapshot=job.parent_job_snapshot, remote_job_origin=job.get_remote_origin(),
                    job_code_origin=job.get_python_origin(), asset_selection=None, asset_check_selection=None,
                    asset_graph=repository.asset_graph,
                )
                self.instance.submit_run(run.run_id, workspace=None)
                submitted.append(run.run_id)
        return submitted

    def follow(self, dagster_run_ids: list[str],
               on_change: Callable[[dict[str, str]], None] | None = None) -> list[str]:
        """Wait until the submitted Dagster runs have finished; returns one line per run that did
        not succeed. ``on_change`` gets {dagster run id: status} whenever a status changes. Raises
        :class:`LaunchError` when runs stay queued and no daemon is alive to start them."""
        finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
        last: dict[str, str] = {}
        queued_since = time.monotonic()
        while True:
            records = self.instance.get_run_records(dg.RunsFilter(run_ids=dagster_run_ids))
            statuses = {r.dagster_run.run_id: r.dagster_run.status for r in records}
            if {k: v.value for k, v in statuses.items()} != last:
                last = {k: v.value for k, v in statuses.items()}
                if on_change:
                    on_change(last)
            if all(s in finished for s in statuses.values()):
                break
            if any(s != dg.DagsterRunStatus.QUEUED for s in statuses.values()) or self._daemon_alive():
                queued_since = time.monotonic()
            elif time.monotonic() - queued_since > DAEMON_GRACE_S:
                raise LaunchError(
                    f"{len(dagster_run_ids)} Dagster runs wait in the queue of the instance at "
                    f"{self.settings.dagster_home}, but no dagster-daemon is running for it: start "
                    "`dagster-daemon run -w workspace.yaml` with the same DAGSTER_HOME (see deploy/README.md)")
            time.sleep(FOLLOW_POLL_S)
        failures = []
        for run_id, status in statuses.items():
            if status != dg.DagsterRunStatus.SUCCESS:
                logs = self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
                failures += step_failures(e.dagster_event for e in logs if e.dagster_event) or [
                    f"Dagster run {run_id}: {status.value.lower()}"]
        return failures

    def _daemon_alive(self) -> bool:
        heartbeats = self.instance.get_daemon_heartbeats()
        beat = heartbeats.get("QUEUED_RUN_COORDINATOR")
        return beat is not None and time.time() - beat.timestamp < DAEMON_GRACE_S

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
        known = partition_keys_by_run(self.instance)
        for run_id in run_ids:
            if run_id in known:
                self.instance.delete_dynamic_partition(runs_partitions.name, known[run_id])
        if experiment in self.instance.get_dynamic_partitions(experiments_partitions.name):
            self.instance.delete_dynamic_partition(experiments_partitions.name, experiment)

    def register(self, store: TraceStore, experiment: Experiment) -> Registration:
        return register_experiment(store, self.instance, experiment)

    def trace(self, keys: list[str], experiment: str) -> list[str]:
        """Materialize the chains of the runs with these partition keys, one Dagster run per
        range of consecutive partitions; returns the failed steps."""
        job = self.defs.resolve_job_def("trace")
        order = self.instance.get_dynamic_partitions(runs_partitions.name)
        failures: list[str] = []
        for first, last in contiguous_ranges(keys, order):
            result = job.execute_in_process(
                instance=self.instance, tags={**range_tags(first, last), **self._tags(experiment)},
                run_config=self._run_config(), raise_on_error=False,
            )
            if not result.success:
                failures += step_failures(result.all_events)
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
            return ReportOutcome(None, "; ".join(step_failures(result.all_events)) or "report: unknown error")
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
        return [] if result.success else step_failures(result.all_events)
