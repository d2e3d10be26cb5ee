"""What can go wrong in a store that lives for weeks, found and repaired: plain functions over the
store, each returning the problems it found, named by run id.

A repair deletes what is damaged and what was derived from it (an invocation's embeddings, the
diagrams of a changed trajectory), so that the next ``run-experiment`` recomputes it exactly as it
would have been computed the first time; nothing is patched in place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.diagrams import tda_params, trajectory_subsets

SHOWN = 5  # sequence numbers named in one problem's line
RUNS_PER_READ = 256  # runs whose diagrams and trajectories are read together


@dataclass(frozen=True)
class Problem:
    """One problem in the store; ``repair`` deletes what is damaged and derived from it."""

    check: str
    run_id: str | None
    detail: str
    repair: Callable[[TraceStore], None] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.run_id or '(store)'}: {self.check}: {self.detail}"


def _listed(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:SHOWN])
    return shown + (f" and {len(numbers) - SHOWN} more" if len(numbers) > SHOWN else "")


def sequence_gaps(store: TraceStore) -> list[Problem]:
    """A run's invocations must be numbered 0..n-1: each is computed from the one before."""
    problems = []
    for run_id, outline in store.invocation_outlines().items():
        numbers = [seq for seq, *_ in outline]
        first = next((i for i, n in enumerate(numbers) if n != i), None)
        if first is None:
            continue

        def repair(s: TraceStore, run_id: str = run_id, first: int = first) -> None:
            s.delete_invocations_from(run_id, first)
            s.set_run_status(run_id, RunStatus.PENDING)

        later = [n for n in numbers if n > first]
        problems.append(Problem("sequence gap", run_id,
                                f"invocation {first} is missing, {len(later)} later ones are stored "
                                f"({_listed(later)}); repair deletes them from {first} on", repair))
    return problems


def bad_vectors(store: TraceStore) -> list[Problem]:
    """Every stored vector is finite and has its embedding model's dimension: the one most of
    that model version's vectors have, and the one recorded with it."""
    seen = [(e.run_id, e.sequence_number, e.embedding_model, e.model_version, e.id, e.dimension,
             int(e.vector.size), bool(np.all(np.isfinite(e.vector)))) for e in store.stored_embeddings()]
    lengths: dict[tuple[str, str], Counter] = {}
    for _, _, model, version, _, _, length, finite in seen:
        lengths.setdefault((model, version), Counter())[length] += finite
    usual = {key: counts.most_common(1)[0][0] for key, counts in lengths.items()}
    found: dict[tuple[str, str, str], list[tuple[int | None, int]]] = {}
    for run_id, seq, model, version, row_id, recorded, length, finite in seen:
        if not finite:
            found.setdefault((run_id, model, "non-finite vector"), []).append((seq, row_id))
        elif length != usual[(model, version)] or (recorded is not None and recorded != length):
            found.setdefault((run_id, model, "wrong dimension"), []).append((seq, row_id))
    problems = []
    for (run_id, model, check), rows in sorted(found.items()):
        outputs = sorted(seq for seq, _ in rows if seq is not None)
        embedding_ids = [i for seq, i in rows if seq is not None]
        reference_ids = [i for seq, i in rows if seq is None]
        where = [f"invocations {_listed(outputs)}"] if outputs else []
        where += ["the initial input"] if reference_ids else []

        def repair(s: TraceStore, ids: list[int] = embedding_ids, refs: list[int] = reference_ids) -> None:
            s.delete_embedding_rows(ids, refs)

        problems.append(Problem(check, run_id, f"{model} on {' and '.join(where)}", repair))
    return problems


def orphans(store: TraceStore) -> list[Problem]:
    """Rows that point at what is not stored, and runs that no experiment names."""
    problems = []
    for orphan in store.orphans():
        runs = f" (runs {', '.join(orphan.run_ids[:SHOWN])}{' …' if len(orphan.run_ids) > SHOWN else ''})"
        problems.append(Problem("orphans", None, f"{orphan.count} {orphan.what} in {orphan.table}"
                                + (runs if orphan.run_ids else ""), lambda s: s.delete_orphans()))
    return problems


def stale_diagrams(store: TraceStore) -> list[Problem]:
    """A diagram must have been computed from the embeddings stored now: its recorded input
    digest is that of the current trajectory. Runs are read in groups of :data:`RUNS_PER_READ`."""
    problems = []
    runs = store.get_runs()
    for start in range(0, len(runs), RUNS_PER_READ):
        group = runs[start : start + RUNS_PER_READ]
        stored_of = store.diagram_keys_of([run.run_id for run in group])
        current = _current_digests(store, stored_of)
        for run in group:
            _, params_hash = tda_params(run.max_homology_dim)
            for (model, subset, stored_params), digest in sorted(stored_of[run.run_id].items()):
                readable = (run.run_id, model) in current
                if stored_params == params_hash and readable and current[(run.run_id, model)].get(subset) != digest:

                    def repair(s: TraceStore, run_id: str = run.run_id, model: str = model,
                               subset: str = subset) -> None:
                        s.delete_diagram(run_id, model, subset)

                    problems.append(Problem("diagram of changed inputs", run.run_id,
                                            f"{model}/{subset} was computed from embeddings no longer stored", repair))
    return problems


def _current_digests(store: TraceStore, stored_of: dict[str, dict[tuple[str, str, str], str]]
                     ) -> dict[tuple[str, str], dict[str, str]]:
    """(run id, embedding model) → subset → digest of the trajectory stored now, for each model
    a run has diagrams of; none for a run whose vectors are of different lengths (bad_vectors
    names them, and its repair these diagrams)."""
    runs_of: dict[str, list[str]] = {}
    for run_id, stored in stored_of.items():
        for model in dict.fromkeys(model for model, _, _ in stored):
            runs_of.setdefault(model, []).append(run_id)
    current: dict[tuple[str, str], dict[str, str]] = {}
    for model, run_ids in runs_of.items():
        try:
            trajectories = store.trajectories(run_ids, model)
        except ValueError:  # some run's vectors do not stack: read the runs one by one
            trajectories = {}
            for run_id in run_ids:
                try:
                    trajectories[run_id] = store.trajectory(run_id, model)
                except ValueError:
                    continue
        for run_id, trajectory in trajectories.items():
            subsets = trajectory_subsets(*trajectory)
            current[(run_id, model)] = {subset: digest for subset, (_, digest) in subsets.items()}
    return current


def interrupted_runs(store: TraceStore) -> list[Problem]:
    """A run marked running must have a live process computing it."""
    return [Problem("marked running, no live process", run.run_id, run.stop_reason or "interrupted",
                    lambda s, run_id=run.run_id: s.set_run_status(run_id, RunStatus.PENDING))
            for run in store.get_runs() if run.status == RunStatus.INTERRUPTED]


CHECKS: tuple[Callable[[TraceStore], list[Problem]], ...] = (
    orphans, sequence_gaps, bad_vectors, stale_diagrams, interrupted_runs,
)


def find_problems(store: TraceStore) -> list[Problem]:
    """Every problem every check finds, orphans first (their repair may cover later ones)."""
    return [problem for check in CHECKS for problem in check(store)]


def repair(store: TraceStore, problems: list[Problem]) -> None:
    """Repair each problem in turn; repairs are deletions, so one already covered is a no-op."""
    for problem in problems:
        problem.repair(store)
