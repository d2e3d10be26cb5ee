"""The tracing engine with dummy models: lockstep batching, stuck runs, resume, staleness, failures."""

import dataclasses

import numpy as np
import pytest

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models import registry
from tracer_pipeline.models.base import ModelFailure
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations

CONFIG = {
    "name": "engine", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I2", "DummyI2T"]],
    "seeds": [1, 2, 3], "prompts": ["a red balloon", "a quiet harbour at night"],
    "embedding_models": ["DummyEmbed"], "max_length": 8,
}


@pytest.fixture
def pool(tmp_path):
    return ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))


def make_store(tmp_path, name="trace"):
    return TraceStore(f"sqlite:///{tmp_path / (name + '.sqlite')}")


def digests(store, run_ids):
    return {r: [i.output_sha256 for i in store.invocations(r)] for r in run_ids}


def registered(tmp_path, config, *names):
    """A store per name, each with the experiment of ``config`` registered; and its run ids."""
    stores = [make_store(tmp_path, name) for name in names]
    [ids, *_] = [store.register_experiment(parse_experiment(config, "x")) for store in stores]
    return stores, ids


def call_sizes(pool, name):
    """The number of inputs of each call of the pool's model ``name`` from now on."""
    calls: list[int] = []
    model = pool.get(name)
    original = model.generate
    model.generate = lambda inputs, seeds: calls.append(len(inputs)) or original(inputs, seeds)
    return calls


def test_lockstep_batches_give_the_same_outputs_as_one_run_at_a_time(tmp_path, pool):
    (batched, single), ids = registered(tmp_path, CONFIG, "batched", "single")
    calls = call_sizes(pool, "DummyI2T")
    run_invocations(batched, pool, ids, batch_size=16)
    assert max(calls) == 6  # the runs of a network at the same step share one call (networks in turn)
    for run_id in ids:
        run_invocations(single, pool, [run_id], batch_size=1)
    assert digests(batched, ids) == digests(single, ids)
    assert all(len(d) == 8 for d in digests(batched, ids).values())


def test_cohorts_of_runs_give_the_same_outputs_as_all_runs_at_once(tmp_path, pool):
    (whole, cohorts), ids = registered(tmp_path, CONFIG, "whole", "cohorts")
    calls = call_sizes(pool, "DummyI2T")
    run_invocations(whole, pool, ids)
    assert max(calls) == 6
    calls.clear()
    run_invocations(cohorts, pool, ids, cohort_runs=4)
    assert digests(whole, ids) == digests(cohorts, ids)
    assert max(calls) == 4 and 2 in calls  # a network's 6 runs as cohorts of 4 and 2
    assert {r.status for r in cohorts.get_runs(ids)} == {"complete"}


def test_a_resumed_run_reads_only_its_last_image_of_the_stored_prefix(tmp_path, pool, monkeypatch):
    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment({**CONFIG, "max_length": 5}, "x"))
    run_invocations(store, pool, ids)
    store.register_experiment(parse_experiment({**CONFIG, "name": "longer", "max_length": 7}, "y"))
    read: list[tuple[str, int]] = []
    images = store.images
    monkeypatch.setattr(store, "images", lambda outputs: read.extend(outputs) or images(outputs))
    run_invocations(store, pool, ids)
    # Invocation 4 (the fifth, of DummyT2I) is each run's last image, the input of the sixth.
    assert sorted(read) == sorted((run_id, 4) for run_id in ids)
    resumed = make_store(tmp_path, "in-one-go")
    resumed.register_experiment(parse_experiment({**CONFIG, "max_length": 7}, "x"))
    run_invocations(resumed, pool, ids)
    assert digests(store, ids) == digests(resumed, ids)


