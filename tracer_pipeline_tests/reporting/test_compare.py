"""The store-wide comparison: diagram distances reused incrementally, attractors, nearest earlier runs."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from tracer_pipeline.reporting import compare
from tracer_pipeline.reporting.compare import (
    compare_store,
    diagram_hash,
    nearest_earlier_by_diagram,
    nearest_earlier_by_end_state,
)
from tracer_pipeline.reporting.measures import end_state
from tracer_pipeline_tests.reporting.runs import DIM, basis, make_run, unit, wander


def _runs(count: int) -> list:
    return [make_run(f"r{i}", wander(np.random.default_rng(i), basis(i % DIM), 12, 0.4), seed=i, order=i)
            for i in range(count)]


def test_diagram_hash_depends_on_the_bars_only() -> None:
    diagram = {0: np.array([[0.0, 0.5], [0.0, np.inf]]), 1: np.array([[0.25, 0.375]])}
    same = {1: np.array([[0.25, 0.375]], dtype=np.float32), 0: np.array([[0.0, 0.5], [0.0, np.inf]])}
    assert diagram_hash(diagram) == diagram_hash(same)
    assert diagram_hash(diagram) != diagram_hash({**diagram, 1: np.array([[0.25, 0.5]])})
    assert diagram_hash(diagram) != diagram_hash({0: diagram[0]})


def test_incremental_comparison_reuses_unchanged_rows_and_equals_a_fresh_one() -> None:
    runs = _runs(5)
    fresh = compare_store(runs, embedding_model="m")
    assert set(fresh.matrices) == {(d, m) for d in (0, 1) for m in ("bottleneck", "wasserstein")}
    for matrix in fresh.matrices.values():
        assert matrix.shape == (5, 5)
        np.testing.assert_allclose(matrix, matrix.T)
        assert np.all(np.diag(matrix) == 0)

    previous = compare_store(runs[:3], embedding_model="m")
    incremental = compare_store(runs, previous=previous)
    assert incremental.embedding_model == "m"
    assert incremental.diagram_hashes == fresh.diagram_hashes
    for key, matrix in fresh.matrices.items():
        np.testing.assert_allclose(incremental.matrices[key], matrix, rtol=1e-12, atol=1e-12)

    # A marked value in the previous matrix comes back: kept pairs are copied, not recomputed.
    marked = {key: matrix.copy() for key, matrix in previous.matrices.items()}
    marked[(1, "wasserstein")][0, 1] = marked[(1, "wasserstein")][1, 0] = 123.0
    reused = compare_store(list(reversed(runs)), previous=dataclasses.replace(previous, matrices=marked))
    assert reused.run_ids == tuple(r.run_id for r in reversed(runs))
    assert reused.matrices[(1, "wasserstein")][4, 3] == 123.0

    # A run whose diagram changed is compared again; one made with another embedding model is ignored.
    changed = [*runs[:2], make_run("r2", wander(np.random.default_rng(42), basis(7), 12, 0.4), order=2), *runs[3:]]
    again = compare_store(changed, previous=dataclasses.replace(previous, matrices=marked))
    expected = compare_store(changed, embedding_model="m")
    np.testing.assert_allclose(again.matrices[(1, "bottleneck")], expected.matrices[(1, "bottleneck")])
    assert compare_store(runs, previous=dataclasses.replace(previous, matrices=marked),
                         embedding_model="other").matrices[(1, "wasserstein")][0, 1] != 123.0


def test_comparison_needs_an_embedding_model() -> None:
    with pytest.raises(ValueError, match="embedding_model"):
        compare_store(_runs(2))


def test_runs_ending_on_the_same_output_form_an_attractor() -> None:
    rng = np.random.default_rng(3)
    end = wander(rng, basis(2), 2, 0.3)  # one image embedding, one text embedding
    runs = [make_run(f"same{i}", np.vstack([wander(rng, basis(0), 4, 0.3), end]), seed=i, order=i) for i in range(3)]
    runs.append(make_run("elsewhere", wander(rng, basis(9), 6, 0.3), seed=9, order=3))
    runs.append(make_run("empty", np.zeros((0, DIM)), seed=10, order=4, status="failed"))
    comparison = compare_store(runs, embedding_model="m")

    assert {(a.modality, a.run_ids) for a in comparison.attractors} == {
        ("image", ("same0", "same1", "same2")), ("text", ("same0", "same1", "same2"))}
    assert all(a.mean_distance_to_medoid == 0.0 for a in comparison.attractors)

    by_end = nearest_earlier_by_end_state(runs, "text")
    assert "empty" not in by_end
    assert by_end["same0"] == []
    assert by_end["same2"] == [("same0", 0.0)]  # ties go to the earlier run
    by_shape = nearest_earlier_by_diagram(comparison, runs, k=2)
    assert by_shape.unproven == ()
    assert by_shape.found["same0"] == []
    assert len(by_shape.found["elsewhere"]) == 2
    assert {run_id for run_id, _ in by_shape.found["elsewhere"]} <= {"same0", "same1", "same2"}


def test_end_state_is_the_last_output_of_the_modality() -> None:
    rows = np.stack([unit(basis(i) + 0.1 * basis(i + 1)) for i in range(5)])
    run = make_run("r", rows)  # image, text, image, text, image
    np.testing.assert_allclose(end_state(run, "text"), rows[3])
    np.testing.assert_allclose(end_state(run, "image"), rows[4])


def test_above_the_all_pairs_limit_the_comparison_keeps_a_sample_and_each_runs_nearest(monkeypatch) -> None:
    """Above the limit the matrices are those of the fixed sample (the all-pairs values of its
    runs), and each run's nearest earlier run is searched among candidates and kept with the
    comparison: where proven it is the all-pairs answer, and with every earlier run a candidate
    every answer is proven."""
    runs = _runs(40)
    full = compare_store(runs, embedding_model="m")
    exact = nearest_earlier_by_diagram(full, runs, k=1)
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 30)
    bounded = compare_store(runs, embedding_model="m")
    sample = compare.pair_sample(runs)
    assert len(sample) == 30 and compare.pair_sample(runs) == compare.pair_sample(list(reversed(runs)))[::-1]
    assert bounded.matrix_ids == tuple(r.run_id for r in sample) and not bounded.all_pairs and full.all_pairs
    rows = [full.run_ids.index(r.run_id) for r in sample]
    assert set(bounded.matrices) == set(full.matrices)
    for key, matrix in bounded.matrices.items():
        np.testing.assert_allclose(matrix, full.matrices[key][np.ix_(rows, rows)], rtol=1e-12, atol=1e-12)
    assert set(bounded.nearest) == {r.run_id for r in runs} and bounded.unproven == frozenset()
    assert nearest_earlier_by_diagram(bounded, runs, k=1) == exact
    # More neighbours than are kept: searched when asked, the same answer as all pairs.
    assert nearest_earlier_by_diagram(bounded, runs, k=2) == nearest_earlier_by_diagram(full, runs, k=2)

    # Runs whose outputs the embedding model cannot place take no part, as in the report.
    unsuited = [dataclasses.replace(r, embedder_unsuited="blind") if r.order % 5 == 0 else r for r in runs]
    suited = [r for r in unsuited if r.embedder_unsuited is None]
    kept = compare_store(unsuited, embedding_model="m")
    assert set(kept.nearest) == {r.run_id for r in suited}
    assert nearest_earlier_by_diagram(kept, suited, k=1) == nearest_earlier_by_diagram(full, suited, k=1)

    monkeypatch.setattr(compare, "NEAREST_CANDIDATES", 3)
    few = compare_store(runs, embedding_model="m")
    found = nearest_earlier_by_diagram(few, runs, k=1)
    assert 0 < len(found.unproven) < len(runs) and set(found.unproven) == few.unproven
    for run_id, near in found.found.items():
        if run_id not in found.unproven:
            assert near == exact.found[run_id]


def _marked(comparison) -> dict:
    """The comparison's kept nearest runs with every distance replaced by 123."""
    return {run_id: tuple((other, 123.0) for other, _ in found) for run_id, found in comparison.nearest.items()}


