import re
from collections.abc import Iterable

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from tracer_pipeline.store import RunRecord

# Who answers for the assets, shown in the UI; change it to your team or email address.
OWNERS = ["team:tracer-pipeline"]

# One key per run (see run_partition_key): every per-run asset shares it, so one Dagster run can
# carry a run's whole chain (and several runs' chains in lockstep) with the models loaded once.
runs_partitions = dg.DynamicPartitionsDefinition(name="runs")

# Run keys read "s<seed>.<start>.<network>.<run id>": Dagster has no partition labels, and the UI's
# partition search matches substrings of keys, so the readable parts go into the key itself; the
# UI's partition list shortens long keys in the middle, so the seed and the prompt lead.
_KEY_FIELD = re.compile(r"[^A-Za-z0-9-]+")
PROMPT_SLUG_CHARS = 40
NETWORK_SLUG_CHARS = 60


def _slug(text: str, limit: int) -> str:
    slug = _KEY_FIELD.sub("-", text).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0] or slug[:limit]
    return slug or "x"


def run_partition_key(run: RunRecord) -> str:
    """The run's partition key: its seed, how it starts (a prompt slug, ``image``, or the run's
    kind), its network and, last, its run id, which alone identifies it, e.g.
    ``s7.a-red-circle.SceneT2I-SceneI2T.3f2a9c1e0b7d4a55``. Only ``[A-Za-z0-9.-]``, never ``...``."""
    if run.prompt is not None:
        start = _slug(run.prompt.lower(), PROMPT_SLUG_CHARS)
    elif run.initial_image is not None:
        start = "image"
    else:
        start = _slug(str(run.kind), PROMPT_SLUG_CHARS)
    network = _slug("-".join(run.network), NETWORK_SLUG_CHARS)
    return f"s{run.seed}.{start}.{network}.{run.run_id}"


def run_id_of(key: str) -> str:
    """The run id a partition key names (keys of instances made before readable keys existed are
    bare run ids, and name themselves)."""
    return key.rsplit(".", 1)[-1]


def run_ids_of(keys: Iterable[str]) -> list[str]:
    return [run_id_of(k) for k in keys]


def partition_keys_by_run(instance: dg.DagsterInstance) -> dict[str, str]:
    """Run id → its partition key, for every run partition the instance knows."""
    return {run_id_of(k): k for k in instance.get_dynamic_partitions(runs_partitions.name)}

# One key per experiment name, for the per-experiment analysis and report.
experiments_partitions = dg.DynamicPartitionsDefinition(name="experiments")


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one Dagster run cover the partitions from ``first`` to ``last``."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
