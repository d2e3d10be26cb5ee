"""The store's doctor, deleting and copying an experiment, and runs whose process is gone."""

import sqlite3
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore, vector_to_bytes
from tracer_pipeline.store.copy import copy_experiment
from tracer_pipeline.store.schema import EmbeddingRow, ExperimentRow, InvocationRow, RunLeaseRow, utcnow
from tracer_pipeline.tracing import doctor
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.doctor import find_problems, repair
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations

CONFIG = {"name": "doc", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2],
          "prompts": ["a red balloon", "a quiet harbour"], "embedding_models": ["DummyEmbed"], "max_length": 6}


def trace(store, pool, run_ids):
    run_invocations(store, pool, run_ids)
    embed_runs(store, pool, run_ids)
    compute_diagrams(store, run_ids)


def snapshot(store):
    return {r.run_id: ([i.output_sha256 for i in store.invocations(r.run_id)],
                       store.trajectory(r.run_id, "DummyEmbed")[2].tobytes(), store.diagram_keys(r.run_id))
            for r in store.get_runs()}


@pytest.fixture
def traced(tmp_path):
    store = TraceStore(f"sqlite:///{tmp_path / 'doc.sqlite'}")
    pool = ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))
    ids = store.register_experiment(parse_experiment(CONFIG, "doc.json"))
    trace(store, pool, ids)
    return store, pool, ids


def test_doctor_finds_a_gap_and_a_nan_vector_and_the_repair_and_rerun_restore_the_same_store(traced):
    store, pool, ids = traced
    assert find_problems(store) == []
    before = snapshot(store)
    gap_run, nan_run = ids[0], ids[1]
    path = store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:  # as a tool without the store's foreign keys would
        raw.execute("DELETE FROM invocations WHERE run_id = ? AND sequence_number = 2", (gap_run,))
    with store.session() as s:
        row = s.scalars(select_embedding(nan_run, 3)).one()
        row.vector = vector_to_bytes(np.full(row.dimension, np.nan, dtype=np.float32))
    problems = [str(p) for p in find_problems(store)]
    assert any(p.startswith(f"{gap_run}: sequence gap: invocation 2 is missing") for p in problems)
    assert f"{nan_run}: non-finite vector: DummyEmbed on invocations 3" in problems
    repair(store, find_problems(store))
    trace(store, pool, ids)
    assert find_problems(store) == []
    assert snapshot(store) == before  # recomputed exactly as the first time


def select_embedding(run_id, seq):
    return (select(EmbeddingRow).join(InvocationRow, InvocationRow.id == EmbeddingRow.invocation_id)
            .where(InvocationRow.run_id == run_id, InvocationRow.sequence_number == seq))


def test_a_stored_nan_vector_is_recomputed_by_the_next_embedding_pass(traced):
    store, pool, ids = traced
    good = store.trajectory(ids[0], "DummyEmbed")[2].copy()
    with store.session() as s:
        s.scalars(select_embedding(ids[0], 1)).one().vector = vector_to_bytes(np.full(64, np.inf, dtype=np.float32))
    outcome = embed_runs(store, pool, [ids[0]])[ids[0]]
    assert outcome.stale_replaced == 1 and outcome.computed == 1
    assert np.array_equal(store.trajectory(ids[0], "DummyEmbed")[2], good)
    with pytest.raises(Exception, match="NaN or infinity"):
        store.add_embeddings("DummyEmbed", "1", {1: np.full(64, np.nan)})