def test_a_repeating_run_stops_at_its_fixed_point_unless_asked_to_continue(tmp_path, pool):
    store = make_store(tmp_path)
    config = {**CONFIG, "networks": [["DummyT2I", "DummyI2T2"]], "seeds": [1], "prompts": ["a red balloon"],
              "max_length": 12}
    [run_id] = store.register_experiment(parse_experiment(config, "x"))
    outcome = run_invocations(store, pool, [run_id])[run_id]
    stored = store.invocations(run_id)
    assert outcome.status == "stuck" and outcome.stop_reason == "fixed point from invocation 1"
    assert len(stored) == 4 and stored[3].output_sha256 == stored[1].output_sha256
    assert store.get_run(run_id).status == "stuck"

    store.register_experiment(parse_experiment({**config, "name": "y", "stop_when_stuck": False}, "y"))
    outcome = run_invocations(store, pool, [run_id])[run_id]
    assert outcome.status == "complete" and len(store.invocations(run_id)) == 12
    assert "fixed point from invocation 1; continued as asked" in outcome.stop_reason


def test_a_longer_max_length_extends_the_stored_prefix(tmp_path, pool):
    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment({**CONFIG, "max_length": 5}, "x"))
    run_invocations(store, pool, ids)
    before = {r: store.invocations(r) for r in ids}
    store.register_experiment(parse_experiment({**CONFIG, "name": "longer", "max_length": 9}, "y"))
    outcomes = run_invocations(store, pool, ids)
    for run_id in ids:
        assert outcomes[run_id].computed == 4 and outcomes[run_id].stored_before == 5
        after = store.invocations(run_id)
        assert after[:5] == before[run_id] and len(after) == 9
    assert all(o.computed == 0 for o in run_invocations(store, pool, ids).values())


def test_a_new_model_version_recomputes_exactly_what_it_affects(tmp_path, pool, monkeypatch):
    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment(CONFIG, "x"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    compute_diagrams(store, ids)
    blocks = [r for r in ids if store.get_run(r).network[0] == "DummyT2I"]
    discs = [r for r in ids if r not in blocks]
    old = {r: store.invocations(r) for r in ids}
    monkeypatch.setitem(registry._BY_NAME, "DummyT2I2",
                        dataclasses.replace(registry.get_model("DummyT2I2"), version="2"))
    outcomes = run_invocations(store, pool, ids)
    for run_id in blocks:
        assert outcomes[run_id].computed == 0 and store.invocations(run_id) == old[run_id]
    for run_id in discs:
        assert outcomes[run_id].recomputed_stale == 8 and outcomes[run_id].computed == 8
        assert {i.model_version for i in store.invocations(run_id) if i.model == "DummyT2I2"} == {"2"}
        assert store.counts([run_id])[run_id]["embeddings"] == 0  # stale embeddings went with them
    embedded = embed_runs(store, pool, ids)
    assert sum(embedded[r].computed for r in discs) == 8 * len(discs)
    assert sum(embedded[r].computed for r in blocks) == 0
    diagrams = compute_diagrams(store, ids)
    assert all(diagrams[r].computed and not diagrams[r].skipped for r in discs)
    assert all(diagrams[r].skipped and not diagrams[r].computed for r in blocks)


class Flaky:
    """Raises on any batch holding an image with DummyT2I's black background."""

    def generate(self, inputs, seeds):
        if any(image.getpixel((0, 0)) == (20, 20, 20) for image in inputs):
            raise RuntimeError("cannot caption dark images")
        return [f"caption {seed} {image.getpixel((5, 5))}" for image, seed in zip(inputs, seeds, strict=True)]


def test_a_model_failure_fails_that_run_only_and_is_retried_on_rerun(tmp_path, pool, monkeypatch):
    flaky = dataclasses.replace(registry.get_model("DummyI2T"), name="FlakyI2T", loader=lambda spec, options: Flaky())
    monkeypatch.setitem(registry._BY_NAME, "FlakyI2T", flaky)
    store = make_store(tmp_path)
    config = {**CONFIG, "networks": [["DummyT2I", "FlakyI2T"]], "prompts": ["a red balloon", "a black cat"],
              "seeds": [1], "max_length": 4}
    ids = store.register_experiment(parse_experiment(config, "x"))
    outcomes = run_invocations(store, pool, ids)
    red, black = ids
    assert outcomes[black].status == "failed"
    assert outcomes[black].error == "invocation 1 (FlakyI2T): RuntimeError: cannot caption dark images"
    assert store.get_run(black).error == outcomes[black].error
    assert outcomes[red].status == "complete" and len(store.invocations(red)) == 4
    assert store.invocations(black)[-1].error is not None
    outcomes = run_invocations(store, pool, [black])  # the failed invocation is retried, not kept
    assert outcomes[black].stored_before == 1 and outcomes[black].status == "failed"
    assert len(store.invocations(black)) == 2


def test_embeddings_of_a_nan_are_reported_not_stored(tmp_path, pool, monkeypatch):
    class NaNEmbed:
        dimension = 4

        def embed(self, items):
            return [ModelFailure("NonFiniteEmbedding", "the embedding contains NaN or infinity")] * len(items)

    spec = dataclasses.replace(registry.get_model("DummyEmbed"), name="NaNEmbed", loader=lambda s, o: NaNEmbed())
    monkeypatch.setitem(registry._BY_NAME, "NaNEmbed", spec)
    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment({**CONFIG, "seeds": [1], "embedding_models": ["NaNEmbed"],
                                                      "max_length": 2}, "x"))
    run_invocations(store, pool, ids)
    outcome = embed_runs(store, pool, ids)[ids[0]]
    assert outcome.computed == 0 and len(outcome.failures) == 3  # two outputs and the prompt
    assert all("NonFiniteEmbedding" in f for f in outcome.failures)
    assert store.reference_embedding(ids[0], "NaNEmbed") is None
    assert store.counts(ids)[ids[0]]["embeddings"] == 0


