"""The experiment report answers the four questions correctly on runs whose answers are known."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from tracer_pipeline.reporting import compare
from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.report import build_report, inline_markdown
from tracer_pipeline_tests.reporting.runs import DIM, basis, make_run, small_experiment, wander

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUESTIONS = ("## 1. How did it get here", "## 2. Is it stuck?", "## 3. Has it done this before?",
             "## 4. Which part has the biggest impact?")


def _experiment(runs: list, store_runs: list | None = None) -> ExperimentData:
    return ExperimentData("known", "embedder", runs, runs if store_runs is None else store_runs)


def _metrics(report: Report) -> dict[str, dict]:
    return {row["run_id"]: row for row in report.tables["run_metrics"]}


@pytest.fixture(scope="module")
def small_report() -> Report:
    data = small_experiment(images=True)
    return build_report(data, compare_store(data.store_runs, embedding_model=data.embedding_model))


def test_report_answers_every_question_with_its_figures_and_flat_tables(small_report: Report) -> None:
    assert all(question in small_report.markdown for question in QUESTIONS)
    named = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", small_report.markdown))
    assert named == set(small_report.figures)
    assert {"drift.png", "divergence.png", "stuck_timeline.png", "recurrence.png", "contact_sheet.png",
            "distance_heatmap.png", "diagrams.png", "projection.png", "factor_effects.png"} <= named
    assert all(png.startswith(PNG_SIGNATURE) for png in small_report.figures.values())
    for name in ("run_metrics", "divergence", "factor_effects", "nearest_earlier_runs", "attractors"):
        assert small_report.tables[name], name
    for name, rows in small_report.tables.items():
        for row in rows:
            assert row.keys() == rows[0].keys(), name
            assert all(v is None or isinstance(v, str | int | float | bool) for v in row.values()), name


def test_a_network_that_reaches_a_fixed_point_is_stuck_and_has_been_there_before(small_report: Report) -> None:
    metrics = _metrics(small_report)
    stuck = [row for row in metrics.values() if row["network"] == "T2I-b → I2T"]
    assert [(row["exact_stuck_start"], row["exact_network_cycles"], row["exact_repeat_at"]) for row in stuck] == [
        (4, 1, 6)] * 4
    assert not any(row["exactly_stuck"] for row in metrics.values() if row["network"] == "T2I → I2T")
    fractions = {(r["grouping"], r["level"]): r["stuck_fraction"] for r in small_report.tables["stuck_fractions"]}
    assert fractions[("network", "T2I-b → I2T")] == 1.0
    assert fractions[("network", "T2I → I2T")] == 0.0
    assert "**4 of 8** runs with a fixed seed entered a periodic orbit — 4 a fixed point" in small_report.markdown

    # The same fixed point was reached by two earlier runs of another experiment.
    attractors = small_report.tables["attractors"]
    assert {(a["modality"], a["size"], a["experiment_runs"], a["other_runs"]) for a in attractors} == {
        ("text", 6, 4, 2), ("image", 6, 4, 2)}
    assert all(a["first_run_id"] == "old-0" and not a["first_run_in_experiment"] for a in attractors)
    nearest = {(r["run_id"], r["measure"]): r for r in small_report.tables["nearest_earlier_runs"]}
    assert nearest[("run-101", "end state (text)")]["earlier_run_id"] == "old-0"
    assert nearest[("run-101", "end state (text)")]["distance"] == 0.0
    collapse = {r["network"]: r for r in small_report.tables["diversity_collapse"]}
    assert collapse["T2I-b → I2T"]["collapsed_at"] == 4
    assert collapse["T2I → I2T"]["collapsed_at"] is None


def test_inline_markdown_shows_readable_figures_within_budget_and_links_the_rest(small_report: Report,
                                                                              tmp_path) -> None:
    import base64
    import io
    import re

    from PIL import Image

    inlined = inline_markdown(small_report, folder=tmp_path)
    shown = re.findall(r"\]\(data:image/png;base64,([^)]+)\)", inlined)
    linked = re.findall(r"figure not shown here: `([^`]+)`", inlined)
    assert shown and len(shown) + len(linked) == len(small_report.figures)
    assert len(inlined.encode()) < 700_000
    assert all(Image.open(io.BytesIO(base64.b64decode(b))).width <= 1000 for b in shown)
    assert all(path.startswith(str(tmp_path)) for path in linked)
    assert "](drift.png)" not in inlined
    two = inline_markdown(small_report, max_figures=2)
    assert two.count("](data:image/png;base64,") == 2
    assert two.count("figure not shown here") == len(small_report.figures) - 2


def test_exact_and_semantic_stuckness_start_at_the_right_step() -> None:
    rng = np.random.default_rng(0)
    walk = wander(rng, basis(0), 8, 0.5)
    # Outputs 8 and 9 repeat exactly from step 10 on: a fixed point from step 8.
    fixed = np.vstack([walk, *[np.stack([basis(6), basis(7)])] * 5])
    # From step 8 on, every output is within a hair of the same image / the same text.
    hair = 1e-3 * rng.normal(size=(8, DIM))
    settled = np.vstack([wander(rng, basis(0), 8, 0.5), np.tile(np.stack([basis(4), basis(5)]), (4, 1)) + hair])
    # The engine stopped this run at step 5 because output 5 repeated the initial prompt.
    repeated_prompt = wander(rng, basis(0), 6, 0.5)
    runs = [make_run("fixed", fixed, seed=1, order=0), make_run("settled", settled, seed=2, order=1),
            make_run("free", wander(rng, basis(0), 16, 0.5), seed=3, order=2),
            make_run("stopped", repeated_prompt, seed=4, order=3, status="stuck")]
    report = build_report(_experiment(runs), None)
    metrics = _metrics(report)

    assert metrics["fixed"]["exactly_stuck"] and metrics["fixed"]["exact_stuck_start"] == 8
    assert metrics["fixed"]["exact_period"] == 2 and metrics["fixed"]["exact_repeat_at"] == 10
    assert metrics["fixed"]["time_to_stuck"] == 8
    assert not metrics["settled"]["exactly_stuck"]
    assert metrics["settled"]["semantic_stuck_start"] == 8 and metrics["settled"]["time_to_stuck"] == 8
    assert metrics["free"]["stuck_start"] is None
    assert metrics["free"]["time_to_stuck"] == 16 and metrics["free"]["time_to_stuck_censored"]
    assert metrics["stopped"]["exact_stuck_start"] == 0 and metrics["stopped"]["exact_period"] == 6
    assert "**2 of 4** runs with a fixed seed entered a periodic orbit" in report.markdown
    assert "The engine stopped 1 of them at the repeat" in report.markdown
    assert "**2 of 4** runs, from a median step" in report.markdown  # semantically stuck: fixed and settled
    assert "has not been computed yet" in report.markdown


def test_two_seeds_diverging_exponentially_give_a_positive_unsaturated_rate() -> None:
    steps = np.arange(12)
    angle = 1e-3 * np.exp(0.25 * steps)
    # The runs sit at ±angle from a common direction: D(t) = 1 − cos 2θ ≈ 2θ², so λ ≈ 0.5.
    up = np.cos(angle)[:, None] * basis(0) + np.sin(angle)[:, None] * basis(1)
    down = np.cos(angle)[:, None] * basis(0) - np.sin(angle)[:, None] * basis(1)
    runs = [make_run("up", up, seed=1, order=0), make_run("down", down, seed=2, order=1)]
    report = build_report(_experiment(runs), None)

    (row,) = report.tables["divergence"]
    assert row["kind"] == "seed" and row["runs"] == 2 and row["common_steps"] == 12
    assert row["rate_per_invocation"] == pytest.approx(0.5, rel=0.01)
    assert row["r_squared"] > 0.999 and row["saturated"] is False
    assert "**Sensitivity to the prompt:** too few runs to say" in report.markdown


def test_eta_squared_is_one_for_the_factor_that_decides_a_feature_and_zero_for_a_balanced_other() -> None:
    rng = np.random.default_rng(5)
    runs = []
    for p, (prompt, final_angle) in enumerate((("a cat", 0.5), ("a ship", 1.0))):
        for seed in (1, 2, 3):
            last = np.cos(final_angle) * basis(0) + np.sin(final_angle) * basis(2 + seed)
            trajectory = np.vstack([wander(rng, basis(0), 7, 0.4), last])
            runs.append(make_run(f"{p}{seed}", trajectory, prompt=prompt, seed=seed, order=len(runs)))
    report = build_report(_experiment(runs), None)

    effects = {(r["outcome"], r["method"], r["factor"]): r for r in report.tables["factor_effects"]}
    assert effects[("final drift", "eta²", "prompt")]["value"] == pytest.approx(1.0)
    assert effects[("final drift", "eta²", "seed")]["value"] == pytest.approx(0.0, abs=1e-9)
    assert effects[("final drift", "eta²", "prompt")]["too_few"] is False
    network = effects[("final drift", "eta²", "network")]
    assert network["value"] is None and network["too_few"] and network["n_groups"] == 1
    permanova = effects[("H1 Wasserstein distances", "PERMANOVA", "prompt")]
    assert permanova["n"] == 6 and permanova["p_value"] is not None
    assert "- **final drift:** **prompt** explains the most, η² = **1**" in report.markdown


def test_a_one_run_experiment_says_there_are_too_few_runs() -> None:
    run = make_run("only", wander(np.random.default_rng(1), basis(0), 10, 0.4))
    report = build_report(_experiment([run]), compare_store([run], embedding_model="embedder"))
    assert all(question in report.markdown for question in QUESTIONS)
    assert "**Sensitivity to the seed:** too few runs to say" in report.markdown
    assert "**Collapse of diversity:** too few runs to say" in report.markdown
    assert "**Not answered here:** 1 run cannot separate the effect of a factor from chance" in report.markdown
    assert len(report.tables["run_metrics"]) == 1
    assert all(row["too_few"] or row["value"] is None for row in report.tables["factor_effects"])
    assert [row["modality"] for row in report.tables["drift"]] == ["image", "text"] * 5


def test_degenerate_runs_are_reported_without_failing() -> None:
    rng = np.random.default_rng(2)
    runs = [
        make_run("pending", np.zeros((0, DIM)), seed=1, order=0, status="pending"),
        make_run("one", wander(rng, basis(0), 1, 0.4), seed=2, order=1),
        make_run("two", wander(rng, basis(0), 2, 0.4), seed=3, order=2),
        make_run("failed", wander(rng, basis(0), 3, 0.4), seed=4, order=3, status="failed"),
        dataclasses.replace(make_run("no-reference", wander(rng, basis(0), 4, 0.4), seed=5, order=4), reference=None),
        dataclasses.replace(make_run("from-image", wander(rng, basis(1), 5, 0.4), seed=6, order=5), prompt=None,
                            factors={}),
    ]
    report = build_report(_experiment(runs), compare_store(runs, embedding_model="embedder"))

    assert all(question in report.markdown for question in QUESTIONS)
    metrics = _metrics(report)
    assert len(metrics) == 6
    assert metrics["pending"]["outputs"] == 0 and metrics["pending"]["time_to_stuck"] is None
    assert metrics["no-reference"]["final_drift"] is None and not metrics["no-reference"]["has_reference"]
    assert metrics["from-image"]["prompt"] == "(initial image)"
    assert "without an embedded initial prompt or image (no-refer)" in report.markdown
    assert "1 run failed" in report.markdown

    empty = build_report(_experiment([]), None)
    assert all(question in empty.markdown for question in QUESTIONS)
    assert empty.tables["run_metrics"] == []


def test_above_the_all_pairs_limit_the_report_compares_a_sample_and_says_so(monkeypatch, small_report) -> None:
    """A store over the limit has no all-pairs matrices: the report's diagram distances are those of
    a fixed sample, the nearest runs by shape come from candidates, and both are said."""
    data = small_experiment(images=True)
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 6)
    comparison = compare_store(data.store_runs, embedding_model=data.embedding_model)
    assert not comparison.all_pairs and len(comparison.matrix_ids) == 6
    report = build_report(data, comparison)
    shape = report.sections["diagram_distances"].figures
    assert shape["runs"] == 6 and shape["sampled_from"] == 8 and shape["pairs"] == 15
    nearest = report.sections["nearest_by_shape"]
    assert nearest.figures["sampled_runs"] == 6 and nearest.figures["runs_compared"] == 10
    assert "fixed sample of 6 of the experiment's 8 runs" in report.markdown
    assert "*Bounded for scale:* the store holds 10 runs with a diagram" in report.markdown
    # Every earlier run is a candidate here: the nearest runs are proven and those of all pairs.
    assert nearest.figures["unproven"] == 0
    by_shape = [r for r in report.tables["nearest_earlier_runs"] if r["measure"] == "H1 Wasserstein"]
    assert by_shape == [r for r in small_report.tables["nearest_earlier_runs"] if r["measure"] == "H1 Wasserstein"]


def test_above_the_limit_a_report_on_a_current_comparison_computes_no_diagram_distance(monkeypatch) -> None:
    """The sample's matrices and each run's nearest earlier runs are kept with the comparison, so a
    report of a store too large for all pairs reads them instead of computing them again (here
    the experiment is the whole store, so both samples are the comparison's), with the same
    findings."""
    from tracer_pipeline.analysis import nearest_runs
    from tracer_pipeline.reporting.sections import topology

    experiment = small_experiment(images=True)
    data = dataclasses.replace(experiment, store_runs=experiment.runs)
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 6)
    comparison = compare_store(data.store_runs, embedding_model=data.embedding_model)
    without_kept = build_report(data, dataclasses.replace(comparison, matrices={}, nearest=None))

    def refuse(*args, **kwargs):
        raise AssertionError("a diagram distance was computed")

    monkeypatch.setattr(topology, "diagram_distance_matrix", refuse)
    monkeypatch.setattr(nearest_runs, "diagram_distances_of_pairs", refuse)
    report = build_report(data, comparison)
    for name in ("diagram_distances", "nearest_by_shape"):
        assert report.sections[name].figures == without_kept.sections[name].figures
    assert report.tables["nearest_earlier_runs"] == without_kept.tables["nearest_earlier_runs"]


def test_the_semantic_baseline_takes_the_pairs_of_a_sample_above_the_limit(monkeypatch) -> None:
    from tracer_pipeline.reporting.measures import measure_run
    from tracer_pipeline.reporting.sections.stuck import first_output_similarity

    measures = [measure_run(r) for r in small_experiment().runs]
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 4)
    sampled = {r.run_id for r in compare.pair_sample([m.run for m in measures])}
    bounded = first_output_similarity(measures)
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 1000)
    assert bounded == first_output_similarity([m for m in measures if m.run.run_id in sampled])
    assert bounded != first_output_similarity(measures)


def test_an_experiments_distances_outside_the_comparisons_sample_are_kept_for_the_next_report(
        monkeypatch, tmp_path) -> None:
    """In a store above the limit an experiment's own runs need not be in the comparison's sample:
    their distances are computed once, kept beside the report (``.distances.npz``), and the next
    report computes only the pairs of new or changed runs, with the same findings."""
    from tracer_pipeline.reporting.distance_cache import MANIFEST, DistanceCache
    from tracer_pipeline.reporting.files import write_report
    from tracer_pipeline.reporting.report import experiment_report

    data = small_experiment()
    monkeypatch.setattr(compare, "MAX_ALL_PAIRS_RUNS", 6)
    comparison = compare_store(data.store_runs, embedding_model=data.embedding_model)
    first = DistanceCache()
    plain = build_report(data, comparison)
    kept = build_report(data, comparison, distances=first)
    assert kept.sections["diagram_distances"].figures == plain.sections["diagram_distances"].figures
    assert set(first.current) == {data.embedding_model}  # not covered by the comparison's sample: computed
    write_report(experiment_report([(data, comparison)], distances=first), tmp_path / "small", distances=first)
    assert (tmp_path / "small" / MANIFEST).is_file()
    loaded = DistanceCache.load(tmp_path / "small")
    [(key, matrix)] = loaded.previous.items()
    assert key == data.embedding_model and matrix.run_ids == first.current[key].run_ids
    np.testing.assert_array_equal(matrix.matrix, first.current[key].matrix)

    calls: list[int] = []
    computing = compare.diagram_distance_matrix

    def counted(diagrams, metric, others=None, **kwargs):
        calls.append(len(diagrams) * (len(others) if others is not None else (len(diagrams) - 1) / 2))
        return computing(diagrams, metric, others=others, **kwargs)

    monkeypatch.setattr(compare, "diagram_distance_matrix", counted)
    again = build_report(data, comparison, distances=loaded)
    assert calls == [] and set(loaded.current) == {data.embedding_model}
    assert again.sections["diagram_distances"].figures == plain.sections["diagram_distances"].figures

    # One compared run's diagram changed: only its pairs with the others are computed.
    old = compare.pair_sample(data.runs)[0]
    new = make_run(old.run_id, wander(np.random.default_rng(5), basis(4), 16, 0.35), network=old.network,
                   prompt=old.prompt, seed=old.seed, order=old.order)
    runs = [new if r.run_id == old.run_id else r for r in data.runs]
    changed = dataclasses.replace(data, runs=runs, store_runs=[*data.store_runs[:2], *runs])
    compared = compare_store(changed.store_runs, embedding_model=data.embedding_model)
    calls.clear()
    sampled = build_report(changed, compared, distances=DistanceCache.load(tmp_path / "small")).sections
    monkeypatch.setattr(compare, "diagram_distance_matrix", computing)
    assert sampled["diagram_distances"].figures == build_report(changed, compared).sections["diagram_distances"].figures
    assert sum(calls) == sampled["diagram_distances"].figures["runs"] - 1

    assert DistanceCache.load(tmp_path / "none").previous == {}
    (tmp_path / "small" / MANIFEST).write_bytes(b"not an npz")
    assert DistanceCache.load(tmp_path / "small").previous == {}
    (tmp_path / "small" / MANIFEST).write_bytes(b"PK\x03\x04 a zip cut short")
    assert DistanceCache.load(tmp_path / "small").previous == {}
