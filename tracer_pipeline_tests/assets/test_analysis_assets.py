"""The store-wide comparison and the experiment report, materialized through Dagster."""

import dagster as dg

from tracer_pipeline.assets.analysis import experiment_report, store_comparison
from tracer_pipeline.config import parse_experiment
from tracer_pipeline.jobs import TRACE_ASSETS, range_tags
from tracer_pipeline.resources import ModelPoolResource, TraceStoreResource
from tracer_pipeline.tracing.registration import register_experiment

CONFIG = {
    "name": "analysis", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2, 3],
    "prompts": ["a red balloon", "a quiet harbour"], "embedding_models": ["DummyEmbed"], "max_length": 8,
}


def test_report_answers_the_four_questions_in_the_ui_and_on_disk(tmp_path, data_dir):
    resources = {"store": TraceStoreResource(db_url=f"sqlite:///{tmp_path / 'trace.sqlite'}"),
                 "models": ModelPoolResource(device="cpu", model_dir=str(tmp_path / "models"))}
    store = resources["store"].get_store()
    with dg.instance_for_test() as instance:
        ids = register_experiment(store, instance, parse_experiment(CONFIG, "x")).run_ids
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
    on_disk = data_dir / "reports" / "analysis" / "report.md"
    assert on_disk.exists() and (on_disk.parent / "drift.png").exists()
    assert "![drift](drift.png)" in on_disk.read_text()
    tables = store.report_tables(["analysis"])
    assert len(tables["run_metrics"]) == 12 and all(r["experiment"] == "analysis" for r in tables["run_metrics"])