@pytest.mark.parametrize("runs_per_read", [1, 256])  # each run alone, or all runs in one read
def test_doctor_finds_wrong_dimensions_orphans_and_diagrams_of_changed_inputs(traced, runs_per_read, monkeypatch):
    monkeypatch.setattr(doctor, "RUNS_PER_READ", runs_per_read)
    store, _, ids = traced
    with store.session() as s:
        s.scalars(select_embedding(ids[0], 0)).one().vector = vector_to_bytes(np.ones(63) / np.sqrt(63))
        s.scalars(select_embedding(ids[1], 0)).one().vector = vector_to_bytes(np.eye(64)[5])
    store.register_experiment(parse_experiment({**CONFIG, "name": "gone", "seeds": [9]}, "gone.json"))
    with store.session() as s:  # as a tool without the store's foreign keys would leave it
        s.execute(delete(ExperimentRow).where(ExperimentRow.name == "gone"))
    problems = [str(p) for p in find_problems(store)]
    assert f"{ids[0]}: wrong dimension: DummyEmbed on invocations 0" in problems
    assert any(p.startswith(f"{ids[1]}: diagram of changed inputs: DummyEmbed/all") for p in problems)
    # ids[0]'s vectors do not stack: its diagrams are bad_vectors' to repair, not named stale
    assert not any(p.startswith(f"{ids[0]}: diagram of changed inputs") for p in problems)
    assert not any(": diagram of changed inputs" in p for p in problems if p.split(":")[0] not in ids[:2])
    assert any("runs that no experiment names in runs" in p for p in problems)
    repair(store, find_problems(store))
    assert find_problems(store) == []
    assert len(store.get_runs()) == len(ids)


def test_a_run_whose_process_was_killed_reads_as_interrupted_at_once(traced):
    store, _, ids = traced
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.set_run_status(ids[0], RunStatus.RUNNING)
    store.set_run_status(ids[1], RunStatus.RUNNING)
    assert {r.status for r in store.get_runs(ids[:2])} == {RunStatus.RUNNING}  # this process: alive
    with store.session() as s:
        s.execute(update(RunLeaseRow).where(RunLeaseRow.run_id == ids[0]).values(pid=int(dead.stdout)))
        s.execute(update(RunLeaseRow).where(RunLeaseRow.run_id == ids[1])
                  .values(host="elsewhere", heartbeat_at=utcnow() - timedelta(minutes=10)))
    killed, silent = store.get_runs(ids[:2])
    assert killed.status == silent.status == RunStatus.INTERRUPTED
    assert f"process {int(dead.stdout)}" in killed.stop_reason and "run the experiment again" in killed.stop_reason
    reader = TraceStore(store.url, read_only=True)
    assert reader.get_run(ids[0]).status == RunStatus.INTERRUPTED  # every reader, at once
    assert {p.check for p in find_problems(store)} == {"marked running, no live process"}
    repair(store, find_problems(store))
    assert store.get_run(ids[0]).status == RunStatus.PENDING


def test_deleting_one_of_two_experiments_keeps_the_runs_the_other_names(traced, tmp_path):
    store, pool, ids = traced
    other = parse_experiment({**CONFIG, "name": "other", "seeds": [1, 7]}, "other.json")
    other_ids = store.register_experiment(other)
    trace(store, pool, other_ids)
    shared = set(ids) & set(other_ids)
    assert shared and set(ids) - shared
    deleted, kept = store.delete_experiment("doc")
    assert set(kept) == shared and set(deleted) == set(ids) - shared
    assert {r.run_id for r in store.get_runs()} == set(other_ids)
    assert store.experiment_names() == ["other"]
    assert all(store.get_run(r).experiments == ("other",) for r in shared)
    assert store.invocations(deleted[0]) == [] and store.diagrams(deleted) == []
    assert find_problems(store) == []


def test_copy_makes_a_new_store_holding_one_experiment_and_its_lineage(traced, tmp_path):
    store, pool, ids = traced
    store.register_experiment(parse_experiment({**CONFIG, "name": "other", "seeds": [7]}, "other.json"))
    copied = copy_experiment(store, "doc", f"sqlite:///{tmp_path / 'subset.sqlite'}")
    assert copied["runs"] == len(ids) and copied["experiments"] == 1
    subset = TraceStore(f"sqlite:///{tmp_path / 'subset.sqlite'}", read_only=True)
    assert subset.experiment_names() == ["doc"]
    assert snapshot(subset) == {r: v for r, v in snapshot(store).items() if r in ids}
    inv = subset.invocations(ids[0])
    assert [i.input_invocation_id for i in inv[1:]] == [i.id for i in inv[:-1]]
    with pytest.raises(Exception, match="already holds experiments"):
        copy_experiment(store, "other", f"sqlite:///{tmp_path / 'subset.sqlite'}")
