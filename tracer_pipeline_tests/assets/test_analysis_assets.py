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
    on_disk = settings.data_dir / "reports" / "analysis" / "report.md"
    assert on_disk.exists() and (on_disk.parent / "drift.png").exists()
    assert "![drift](drift.png)" in on_disk.read_text()
    tables = store.report_tables(["analysis"])
    assert len(tables["run_metrics"]) == 12 and all(r["experiment"] == "analysis" for r in tables["run_metrics"])
