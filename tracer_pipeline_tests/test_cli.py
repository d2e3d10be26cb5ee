"""The trajectory-tracer command line, driven as a user would: in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tracer_pipeline.store import TraceStore

CONFIG = {
    "name": "cli", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2],
    "prompts": ["a red balloon", "a quiet harbour"], "embedding_models": ["DummyEmbed"], "max_length": 6,
}


def tracer(*args: str, data_dir, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TRACER_DB_URL")}
    env["TRACER_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "-m", "tracer_pipeline.cli", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One experiment run through the CLI, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "cli.json"
    config.write_text(json.dumps(CONFIG))
    result = tracer("run-experiment", str(config), data_dir=root / "data")
    return root / "data", result


def test_run_experiment_stores_everything_and_prints_a_summary(finished):
    data, result = finished
    assert "experiment cli: 8 runs (8 new)" in result.stdout
    assert "done in" in result.stdout and "8 runs (" in result.stdout
    assert (data / "dagster_home" / "dagster.yaml").exists()  # the UI's instance, created on demand
    store = TraceStore(f"sqlite:///{data / 'tracer.sqlite'}")
    assert len(store.get_runs()) == 8
    report = data / "reports" / "cli" / "report.md"
    assert f"report: {report}" in result.stdout and "## 2. Is it stuck?" in report.read_text()


def test_report_command_writes_the_report_where_asked(finished, tmp_path):
    data, _ = finished
    result = tracer("report", "cli", "--out", str(tmp_path / "out"), data_dir=data)
    assert f"report: {tmp_path / 'out' / 'report.md'}" in result.stdout
    assert (tmp_path / "out" / "drift.png").exists()
    missing = tracer("report", "nope", data_dir=data, check=False)
    assert missing.returncode == 1 and "no experiment named 'nope'" in missing.stderr


def test_report_json_says_per_embedding_model_what_each_section_can_support(finished):
    data, _ = finished
    result = tracer("report", "cli", "--json", "--embedding-model", "DummyEmbed", data_dir=data)
    document = json.loads(result.stdout)
    assert document["experiment"] == "cli" and list(document["embedding_models"]) == ["DummyEmbed"]
    sections = document["embedding_models"]["DummyEmbed"]["sections"]
    assert {"drift", "divergence", "stuck", "recurrence", "diagram_distances", "attractors", "factors",
            "clusters"} <= set(sections)
    for name, finding in sections.items():
        assert isinstance(finding["valid"], bool) and (finding["reason"] is None) == finding["valid"], name
    # Runs of at most 6 outputs: too short for a loop or a recurrence matrix, and the report says so.
    assert not sections["diagram_distances"]["valid"] and not sections["recurrence"]["valid"]
    markdown = (data / "reports" / "cli" / "report.md").read_text()
    assert f"**Not answered here:** {sections['diagram_distances']['reason']}." in markdown
    unknown = tracer("report", "cli", "--embedding-model", "SceneCLIP", data_dir=data, check=False)
    assert unknown.returncode == 2 and "experiment cli does not use SceneCLIP; it uses DummyEmbed" in unknown.stderr


def test_list_runs_json(finished):
    data, _ = finished
    rows = json.loads(tracer("list-runs", "--experiment", "cli", "--json", data_dir=data).stdout)
    assert len(rows) == 8
    assert set(rows[0]) == {"run_id", "experiments", "network", "prompt", "seed", "max_length", "invocations",
                            "embeddings", "diagrams", "status", "stop_reason"}
    by_status = {r["status"] for r in rows}
    assert by_status <= {"complete", "stuck"}
    for row in rows:
        assert row["experiments"] == ["cli"] and row["max_length"] == 6
        if row["status"] == "complete":
            assert row["invocations"] == 6 and row["stop_reason"] == "max_length reached"
        else:
            assert row["invocations"] < 6 and row["stop_reason"].startswith(("fixed point", "cycle"))
        assert row["embeddings"] == row["invocations"] and row["diagrams"] == 3
    table = tracer("list-runs", data_dir=data).stdout
    assert table.splitlines()[0].split()[:3] == ["RUN", "EXPERIMENTS", "NETWORK"]
    assert len(table.splitlines()) == 9


def test_rerunning_a_finished_experiment_computes_nothing(finished, tmp_path):
    data, _ = finished
    store = TraceStore(f"sqlite:///{data / 'tracer.sqlite'}")
    before = {r.run_id: store.invocations(r.run_id) for r in store.get_runs()}
    config = tmp_path / "cli.json"
    config.write_text(json.dumps(CONFIG))
    result = tracer("run-experiment", str(config), data_dir=data)
    assert "(0 new)" in result.stdout
    assert {r.run_id: store.invocations(r.run_id) for r in store.get_runs()} == before


def test_a_current_experiment_is_answered_from_the_store_without_starting_dagster(tmp_path):
    config = tmp_path / "small.json"
    config.write_text(json.dumps({**CONFIG, "name": "small", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1]}))
    data = tmp_path / "data"
    first = tracer("run-experiment", str(config), data_dir=data)
    assert "Dagster not started" not in first.stdout
    store = TraceStore(f"sqlite:///{data / 'tracer.sqlite'}")
    before = {r.run_id: store.invocations(r.run_id) for r in store.get_runs()}

    again = tracer("run-experiment", str(config), data_dir=data)
    assert "nothing to compute" in again.stdout and "(Dagster not started)" in again.stdout
    assert "2 runs (0 new)" in again.stdout and "report: " in again.stdout
    assert {r.run_id: store.invocations(r.run_id) for r in store.get_runs()} == before

    # Anything that could give work takes the full path: here a longer max_length.
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_length": 8}))
    longer = tracer("run-experiment", str(config), data_dir=data)
    assert "Dagster not started" not in longer.stdout
    assert all(len(store.invocations(r.run_id)) > len(before[r.run_id]) or r.status == "stuck"
               for r in store.get_runs())
    # ... and so does a report deleted by hand.
    (data / "reports" / "small" / "report.md").unlink()
    rebuilt = tracer("run-experiment", str(config), data_dir=data)
    assert "Dagster not started" not in rebuilt.stdout and (data / "reports" / "small" / "report.md").exists()


def test_export_images_embeds_the_invocation_metadata(finished, tmp_path):
    data, _ = finished
    rows = json.loads(tracer("list-runs", "--json", data_dir=data).stdout)
    run = next(r for r in rows if r["status"] == "complete")
    out = tmp_path / "images"
    tracer("export-images", run["run_id"][:6], "--out", str(out), data_dir=data)
    files = sorted((out / run["run_id"]).glob("*.jpg"))
    assert len(files) == 3 and (out / f"{run['run_id']}_contact_sheet.jpg").exists()
    with Image.open(files[1]) as image:
        fields = json.loads(image.getexif()[0x010E])
        xmp = image.info["xmp"]
    assert fields["run_id"] == run["run_id"] and fields["sequence_number"] == 2 and fields["model"] == "DummyT2I"
    assert fields["seed"] == run["seed"] and fields["prompt"] == run["prompt"]
    store = TraceStore(f"sqlite:///{data / 'tracer.sqlite'}")
    assert fields["input_caption"] == store.invocations(run["run_id"])[1].output_text
    assert f"<tracer:run_id>{run['run_id']}</tracer:run_id>".encode() in xmp


def test_export_data_matches_the_store(finished, tmp_path):
    data, _ = finished
    out = tmp_path / "parquet"
    tracer("export-data", "--experiment", "cli", "--out", str(out), data_dir=data)
    store = TraceStore(f"sqlite:///{data / 'tracer.sqlite'}")
    runs = pl.read_parquet(out / "runs.parquet")
    invocations = pl.read_parquet(out / "invocations.parquet")
    embeddings = pl.read_parquet(out / "embeddings.parquet")
    diagrams = pl.read_parquet(out / "persistence_diagrams.parquet")
    assert runs.height == 8 and set(runs["experiment"]) == {"cli"}
    assert invocations.height == sum(len(store.invocations(r)) for r in runs["run_id"])
    run_id = runs["run_id"][0]
    first = invocations.filter(pl.col("run_id") == run_id).sort("sequence_number")
    assert first["output_text"].to_list() == [i.output_text for i in store.invocations(run_id)]
    _, _, vectors = store.trajectory(run_id, "DummyEmbed")
    mine = embeddings.filter(pl.col("run_id") == run_id).sort("sequence_number")
    exported = mine.filter(pl.col("sequence_number") >= 0)["vector"].to_list()
    assert np.array_equal(np.array(exported, dtype=np.float32), vectors)
    # The initial prompt's embedding, what drift is measured from, comes first as step −1.
    reference = mine.filter(pl.col("sequence_number") == -1)
    assert reference.height == 1 and reference["invocation_id"][0] is None
    assert np.array_equal(np.array(reference["vector"][0], dtype=np.float32),
                          store.reference_embedding(run_id, "DummyEmbed")[1])
    clusters = pl.read_parquet(out / "clusters.parquet")
    assert {"run_id", "sequence_number", "embedding_model", "cluster"} <= set(clusters.columns)
    assert clusters.height == embeddings.filter(pl.col("sequence_number") >= 0).height
    assert clusters["cluster"].min() >= -1
    h0 = diagrams.filter((pl.col("run_id") == run_id) & (pl.col("subset") == "all") & (pl.col("homology_dim") == 0))
    assert h0["death"].is_infinite().sum() == 1
    metrics = pl.read_parquet(out / "analysis_run_metrics.parquet")
    assert metrics.height == 8 and set(metrics["experiment"]) == {"cli"}


def test_a_bad_config_exits_2_lists_every_problem_and_writes_nothing(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({**CONFIG, "seeds": [1, 1], "networks": [["DummyT2I", "DummyT2I2"]]}))
    result = tracer("run-experiment", str(config), data_dir=tmp_path / "data", check=False)
    assert result.returncode == 2
    assert "2 problems" in result.stderr and "seeds[1]: duplicate seed 1" in result.stderr
    assert "networks[0]: DummyT2I outputs image but DummyT2I2 takes text" in result.stderr
    assert not (tmp_path / "data" / "tracer.sqlite").exists()


# Killed once KILL_AFTER of its 2 × LONG invocations are stored (polled every 0.5 s): the margin
# is hundreds of invocations, each committed on its own, and the resume stays a few seconds.
LONG, KILL_AFTER = 300, 50


def test_a_killed_run_experiment_resumes_where_it_stopped(tmp_path):
    config = tmp_path / "long.json"
    config.write_text(json.dumps({**CONFIG, "name": "long", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2],
                                  "prompts": ["a red balloon"], "max_length": LONG}))
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TRACER_DB_URL")}
    env["TRACER_DATA_DIR"] = str(data)
    process = subprocess.Popen([sys.executable, "-m", "tracer_pipeline.cli", "run-experiment", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store_path = data / "tracer.sqlite"
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and stored < KILL_AFTER:
        time.sleep(0.5)
        if store_path.exists():
            store = TraceStore(f"sqlite:///{store_path}")
            stored = sum(c["invocations"] for c in store.counts().values())
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = TraceStore(f"sqlite:///{store_path}")
    partial = sum(c["invocations"] for c in store.counts().values())
    assert KILL_AFTER <= partial < 2 * LONG, "the run should have been killed mid-way"

    result = tracer("run-experiment", str(config), data_dir=data)
    assert "(0 new)" in result.stdout
    for run in store.get_runs():
        stored = store.invocations(run.run_id)
        assert [i.sequence_number for i in stored] == list(range(LONG))  # complete, no gap, no duplicate
        assert run.status == "complete"


def test_models_without_weights_are_all_named_before_anything_is_registered(tmp_path):
    config = tmp_path / "real.json"
    config.write_text(json.dumps({"networks": [["SDTurbo", "BLIP"]], "seeds": [1], "prompts": ["a red balloon"],
                                  "steering": [{"generator": "DDPMCifar10", "target": "a red circle"}],
                                  "embedding_models": ["CLIP-ViT-B-32"], "max_length": 4}))
    result = tracer("run-experiment", str(config), data_dir=tmp_path / "data", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "4 of its models have no weights on this machine (nothing was registered or started)" in result.stderr
    for model, repo in (("SDTurbo", "stabilityai/sd-turbo"), ("BLIP", "Salesforce/blip-image-captioning-large"),
                        ("CLIP-ViT-B-32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
                        ("DDPMCifar10", "google/ddpm-cifar10-32")):
        assert f"{model}: weights of Hugging Face repository {repo}" in result.stderr
        assert f"hf download {repo}" in result.stderr
    assert not (tmp_path / "data").exists()
