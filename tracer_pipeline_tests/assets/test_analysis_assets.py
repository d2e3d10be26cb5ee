"""The store-wide comparison and the experiment report, materialized through Dagster."""

import dagster as dg

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.defs.assets.analysis import experiment_report, store_comparison
from tracer_pipeline.defs.jobs import TRACE_ASSETS
from tracer_pipeline.defs.partitions import range_tags
from tracer_pipeline.defs.registration import register_experiment

CONFIG = {
    "name": "analysis", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2, 3],
    "prompts": ["a red balloon", "a quiet harbour"], "embedding_models": ["DummyEmbed"], "max_length": 8,
}


def test_report_answers_the_four_questions_in_the_ui_and_on_disk(instance, resources, settings):
    store = resources["store"].get_store()
    ids = register_experiment(store, instance, parse_experiment(CONFIG, "x")).partition_keys
    assert dg.materialize(TRACE_ASSETS, instance=instance, resources=resources,
                          tags=range_tags(ids[0], ids[-1])).success
    result = dg.materialize([*TRACE_ASSETS, store_comparison, experiment_report], instance=instance,
                            resources=resources, partition_key="analysis",
                            selection=[store_comparison, experiment_report])
    assert result.success
    comparison = store.comparison("DummyEmbed")
    assert len(comparison.run_ids) == 12 and comparison.matrices[(1, "wasserstein")].shape == (12, 12)
    [report_event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["experiment_report"]]
    markdown = report_event.materialization.metadata["report"].value
    for heading in ("## 1. How did it get here", "## 2. Is it stuck?", "## 3. Has it done this before?",
                    "## 4. Which part has the biggest impact?"):
        assert heading in markdown
    assert "data:image/png;base64," in markdown
    on_disk = settings.data_dir / "reports" / "analysis" / "report.md"
    assert on_disk.exists() and (on_disk.parent / "drift.png").exists()
    assert "![drift](drift.png)" in on_disk.read_text()
    tables = store.report_tables(["analysis"])
    assert len(tables["run_metrics"]) == 12 and all(r["experiment"] == "analysis" for r in tables["run_metrics"])


def _events(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()}


def _data_version(instance, asset: str, partition: str | None = None) -> str:
    record = instance.get_latest_data_version_record(dg.AssetKey(asset), partition_key=partition)
    return record.asset_materialization.tags["dagster/data_version"]


def test_comparison_and_report_are_recomputed_only_when_their_inputs_change(instance, resources, settings):
    store = resources["store"].get_store()
    experiment = parse_experiment({**CONFIG, "seeds": [1, 2]}, "x")
    ids = register_experiment(store, instance, experiment).partition_keys
    assets = [*TRACE_ASSETS, store_comparison, experiment_report]

    def trace(keys):
        assert dg.materialize(TRACE_ASSETS, instance=instance, resources=resources,
                              tags=range_tags(keys[0], keys[-1])).success

    def report():
        result = dg.materialize(assets, instance=instance, resources=resources, partition_key="analysis",
                                selection=[store_comparison, experiment_report])
        assert result.success
        return _events(result), {a: _data_version(instance, a, p) for a, p in
                                 (("store_comparison", None), ("experiment_report", "analysis"))}

    trace(ids)
    first, first_versions = report()
    folder = settings.data_dir / "reports" / "analysis"
    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert first["experiment_report"].metadata["figures_drawn"].value > 0
    assert first["experiment_report"].metadata["figures_reused"].value == 0

    # Nothing changed: both say so, keep their data versions, and the report on disk is untouched.
    again, again_versions = report()
    for asset in ("store_comparison", "experiment_report"):
        assert again[asset].metadata["skipped_already_current"].value is True
    assert "report" not in again["experiment_report"].metadata
    assert again_versions == first_versions
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == written

    # A third seed: both are recomputed; figures of data that did not change are not redrawn.
    more = register_experiment(store, instance, parse_experiment(CONFIG, "x")).new_partitions
    trace(more)
    third, third_versions = report()
    assert third["experiment_report"].metadata["skipped_already_current"].value is False
    assert third["store_comparison"].metadata["skipped_already_current"].value is False
    assert third_versions["store_comparison"] != first_versions["store_comparison"]
    assert third_versions["experiment_report"] != first_versions["experiment_report"]
    assert len(store.comparison("DummyEmbed").run_ids) == 12
    assert "12 runs" in (folder / "report.md").read_text()
