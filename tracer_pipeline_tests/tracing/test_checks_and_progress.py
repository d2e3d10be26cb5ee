"""The asset checks' rules and the progress figures, as plain functions over a store (no Dagster)."""

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import InvocationRow, RunRow, utcnow
from tracer_pipeline.tracing.checks import diagram_problems, embedding_problems, invocation_problems
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations
from tracer_pipeline.tracing.progress import experiment_progress, progress_counts

CONFIG = {
    "name": "checks", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2], "prompts": ["a red balloon"],
    "embedding_models": ["DummyEmbed"], "max_length": 6,
}


@pytest.fixture
def traced(tmp_path):
    store = TraceStore(f"sqlite:///{tmp_path / 'trace.sqlite'}")
    ids = store.register_experiment(parse_experiment(CONFIG, "x"))
    pool = ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    compute_diagrams(store, ids)
    return store, ids


def test_a_complete_store_has_no_problems(traced):
    store, ids = traced
    assert invocation_problems(store, ids) == {r: [] for r in ids}
    assert embedding_problems(store, ids) == {r: [] for r in ids}
    assert diagram_problems(ids, store.diagrams(ids)) == {r: [] for r in ids}


def test_a_gap_and_a_wrong_model_are_named_by_run(traced):
    store, ids = traced
    with store.session() as s:
        s.execute(update(InvocationRow).where(InvocationRow.run_id == ids[0], InvocationRow.sequence_number == 3)
                  .values(sequence_number=31))
        s.execute(update(InvocationRow).where(InvocationRow.run_id == ids[1], InvocationRow.sequence_number == 1)
                  .values(model="DummyT2I"))
    problems = invocation_problems(store, ids)
    [gap] = problems[ids[0]]
    assert gap.startswith("sequence numbers [0, 1, 2, 4, 5]")
    assert problems[ids[1]] == ["invocations [1] were made by the wrong model"]


def test_a_diagram_with_a_bar_born_after_it_dies_is_a_problem(traced):
    store, ids = traced
    diagram = store.diagrams(ids[:1])[0]
    diagram.points[1] = np.array([[0.5, 0.2]])
    assert diagram_problems(ids[:1], [diagram]) == {
        ids[0]: [f"DummyEmbed/{diagram.subset}: H1 has a bar born after it dies"]}


def test_progress_counts_what_is_stored(traced):
    store, ids = traced
    counts = progress_counts(store, ids)
    assert counts["runs"] == (2, 2)
    stored = sum(len(store.invocations(r)) for r in ids)
    assert counts["invocations"] == (stored, stored)  # finished runs: what they stored is their target
    assert counts["embeddings"] == (stored, stored)


def test_status_estimates_the_time_left_from_the_rate_so_far(traced):
    store, ids = traced
    start = utcnow() - timedelta(seconds=10)
    for run_id in ids:  # computed by this (live) process
        store.set_run_status(run_id, RunStatus.RUNNING)
    with store.session() as s:
        s.execute(update(RunRow).values(started_at=start, completed_at=None))
    progress = experiment_progress(store, "checks", now=start + timedelta(seconds=10))
    stored = sum(len(store.invocations(r)) for r in ids)
    assert progress.by_status[RunStatus.RUNNING] == 2 and progress.done == 0
    assert progress.remaining_invocations == 2 * 6 - stored
    assert progress.elapsed_s == pytest.approx(10)
    assert progress.eta_s == pytest.approx(progress.remaining_invocations / (stored / 10))
