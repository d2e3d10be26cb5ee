"""Operating a store from the command line: doctor, delete, copy, interrupted runs, and clear
refusals (exit 2, a message, nothing written) of what cannot be used."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.errors import StoreOpenError
from tracer_pipeline.exports import export_images
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.store import TraceStore, vector_to_bytes
from tracer_pipeline.tracing.invocations import run_invocations
from tracer_pipeline_tests.test_cli import CONFIG, tracer


def write(path, config):
    path.write_text(json.dumps(config))
    return str(path)


def test_doctor_finds_a_planted_gap_and_nan_and_fix_then_rerun_leaves_a_healthy_store(tmp_path):
    data = tmp_path / "data"
    config = write(tmp_path / "cli.json", CONFIG)
    tracer("run-experiment", config, data_dir=data)
    assert tracer("doctor", data_dir=data).stdout.endswith("no problems found\n")
    runs = json.loads(tracer("list-runs", "--json", data_dir=data).stdout)
    gap_run, nan_run = runs[0]["run_id"], runs[1]["run_id"]
    with sqlite3.connect(data / "tracer.sqlite") as raw:
        raw.execute("DELETE FROM invocations WHERE run_id = ? AND sequence_number = 1", (gap_run,))
        raw.execute("UPDATE embeddings SET vector = ? WHERE invocation_id = (SELECT id FROM invocations "
                    "WHERE run_id = ? AND sequence_number = 0)", (vector_to_bytes(np.full(64, np.nan)), nan_run))
    found = tracer("doctor", data_dir=data, check=False)
    assert found.returncode == 1
    assert f"{gap_run}: sequence gap: invocation 1 is missing" in found.stdout
    assert f"{nan_run}: non-finite vector: DummyEmbed on invocations 0" in found.stdout
    fixed = tracer("doctor", "--fix", data_dir=data)
    assert "repaired" in fixed.stdout
    tracer("run-experiment", config, data_dir=data)
    assert tracer("doctor", data_dir=data).returncode == 0


def test_deleting_one_of_two_experiments_that_share_a_run_keeps_the_shared_run(tmp_path):
    data = tmp_path / "data"
    small = {**CONFIG, "name": "small", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "max_length": 3}
    tracer("run-experiment", write(tmp_path / "a.json", {**small, "prompts": ["a red balloon"]}), data_dir=data)
    tracer("run-experiment", write(tmp_path / "b.json", {**small, "name": "other", "seeds": [1, 2],
                                                          "prompts": ["a red balloon"]}), data_dir=data)
    before = {r["run_id"]: r["experiments"] for r in json.loads(tracer("list-runs", "--json", data_dir=data).stdout)}
    [shared] = [r for r, e in before.items() if e == ["other", "small"]]
    result = tracer("delete", "other", "--yes", data_dir=data)
    assert "1 runs deleted, 1 kept" in result.stdout
    after = json.loads(tracer("list-runs", "--json", data_dir=data).stdout)
    assert [(r["run_id"], r["experiments"], r["invocations"]) for r in after] == [(shared, ["small"], 3)]
    assert not (data / "reports" / "other").exists()
    import dagster as dg

    with dg.DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        [key] = instance.get_dynamic_partitions("runs")
        assert key.endswith(f".{shared}")
        assert instance.get_dynamic_partitions("experiments") == ["small"]
    refused = tracer("delete", "small", data_dir=data, check=False)  # no --yes, no terminal: nothing deleted
    assert refused.returncode == 1 and len(json.loads(tracer("list-runs", "--json", data_dir=data).stdout)) == 1


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory):
    """A data directory whose store holds experiments a and b, for the tests below that only read it."""
    root = tmp_path_factory.mktemp("two")
    small = {**CONFIG, "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "max_length": 3}
    tracer("run-experiment", write(root / "a.json", {**small, "name": "a"}), data_dir=root / "data")
    tracer("run-experiment", write(root / "b.json", {**small, "name": "b", "seeds": [5]}), data_dir=root / "data")
    return root / "data"


def test_copy_puts_one_experiment_into_a_new_store(two_experiments, tmp_path):
    data = two_experiments
    target = f"sqlite:///{tmp_path / 'subset.sqlite'}"
    assert "copied experiment a" in tracer("copy", "--experiment", "a", "--to", target, data_dir=data).stdout
    rows = json.loads(tracer("--db-url", target, "list-runs", "--json", data_dir=data).stdout)
    assert {tuple(r["experiments"]) for r in rows} == {("a",)} and len(rows) == 2


def test_read_only_commands_refuse_a_foreign_database_and_a_missing_store_without_writing(tmp_path):
    foreign = tmp_path / "shop.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    for command in (["list-runs"], ["status"], ["doctor"], ["run-experiment", write(tmp_path / "c.json", CONFIG)]):
        result = tracer("--db-url", f"sqlite:///{foreign}", *command, data_dir=tmp_path / "d", check=False)
        assert result.returncode == 2 and "is not a trace store" in result.stderr, command
        assert "Traceback" not in result.stderr
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
    missing = tracer("list-runs", data_dir=tmp_path / "typo", check=False)
    assert missing.returncode == 2
    assert f"no trace store at {tmp_path / 'typo' / 'tracer.sqlite'}" in missing.stderr
    assert not (tmp_path / "typo").exists()


def test_bad_paths_exit_2_with_a_message(two_experiments, tmp_path):
    data = two_experiments
    write(tmp_path / "c.json", {**CONFIG, "seeds": [1], "max_length": 2})
    (tmp_path / "a-file").write_text("")
    for args, data_dir, expected in (
        (["export-data", "--out", str(tmp_path / "a-file" / "out")], data, "cannot write to --out"),
        (["export-images", "--experiment", "a", "--out", str(tmp_path / "a-file")], data, "is a file"),
        (["run-experiment", str(tmp_path / "c.json")], tmp_path / "a-file", "cannot create the trace store's folder"),
    ):
        result = tracer(*args, data_dir=data_dir, check=False)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, args


def test_a_killed_run_reads_as_interrupted_everywhere_and_its_dagster_run_is_released(tmp_path):
    config = write(tmp_path / "long.json", {**CONFIG, "name": "long", "networks": [["DummyT2I", "DummyI2T"]],
                                            "seeds": [1], "prompts": ["a red balloon"], "max_length": 3000})
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TRACER_DB_URL")}
    process = subprocess.Popen([sys.executable, "-m", "tracer_pipeline.cli", "run-experiment", config],
                               env={**env, "TRACER_DATA_DIR": str(data)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, stored = time.time() + 120, 0
    while time.time() < deadline and stored < 50:
        time.sleep(0.5)
        try:
            stored = sum(c["invocations"] for c in TraceStore(f"sqlite:///{data / 'tracer.sqlite'}",
                                                               read_only=True).counts().values())
        except StoreOpenError:  # not there yet, or its tables not yet created by the process
            continue
    process.send_signal(signal.SIGKILL)
    process.wait()
    [run] = json.loads(tracer("list-runs", "--json", data_dir=data).stdout)
    assert run["status"] == "interrupted" and "run the experiment again" in run["stop_reason"]
    status = tracer("status", data_dir=data).stdout
    assert "0 running, 1 interrupted" in status and "none running" in status
    doctor = tracer("doctor", data_dir=data, check=False)
    assert doctor.returncode == 1 and f"{run['run_id']}: marked running, no live process" in doctor.stdout
    assert "(dagster run " in doctor.stdout
    tracer("doctor", "--fix", data_dir=data)
    assert tracer("doctor", data_dir=data).returncode == 0


def test_a_dagster_run_killed_before_it_started_is_released(settings):
    import dagster as dg

    from tracer_pipeline.cli.launcher import CLI_HOST_TAG, CLI_PID_TAG, Launcher

    launcher = Launcher(settings)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = launcher.instance.create_run_for_job(
        launcher.defs.resolve_job_def("trace"), tags={CLI_PID_TAG: gone.stdout.strip(), CLI_HOST_TAG: os.uname()[1]})
    assert run.status == dg.DagsterRunStatus.NOT_STARTED
    assert [r.run_id for r in launcher.abandoned_runs()] == [run.run_id]
    assert launcher.release_abandoned_runs() == [run.run_id]
    assert launcher.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_megabyte_prompt_is_stored_in_full_and_cut_with_a_marker_in_exported_metadata(tmp_path):
    prompt = "a red balloon " * 75_000  # about 1 MB, accepted by the config
    store = TraceStore(f"sqlite:///{tmp_path / 'big.sqlite'}")
    config = {**CONFIG, "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "prompts": [prompt], "max_length": 2}
    [run_id] = store.register_experiment(parse_experiment(config, "big.json"))
    run_invocations(store, ModelPool(resolve_load_options("cpu", "auto", tmp_path)), [run_id])
    assert store.get_run(run_id).prompt == prompt
    [image, *_] = export_images(store, [run_id], tmp_path / "out")
    with Image.open(image) as exported:
        fields = json.loads(exported.getexif()[0x010E])
    assert fields["prompt"].startswith(prompt[:1000]) and "[truncated: " in fields["prompt"]