def test_diagrams_for_whole_and_per_modality_trajectories(tmp_path, pool):
    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment({**CONFIG, "seeds": [1], "prompts": ["x"]}, "x"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    version, reference = store.reference_embedding(ids[0], "DummyEmbed")
    assert version == "1" and reference.shape == (64,)  # the prompt's embedding, for drift
    first = compute_diagrams(store, ids)
    assert sorted(first[ids[0]].computed) == ["DummyEmbed/all", "DummyEmbed/image", "DummyEmbed/text"]
    again = compute_diagrams(store, ids)
    assert again[ids[0]].computed == [] and len(again[ids[0]].skipped) == 3
    diagrams = {d.subset: d for d in store.diagrams(ids[:1])}
    assert diagrams["all"].n_points == 8 and diagrams["text"].n_points == 4
    h0 = diagrams["all"].points[0]
    assert len(h0) == 8 and np.isinf(h0[:, 1]).sum() == 1


def test_lockstep_with_tiny_models_matches_one_run_at_a_time(tmp_path):
    """The real code paths (diffusers, transformers) batched across runs give the same bytes."""
    import os

    pool = ModelPool(resolve_load_options("cpu", "auto", os.environ["TRACER_MODEL_DIR"]))
    config = {**CONFIG, "networks": [["TinySD", "TinyBLIP"]], "embedding_models": ["TinyCLIP"], "max_length": 4,
              "seeds": [1, 2]}
    (batched, single), ids = registered(tmp_path, config, "batched", "single")
    run_invocations(batched, pool, ids)
    for run_id in ids:
        run_invocations(single, pool, [run_id])
    assert digests(batched, ids) == digests(single, ids)
    assert len({d[0] for d in digests(batched, ids).values()}) == 4  # seeds and prompts matter


def test_a_new_tda_version_recomputes_diagrams_and_replaces_the_old_ones(tmp_path, pool, monkeypatch):
    import tracer_pipeline.tracing.diagrams as diagrams_module

    store = make_store(tmp_path)
    ids = store.register_experiment(parse_experiment({**CONFIG, "seeds": [1]}, "x"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    compute_diagrams(store, ids)
    old = {d.params_hash for d in store.diagrams(ids)}
    monkeypatch.setattr(diagrams_module, "TDA_VERSION", "next")
    outcomes = compute_diagrams(store, ids)
    assert all(len(o.computed) == 3 and not o.skipped for o in outcomes.values())
    stored = store.diagrams(ids)
    assert len(stored) == 3 * len(ids)  # replaced, not added beside the old ones
    assert not {d.params_hash for d in stored} & old and {d.params["tda_version"] for d in stored} == {"next"}