def test_above_the_limit_the_nearest_runs_before_every_new_or_changed_run_are_kept(monkeypatch) -> None:
    """A run's nearest earlier runs depend on the runs before it only: a later comparison keeps
    them for the runs before the first new or changed run (marked values come back), searches the
    others again, and equals a fresh comparison; the sample's pairs are reused as below the limit."""
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 20)
    runs = _runs(40)
    fresh = compare_store(runs, embedding_model="m")
    previous = compare_store(runs[:30], embedding_model="m")
    incremental = compare_store(runs, previous=previous)
    assert incremental.nearest == fresh.nearest and incremental.unproven == fresh.unproven
    assert incremental.matrix_ids == fresh.matrix_ids
    for key, matrix in fresh.matrices.items():
        np.testing.assert_allclose(incremental.matrices[key], matrix, rtol=1e-12, atol=1e-12)

    marked = compare_store(runs, previous=dataclasses.replace(previous, nearest=_marked(previous)))
    for run in runs:
        kept = marked.nearest[run.run_id]
        assert kept == (_marked(previous)[run.run_id] if run.order < 30 else fresh.nearest[run.run_id])

    # A changed diagram: every run from it on is searched again, those before it keep theirs.
    changed = [*runs[:10], make_run("r10", wander(np.random.default_rng(42), basis(7), 12, 0.4), order=10), *runs[11:]]
    again = compare_store(changed, previous=dataclasses.replace(fresh, nearest=_marked(fresh)))
    expected = compare_store(changed, embedding_model="m")
    for run in changed:
        assert again.nearest[run.run_id] == (_marked(fresh)[run.run_id] if run.order < 10
                                             else expected.nearest[run.run_id])
    # A run gone (deleted): every run is searched again.
    assert compare_store(runs[1:], previous=dataclasses.replace(fresh, nearest=_marked(fresh))).nearest == \
        compare_store(runs[1:], embedding_model="m").nearest


