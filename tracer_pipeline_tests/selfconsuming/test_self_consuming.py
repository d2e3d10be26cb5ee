"""Self-consuming runs end to end on CPU: DigitsVAE cut to 6 generations with small sample
counts, stored, resumed after a simulated crash, exported and reported."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from sqlalchemy import delete

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.exports import export_data
from tracer_pipeline.models.base import LoadOptions
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.reporting.gather import experiment_data
from tracer_pipeline.reporting.report import build_report
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import GenerationRow
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.engines import run_engines

GENERATIONS = 6
SMALL = {"generator": "DigitsVAE", "samples_per_generation": 120, "epochs": 3, "classifier_epochs": 20}


def experiment(max_length: int = GENERATIONS, networks: bool = False):
    config = {"name": "ouroboros-test", "self_consuming": [SMALL], "seeds": [3],
              "embedding_models": ["DummyEmbed"], "max_length": max_length}
    if networks:
        config |= {"networks": [["DummyT2I", "DummyI2T"]], "prompts": ["a red balloon"]}
    return parse_experiment(config, "test")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[TraceStore, list[str]]:
    """A fresh store where the run computed its 6 generations in one go."""
    store = TraceStore(f"sqlite:///{tmp_path_factory.mktemp('straight') / 'a.sqlite'}")
    run_ids = store.register_experiment(experiment())
    outcomes = run_engines(store, ModelPool(LoadOptions()), run_ids)
    assert outcomes[run_ids[0]].status == RunStatus.COMPLETE
    embed_runs(store, ModelPool(LoadOptions()), run_ids)
    return store, run_ids


def _matrix(store: TraceStore, run_id: str) -> np.ndarray:
    rows = store.cross_accuracy([run_id])
    matrix = np.full((GENERATIONS, GENERATIONS), np.nan)
    for row in rows:
        matrix[row["trained_generation"], row["evaluated_generation"]] = row["accuracy"]
    return matrix


def test_six_generations_fill_the_cross_accuracy_matrix_and_label_frequencies(straight) -> None:
    store, [run_id] = straight
    rows = store.cross_accuracy([run_id])
    pairs = {(r["trained_generation"], r["evaluated_generation"]) for r in rows}
    assert len(rows) == 36 and pairs == {(i, j) for i in range(6) for j in range(6)}
    # Generation 0's classifier on its held-out fifth of the real digits.
    assert _matrix(store, run_id)[0, 0] >= 0.85
    frequencies = pl.DataFrame(store.label_frequencies([run_id]))
    per_generation = frequencies.group_by("generation", "classifier").agg(pl.col("count").sum(), pl.len())
    assert sorted(per_generation["generation"].unique().to_list()) == list(range(6))
    assert set(per_generation["classifier"]) == {"initial", "current"}
    assert set(per_generation["len"]) == {10}  # every digit label, zeros included
    totals = {(r["generation"], r["classifier"]): r["count"] for r in per_generation.to_dicts()}
    assert totals[(0, "current")] == 1797 and totals[(5, "initial")] == 120


def test_each_generation_is_an_invocation_holding_a_grid_of_its_samples(straight) -> None:
    store, [run_id] = straight
    invocations = store.invocations(run_id)
    assert [i.sequence_number for i in invocations] == list(range(6))
    assert {i.model for i in invocations} == {"DigitsVAE"} and all(i.output_type == "image" for i in invocations)
    grids = [Image.open(io.BytesIO(i.output_image)) for i in invocations]
    assert {g.size for g in grids} == {(288, 288)}
    assert len({i.output_sha256 for i in invocations}) == 6
    assert len(store.trajectory(run_id, "DummyEmbed")[0]) == 6  # embedded like any image


def test_two_fresh_stores_hold_identical_matrices_even_after_a_crash_and_resume(straight, tmp_path: Path) -> None:
    store, [run_id] = straight
    other = TraceStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    pool = ModelPool(LoadOptions())
    other.register_experiment(experiment(max_length=3))
    run_engines(other, pool, [run_id])
    # A crash after generation 2's invocation, before its figures: the invocation is not kept.
    with other.session() as s:
        s.execute(delete(GenerationRow).where(GenerationRow.run_id == run_id, GenerationRow.generation == 2))
    other.register_experiment(experiment())
    outcome = run_engines(other, pool, [run_id])[run_id]
    assert (outcome.stored_before, outcome.computed, outcome.status) == (2, 4, RunStatus.COMPLETE)
    np.testing.assert_array_equal(_matrix(other, run_id), _matrix(store, run_id))
    assert other.label_frequencies([run_id]) == store.label_frequencies([run_id])
    assert [i.output_sha256 for i in other.invocations(run_id)] == [i.output_sha256 for i in store.invocations(run_id)]
    assert [g.generator_state for g in other.generations(run_id)] == [
        g.generator_state for g in store.generations(run_id)]


def test_a_stored_run_is_not_computed_again(straight) -> None:
    store, [run_id] = straight
    outcome = run_engines(store, ModelPool(LoadOptions()), [run_id])[run_id]
    assert (outcome.stored_before, outcome.computed) == (6, 0)


def test_export_data_writes_cross_accuracy_and_label_frequencies(straight, tmp_path: Path) -> None:
    store, run_ids = straight
    paths = export_data(store, run_ids, tmp_path)
    cross = pl.read_parquet(paths["cross_accuracy"])
    assert cross.columns == ["run_id", "trained_generation", "evaluated_generation", "accuracy"]
    assert cross.height == 36
    labels = pl.read_parquet(paths["label_frequencies"])
    assert labels.columns == ["run_id", "generation", "classifier", "label", "count"]
    assert labels.height == 6 * 2 * 10 and set(labels["label"]) == {str(d) for d in range(10)}


def test_the_report_has_a_collapse_section(straight) -> None:
    store, [run_id] = straight
    report = build_report(experiment_data(store, "ouroboros-test"), None)
    assert "## 6. Self-consuming runs: does the generator collapse?" in report.markdown
    assert "**Where diversity snaps:**" in report.markdown and "at least 0.2" in report.markdown
    for name in ("collapse_cross_accuracy.png", "collapse_labels.png", "collapse_curves.png", "collapse_grids.png"):
        assert name in report.figures and f"]({name})" in report.markdown
    [row] = report.tables["collapse"]
    assert row["run_id"] == run_id and row["generations"] == 6 and row["real_accuracy"] >= 0.85
    assert len(report.tables["collapse_by_generation"]) == 6


def test_network_and_self_consuming_runs_share_one_experiment(tmp_path: Path) -> None:
    store = TraceStore(f"sqlite:///{tmp_path / 'mixed.sqlite'}")
    exp = experiment(max_length=2, networks=True)
    run_ids = store.register_experiment(exp)
    outcomes = run_engines(store, ModelPool(LoadOptions()), run_ids)
    kinds = {r.run_id: r.kind.value for r in store.get_runs(run_ids)}
    assert sorted(kinds.values()) == ["network", "self_consuming"]
    assert all(o.status == RunStatus.COMPLETE and o.computed == 2 for o in outcomes.values())
    network_run = next(r for r, k in kinds.items() if k == "network")
    assert [i.model for i in store.invocations(network_run)] == ["DummyT2I", "DummyI2T"]
    assert store.cross_accuracy([network_run]) == []
