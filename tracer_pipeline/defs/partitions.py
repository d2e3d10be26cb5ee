import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

# Who answers for the assets, shown in the UI; change it to your team or email address.
OWNERS = ["team:tracer-pipeline"]

# One key per run (its run id): every per-run asset shares it, so one Dagster run can carry a
# run's whole chain (and several runs' chains in lockstep) with the models loaded once.
runs_partitions = dg.DynamicPartitionsDefinition(name="runs")

# One key per experiment name, for the per-experiment analysis and report.
experiments_partitions = dg.DynamicPartitionsDefinition(name="experiments")


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one Dagster run cover the partitions from ``first`` to ``last``."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
