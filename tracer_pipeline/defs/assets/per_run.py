"""What every per-run asset shares: one partition per run, single-run backfills, the ``trace``
group, the ``gpu`` pool for those that run models, and an asset check described by the plain
function (in ``tracing/checks.py``) that does the checking."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence

import dagster as dg

from tracer_pipeline.defs.partitions import OWNERS, runs_partitions


def per_run_asset(
    *,
    deps: Sequence[dg.AssetsDefinition] = (),
    runs_models: bool = False,
    checks: Sequence[tuple[str, Callable]] = (),
    code_version: str = "1",
) -> Callable[[Callable], dg.AssetsDefinition]:
    """Decorate a per-run asset. ``checks`` are (check name, checking function) pairs; a
    function's docstring is its check's description in the UI. Checks are partitioned like the
    asset, so the UI shows each run's result on the check's partition bar."""

    def decorate(fn: Callable) -> dg.AssetsDefinition:
        with warnings.catch_warnings():
            # Partitioned checks are a preview feature of Dagster 1.13 (pinned): without them the
            # UI shows one result per check for all runs, not one per run.
            warnings.simplefilter("ignore", dg.PreviewWarning)
            specs = [
                dg.AssetCheckSpec(name, asset=fn.__name__, description=" ".join(inspect.getdoc(checker).split()),
                                  partitions_def=runs_partitions)
                for name, checker in checks
            ]
        return dg.asset(
            partitions_def=runs_partitions,
            deps=list(deps),
            # A backfill of many runs is one Dagster run: the runs advance in lockstep, with
            # batched model calls and the models loaded once.
            backfill_policy=dg.BackfillPolicy.single_run(),
            code_version=code_version,
            group_name="trace",
            pool="gpu" if runs_models else None,
            kinds={"pytorch", "sqlite"} if runs_models else {"sqlite"},
            check_specs=specs or None,
            owners=OWNERS,
        )(fn)

    return decorate
