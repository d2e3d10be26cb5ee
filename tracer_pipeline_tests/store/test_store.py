import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.exc import IntegrityError

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.errors import RunNotRegisteredError
from tracer_pipeline.models.base import ModelFailure, output_digest
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import InvocationRow

CONFIG = {
    "name": "store-test", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2],
    "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 4,
}
NOW = datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def store(store_url):
    trace = TraceStore(store_url)
    yield trace
    trace.close()


def test_register_is_idempotent_and_links_experiments(store):
    experiment = parse_experiment(CONFIG, "a.json")
    ids = store.register_experiment(experiment)
    assert store.register_experiment(experiment) == ids
    other = parse_experiment({**CONFIG, "name": "longer", "max_length": 9}, "b.json")
    assert store.register_experiment(other) == ids  # the same runs, named by two experiments
    run = store.get_run(ids[0])
    assert run.experiments == ("longer", "store-test")
    assert run.max_length == 9  # the largest any experiment asks for
    assert len(store.get_runs()) == 2
    assert store.experiment_run_ids("store-test") == ids


def test_unknown_run_is_a_clear_error(store):
    with pytest.raises(RunNotRegisteredError, match="run-experiment"):
        store.get_run("0123456789abcdef")


def test_round_trip_of_text_images_and_vectors(store):
    run_id = store.register_experiment(parse_experiment(CONFIG, "a.json"))[0]
    image = Image.new("RGB", (16, 8), (10, 200, 30))
    image.putpixel((3, 4), (1, 2, 3))
    first = store.add_invocation(run_id, 0, "DummyT2I", "1", None, 1, image, NOW, NOW)
    second = store.add_invocation(run_id, 1, "DummyI2T", "1", first.id, 1, "a caption ✓", NOW, NOW)
    stored = store.invocations(run_id)
    assert [i.sequence_number for i in stored] == [0, 1]
    assert stored[0].output.tobytes() == image.tobytes()  # lossless
    assert stored[0].output_sha256 == output_digest(image)
    assert stored[1].output == "a caption ✓" and stored[1].input_invocation_id == first.id
    vector = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    assert store.add_embeddings("DummyEmbed", "1", {first.id: vector, second.id: -vector}) == 2
    seqs, types, vectors = store.trajectory(run_id, "DummyEmbed")
    assert seqs == [0, 1] and types == ["image", "text"]
    assert vectors.dtype == np.float32 and np.array_equal(vectors[0], vector)


def test_failures_are_stored_as_errors_not_outputs(store):
    run_id = store.register_experiment(parse_experiment(CONFIG, "a.json"))[0]
    inv = store.add_invocation(run_id, 0, "DummyT2I", "1", None, 1, ModelFailure("Boom", "bad input"), NOW, NOW)
    assert inv.error == "Boom: bad input" and inv.output_type is None and inv.output_sha256 is None


def test_writing_the_same_thing_twice_keeps_one_row(store):
    run_id = store.register_experiment(parse_experiment(CONFIG, "a.json"))[0]
    a = store.add_invocation(run_id, 0, "DummyT2I", "1", None, 1, "first", NOW, NOW)
    b = store.add_invocation(run_id, 0, "DummyT2I", "1", None, 1, "second", NOW, NOW)
    assert a.id == b.id and b.output_text == "first"
    vector = np.ones(4, dtype=np.float32) / 2
    assert store.add_embeddings("DummyEmbed", "1", {a.id: vector}) == 1
    assert store.add_embeddings("DummyEmbed", "1", {a.id: vector}) == 0
    assert store.counts([run_id])[run_id] == {"invocations": 1, "embeddings": 1, "diagrams": 0}


def test_unique_constraint_is_enforced_by_the_database(store):
    run_id = store.register_experiment(parse_experiment(CONFIG, "a.json"))[0]
    store.add_invocation(run_id, 0, "DummyT2I", "1", None, 1, "x", NOW, NOW)
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(InvocationRow(run_id=run_id, sequence_number=0, model="DummyT2I", model_version="1", seed=1,
                            started_at=NOW, completed_at=NOW))