def test_nearest_earlier_end_state_in_blocks_equals_all_pairs(monkeypatch) -> None:
    runs = _runs(30)
    whole = nearest_earlier_by_end_state(runs, "image", k=3)
    monkeypatch.setattr(compare, "END_STATE_BLOCK", 4)
    assert nearest_earlier_by_end_state(runs, "image", k=3) == whole
    assert whole["r0"] == [] and len(whole["r29"]) == 3


def test_a_comparison_reports_its_distances_as_it_goes_with_the_same_values(monkeypatch) -> None:
    """The comparison tells progress listeners how many diagram distances each computation plans
    and has done, a step of pairs at a time; computed in steps, every value is the same, and the
    command line's bar adds them up."""
    from tracer_pipeline.analysis import diagram_distances
    from tracer_pipeline.cli.progress import PairsBar
    from tracer_pipeline.tracing import progress

    runs = _runs(40)
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 30)
    whole = compare_store(runs, embedding_model="m")

    class Recorder:
        def __init__(self):
            self.events = []

        def advance(self, what, amount, run_id):
            self.events.append((what, amount))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(diagram_distances, "PAIRS_PER_STEP", 7)
    recorder, terminal = Recorder(), Terminal()
    with progress.listening(recorder), PairsBar(terminal) as bar:
        stepped = compare_store(runs, embedding_model="m")
    planned = sum(n for what, n in recorder.events if what == "pairs_planned")
    done = [n for what, n in recorder.events if what == "pairs"]
    # The sample's 435 pairs for each of 4 matrices, and 39 searches of 1 to 39 earlier runs.
    assert planned == sum(done) == 4 * 435 + sum(range(1, 40))
    assert max(done) == 7 and len(done) > planned // 7
    assert (bar.bar.n, bar.bar.total) == (planned, planned)
    assert f"{planned}/{planned}" in terminal.getvalue().splitlines()[-1]
    for key, matrix in whole.matrices.items():
        np.testing.assert_array_equal(stepped.matrices[key], matrix)
    assert stepped.nearest == whole.nearest
