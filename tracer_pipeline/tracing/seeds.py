"""The seed each invocation of a run is given: the one rule, used by the engine and checked on resume."""

from __future__ import annotations

import hashlib

from tracer_pipeline.store import RunRecord

SEED_BITS = 63


def invocation_seed(run: RunRecord, sequence_number: int) -> int:
    """The seed of invocation ``sequence_number`` of ``run``.

    With ``seed_mode`` "fixed" it is the run's seed, so the run is the orbit of a deterministic
    map. With "per_invocation" it is the first 63 bits of sha256("<run seed>:<sequence number>"):
    a fresh, reproducible seed per invocation (a hash rather than ``seed + i``, so that the runs
    with seeds 1 and 2 do not share all but one of their invocations' seeds).
    """
    if run.seed_mode == "fixed":
        return run.seed
    digest = hashlib.sha256(f"{run.seed}:{sequence_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)