WRITER = """
import sys
from datetime import datetime
from tracer_pipeline.store import TraceStore
store = TraceStore(sys.argv[1])
run_id, offset = sys.argv[2], int(sys.argv[3])
now = datetime.now()
for i in range(150):
    # both writers write every sequence number, in opposite orders
    seq = i if offset == 0 else 149 - i
    store.add_invocation(run_id, seq, "DummyT2I", "1", None, 1, f"output {seq}", now, now)
"""


def test_two_writer_processes_lose_and_duplicate_nothing(store, tmp_path):
    run_id = store.register_experiment(parse_experiment(CONFIG, "a.json"))[0]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, store.url, run_id, str(k)], stderr=subprocess.PIPE)
               for k in (0, 1)]
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()
    stored = store.invocations(run_id)
    assert [i.sequence_number for i in stored] == list(range(150))
    assert all(i.output_text == f"output {i.sequence_number}" for i in stored)


REGISTRAR = """
import sys, time
from pathlib import Path
from tracer_pipeline.config import parse_experiment
from tracer_pipeline.store import TraceStore
Path(sys.argv[2] + ".ready").touch()
while not Path(sys.argv[2]).exists():  # start together, once every writer has imported
    time.sleep(0.01)
config = {"name": "store-test", "networks": [["DummyT2I", "DummyI2T"]], "seeds": list(range(20)),
          "prompts": ["a red balloon", "a blue cube"], "embedding_models": ["DummyEmbed"], "max_length": 4}
store = TraceStore(sys.argv[1])  # a fresh store: every writer also creates the schema
print(" ".join(store.register_experiment(parse_experiment(config, "a.json"))))
"""


def start_together(script: str, args_of: list[list[str]], folder) -> list[subprocess.Popen]:
    """Start one process per argument list, and let them all go at once after their imports."""
    go = folder / "go"
    processes = [subprocess.Popen([sys.executable, "-c", script, *args, f"{go}{k}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for k, args in enumerate(args_of)]
    while not all((folder / f"go{k}.ready").exists() or p.poll() is not None for k, p in enumerate(processes)):
        time.sleep(0.05)
    for k in range(len(processes)):
        (folder / f"go{k}").touch()
    return processes


def test_four_writers_on_a_fresh_store_create_and_register_once(store_url, tmp_path):
    """Schema creation and registration by four processes at once: none fails, nothing doubles."""
    writers = start_together(REGISTRAR, [[store_url]] * 4, tmp_path)
    outputs = []
    for w in writers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()
        outputs.append(out.decode().split())
    assert all(o == outputs[0] for o in outputs) and len(outputs[0]) == 40
    store = TraceStore(store_url)
    assert [r.run_id for r in store.get_runs()] == sorted(outputs[0])
    assert store.experiment_names() == ["store-test"]
    assert store.experiment_run_ids("store-test") == outputs[0]
    store.close()


def test_a_comparison_without_all_pairs_comes_back_as_stored(store):
    """A store-wide comparison of a sample (its matrices' runs) with each run's kept nearest
    earlier runs and the unproven ones round-trips; one with all pairs comes back without them."""
    from tracer_pipeline.store import StoreComparison

    matrix = np.array([[0.0, 0.5], [0.5, 0.0]])
    sampled = StoreComparison(
        embedding_model="m", run_ids=("a", "b", "c"), diagram_hashes=("ha", "hb", "hc"),
        matrices={(1, "wasserstein"): matrix}, attractors=(), attractor_threshold=0.1,
        matrix_run_ids=("c", "a"), nearest={"a": (), "b": (("a", 0.25),), "c": (("b", 0.5),)},
        unproven=frozenset({"c"}))
    store.put_comparison(sampled)
    back = store.comparison("m")
    assert (back.matrix_run_ids, back.nearest, back.unproven) == (sampled.matrix_run_ids, sampled.nearest,
                                                                 sampled.unproven)
    np.testing.assert_array_equal(back.matrices[(1, "wasserstein")], matrix)
    assert back.matrix_ids == ("c", "a") and not back.all_pairs

    everything = StoreComparison(embedding_model="m", run_ids=("a", "b"), diagram_hashes=("ha", "hb"),
                                 matrices={(1, "wasserstein"): matrix}, attractors=(), attractor_threshold=0.1)
    store.put_comparison(everything)
    back = store.comparison("m")
    assert (back.matrix_run_ids, back.nearest, back.unproven) == (None, None, frozenset())
    assert back.matrix_ids == ("a", "b") and back.all_pairs
