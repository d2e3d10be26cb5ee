"""How far runs have come: counts from what is stored (where a run starts, and ``status``'s
elapsed time, rate and time left), and the engine's own reports of what it just stored, which
keep a progress display current without querying the store while work runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tracer_pipeline.models.registry import get_model
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import RunRecord, TraceStore
from tracer_pipeline.store.schema import utcnow


def embeddable_share(run: RunRecord) -> float:
    """How many embeddings an invocation of this run gets, on average over its network: each
    output is embedded by every embedding model that can embed its modality."""
    outputs = {get_model(m).output_modality for m in run.network}
    return sum(len(outputs & get_model(e).embeds) for e in run.embedding_models) / len(outputs)


def progress_counts(store: TraceStore, run_ids: list[str]) -> dict[str, tuple[int, int | None]]:
    """(done, expected total) of runs, invocations, embeddings and diagrams of these runs.

    A run that stopped early (stuck or failed) will not reach its target, so its target is what
    it stored; one still to run is expected to reach its ``max_length``, each invocation
    embedded as its network's outputs are. The diagrams' total is not known in advance (None).
    """
    runs = store.get_runs(run_ids)
    counts = store.counts(run_ids)
    finished = [r for r in runs if RunStatus(r.status).finished]
    stored = {r.run_id: counts[r.run_id]["invocations"] for r in runs}
    target = {r.run_id: stored[r.run_id] if r in finished and r.status != RunStatus.COMPLETE
              else max(r.max_length, stored[r.run_id]) for r in runs}
    return {
        "runs": (len(finished), len(runs)),
        "invocations": (sum(stored.values()), sum(target.values())),
        "embeddings": (sum(counts[r.run_id]["embeddings"] for r in runs),
                       sum(int(round(target[r.run_id] * embeddable_share(r))) for r in runs)),
        "diagrams": (sum(counts[r.run_id]["diagrams"] for r in runs), None),
    }


@dataclass(frozen=True)
class ExperimentProgress:
    name: str
    runs: int
    by_status: dict[RunStatus, int]
    invocations: int
    embeddings: int
    diagrams: int
    remaining_invocations: int
    elapsed_s: float
    eta_s: float | None  # None: no rate measured yet

    @property
    def done(self) -> int:
        return self.by_status[RunStatus.COMPLETE] + self.by_status[RunStatus.STUCK]


def experiment_progress(store: TraceStore, name: str, now: datetime | None = None) -> ExperimentProgress:
    """Counts per status, what is stored, and the time left at the rate measured so far
    (invocations per second since the first run started)."""
    store.require_experiment(name)
    run_ids = store.experiment_run_ids(name)
    runs = store.get_runs(run_ids)
    counts = store.counts(run_ids)
    by_status = {status: sum(r.status == status for r in runs) for status in RunStatus}
    stored = sum(counts[r.run_id]["invocations"] for r in runs)
    remaining = sum(max(0, r.max_length - counts[r.run_id]["invocations"]) for r in runs
                    if not RunStatus(r.status).finished)
    starts = [r.started_at for r in runs if r.started_at]
    ends = [r.completed_at for r in runs if r.completed_at]
    active = by_status[RunStatus.RUNNING] or by_status[RunStatus.PENDING]
    last = max(ends) if ends and not active else (now or utcnow())
    elapsed = (last - min(starts)).total_seconds() if starts else 0.0
    rate = stored / elapsed if elapsed > 0 and stored else 0.0
    # Nothing computing (every unfinished run interrupted or pending): no time left to estimate.
    eta = 0.0 if not remaining else (remaining / rate if rate and by_status[RunStatus.RUNNING] else None)
    return ExperimentProgress(
        name=name, runs=len(runs), by_status=by_status, invocations=stored,
        embeddings=sum(counts[r.run_id]["embeddings"] for r in runs),
        diagrams=sum(counts[r.run_id]["diagrams"] for r in runs),
        remaining_invocations=remaining, elapsed_s=elapsed, eta_s=eta,
    )


class ProgressListener(Protocol):
    def advance(self, what: str, amount: int, run_id: str | None) -> None:
        """``what``: ``invocations``, ``embeddings`` or ``diagrams`` stored, ``runs`` finished,
        ``shortfall``: invocations a run stopped short of its target (stuck or failed), or
        ``pairs_planned`` and ``pairs``: diagram distances a comparison is about to compute and
        has computed (``reporting.compare.pairs_progress``)."""


_listeners: list[ProgressListener] = []


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Send the engine's progress reports in this process to ``listener`` while in the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def report(what: str, amount: int = 1, run_id: str | None = None) -> None:
    """Called by the engine after each commit (and by the comparisons as they go); costs nothing
    when nobody listens."""
    for listener in _listeners:
        listener.advance(what, amount, run_id)
