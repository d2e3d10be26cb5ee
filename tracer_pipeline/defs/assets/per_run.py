"""What every per-run asset shares: one partition per run, single-run backfills, the ``trace``
group, the ``gpu`` pool for those that run models, and an asset check described by the plain
function (in ``tracing/checks.py``) that does the checking."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import dagster as dg

from tracer_pipeline.defs.partitions import OWNERS, runs_partitions


def per_run_asset(
    *,
    deps: Sequence[dg.AssetsDefinition] = (),
    runs_models: bool = False,
    check: tuple[str, Callable] | None = None,
    code_version: str = "1",
) -> Callable[[Callable], dg.AssetsDefinition]:
    """Decorate a per-run asset. ``check`` is (check name, checking function); the function's
    docstring is the check's description in the UI."""

    def decorate(fn: Callable) -> dg.AssetsDefinition:
        specs = None
        if check is not None:
            name, checker = check
            description = " ".join(inspect.getdoc(checker).split())
            specs = [dg.AssetCheckSpec(name, asset=fn.__name__, description=description)]
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
            check_specs=specs,
            owners=OWNERS,
        )(fn)

    return decorate
