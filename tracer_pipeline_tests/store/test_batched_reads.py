"""The store's reads of many runs at once answer what its one-run reads answer, run by run, and
what the embedding step computes from them is what it computed one run at a time."""

import dataclasses

import numpy as np
import pytest
from sqlalchemy import update

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import EmbeddingRow
from tracer_pipeline.tracing import embeddings
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations

CONFIG = {
    "name": "batched", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1, 2, 3], "prompts": ["a red balloon"],
    "embedding_models": ["DummyEmbed"], "max_length": 5,
}


@pytest.fixture
def traced(store_url, tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "RUNS_PER_READ", 2)  # more than one group of runs
    store = TraceStore(store_url)
    ids = store.register_experiment(parse_experiment(CONFIG, "x"))
    pool = ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))
    run_invocations(store, pool, ids)
    outcomes = embed_runs(store, pool, ids)
    assert all(o.computed == 5 and not o.failures for o in outcomes.values())
    compute_diagrams(store, ids)
    return store, [*ids, "no-such-run"]


def test_reads_of_many_runs_are_the_one_run_reads(traced):
    store, ids = traced
    for limit in (None, 3):
        assert store.invocations_of(ids, limit) == {r: store.invocations(r, limit) for r in ids}
    assert [len(v) for v in store.invocations_of(ids, 3).values()] == [3, 3, 3, 0]
    without = store.invocations_of(ids, images=False)
    with_images = store.invocations_of(ids)
    assert {r: [dataclasses.replace(i, output_image=None) for i in v] for r, v in with_images.items()} == without
    assert any(i.output_image for v in with_images.values() for i in v)
    images = {(r, i.sequence_number): i.output_image for r, v in with_images.items() for i in v if i.output_image}
    for asked in ([(r, 2) for r in ids], [(ids[0], 0), (ids[0], 1), (ids[0], 4), (ids[1], 2)]):  # by step, by run
        assert store.images(asked) == {key: images[key] for key in asked if key in images}
    assert store.diagram_keys_of(ids) == {r: store.diagram_keys(r) for r in ids}
    assert len(store.diagram_keys_of(ids)[ids[0]]) == 3  # all, text, image
    for what in ("runs", "invocations", "embeddings", "diagrams"):
        hashes = store.content_hashes(ids, what)
        assert hashes == {r: store.content_hash(r, what) for r in ids}
        assert len(set(hashes.values())) == len(ids)  # each run's own content
    runs = store.get_runs(ids[:3])
    assert store.trajectories_by_model(runs).keys() == {"DummyEmbed"}
    by_model = store.trajectories_by_model(runs)["DummyEmbed"]
    for run_id, (seqs, types, vectors) in store.trajectories(ids[:3], "DummyEmbed").items():
        assert by_model[run_id][:2] == (seqs, types) and np.array_equal(by_model[run_id][2], vectors)
    states = store.embedding_states(ids, "DummyEmbed")
    assert [len(s) for s in states.values()] == [5, 5, 5, 0]
    assert {state for s in states.values() for state in s.values()} == {(get_model("DummyEmbed").version, True)}


def test_a_stale_or_non_finite_vector_is_computed_again_and_references_are_stored(traced):
    store, ids = traced
    [first, second, *_] = ids
    version = store.embedding_states([first], "DummyEmbed")[first]
    [(invocation_id, _)] = list(version.items())[:1]
    store.delete_embeddings("DummyEmbed", [invocation_id])
    assert len(store.embedding_states([first], "DummyEmbed")[first]) == 4
    references = store.reference_embeddings(ids, "DummyEmbed")
    assert set(references) == set(ids[:3])
    store.put_reference_embeddings("DummyEmbed", "old", {second: np.ones(references[second][1].size)})
    assert store.reference_embeddings([second], "DummyEmbed")[second][0] == "old"

    [(spoiled, _)] = list(store.embedding_states([second], "DummyEmbed")[second].items())[:1]
    with store.session() as s:  # a NaN vector, as an older version of the store could hold
        s.execute(update(EmbeddingRow).where(EmbeddingRow.invocation_id == spoiled)
                  .values(vector=np.full(8, np.nan, dtype="<f4").tobytes()))
    assert store.embedding_states([second], "DummyEmbed")[second][spoiled][1] is False

    pool = ModelPool(resolve_load_options("cpu", "auto", "unused"))
    outcomes = embed_runs(store, pool, ids[:3])
    assert outcomes[first].computed == 1 and outcomes[first].skipped == 4
    assert outcomes[second].computed == 1 and outcomes[second].stale_replaced == 1
    assert store.embedding_states([second], "DummyEmbed")[second][spoiled][1] is True
    after = store.reference_embeddings([second], "DummyEmbed")[second]
    assert after[0] != "old" and np.allclose(after[1], references[second][1])
