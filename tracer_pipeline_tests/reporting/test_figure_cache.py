"""Figures are drawn only when their data changed, and a report built with reused figures is the
report that drawing every figure would give, byte for byte."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.figure_cache import FigureCache, figure_key
from tracer_pipeline.reporting.files import write_report
from tracer_pipeline.reporting.report import experiment_report
from tracer_pipeline_tests.reporting.runs import basis, make_run, small_experiment, wander


def _build(data: ExperimentData, figures: FigureCache | None = None) -> Report:
    return experiment_report([(data, compare_store(data.store_runs, embedding_model=data.embedding_model))], figures)


@pytest.fixture(scope="module")
def data() -> ExperimentData:
    return small_experiment(images=True)


def test_an_unchanged_report_reuses_every_figure_and_is_identical(data, tmp_path) -> None:
    fresh = _build(data)
    first_cache = FigureCache()
    first = _build(data, first_cache)
    assert first_cache.drawn == len(first.figures) and first_cache.reused == 0
    write_report(first, tmp_path, first_cache.keys(first.figures))

    cache = FigureCache.load(tmp_path)
    again = _build(data, cache)
    assert cache.drawn == 0 and cache.reused == len(fresh.figures)
    assert again.markdown == fresh.markdown
    assert again.figures == fresh.figures


def test_only_figures_whose_data_changed_are_redrawn(data, tmp_path) -> None:
    cache = FigureCache()
    write_report(report := _build(data, cache), tmp_path, cache.keys(report.figures))
    # A run of another experiment joins the store: the report changes (it is compared with the
    # store), but none of its figures shows that run.
    newcomer = make_run("old-9", wander(np.random.default_rng(5), basis(7), 10, 0.3), network=("T2I-b", "I2T"),
                        prompt="a dog", seed=9, order=-1)
    joined = dataclasses.replace(data, store_runs=[newcomer, *data.store_runs])
    cache = FigureCache.load(tmp_path)
    rebuilt = _build(joined, cache)
    assert cache.drawn == 0 and cache.reused == len(rebuilt.figures)
    fresh = _build(joined)
    assert rebuilt.markdown == fresh.markdown and rebuilt.figures == fresh.figures

    # One run's last caption changes: the figures drawn from its runs are redrawn, the factor
    # effects and divergence curves (drawn from numbers that did not change) are not.
    run = dataclasses.replace(data.runs[0], last_caption="another caption")
    recaptioned = dataclasses.replace(data, runs=[run, *data.runs[1:]],
                                      store_runs=[run if r.run_id == run.run_id else r for r in data.store_runs])
    cache = FigureCache.load(tmp_path)
    rebuilt = _build(recaptioned, cache)
    assert cache.drawn >= 1 and cache.reused >= 2
    fresh = _build(recaptioned)
    assert rebuilt.markdown == fresh.markdown and rebuilt.figures == fresh.figures


def test_a_missing_or_damaged_manifest_means_drawing_everything(data, tmp_path) -> None:
    assert FigureCache.load(tmp_path / "nowhere").get_or_draw("k", lambda: b"png") == b"png"
    (tmp_path / ".figures.json").write_text("{not json")
    cache = FigureCache.load(tmp_path)
    assert cache.get_or_draw("k", lambda: b"drawn") == b"drawn" and cache.drawn == 1


def test_figure_keys_follow_content_not_identity() -> None:
    a = {"rows": np.arange(6.0).reshape(2, 3), "label": "x"}
    b = {"rows": np.arange(6.0).reshape(2, 3), "label": "x"}
    assert figure_key("f", "code", (a,), {}) == figure_key("f", "code", (b,), {})
    b["rows"][1, 2] = 5.5
    assert figure_key("f", "code", (a,), {}) != figure_key("f", "code", (b,), {})
    assert figure_key("f", "code", (a,), {}) != figure_key("f", "other code", (a,), {})
    with pytest.raises(TypeError, match="set"):
        figure_key("f", "code", ({1, 2},), {})
    # Sequences of plain values (hashed at once) keep every value's type and content.
    keys = {figure_key("f", "code", (value,), {}) for value in
            [("1", 2), (1, 2), (True, 2), (1.0, 2), (None, 2), ("1", 3), ("1", 2, None), ("1", (2,))]}
    assert len(keys) == 8


def test_reports_written_at_once_into_one_folder_leave_one_whole_report(data, tmp_path) -> None:
    # Processes running the same experiment each write its report: none fails, and the folder
    # ends with one complete report and nothing of the others'.
    from concurrent.futures import ThreadPoolExecutor

    report = _build(data)
    folder = tmp_path / "reports" / "small"
    write_report(report, folder)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: write_report(report, folder), range(8)))
    assert set(paths) == {folder / "report.md"}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["small"]
    assert (folder / "report.md").read_text(encoding="utf-8") == report.markdown
    assert {p.name for p in folder.rglob("*.png")} == {name.rsplit("/", 1)[-1] for name in report.figures}
