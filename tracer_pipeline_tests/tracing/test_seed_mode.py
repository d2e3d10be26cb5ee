"""Seed modes: "fixed" (the default, every invocation uses the run's seed) and "per_invocation"
(a seed per invocation derived from the run's seed): identity, stopping, reproducibility."""

import pytest

from tracer_pipeline.config import RunSpec, parse_experiment
from tracer_pipeline.errors import ConfigError
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.invocations import run_invocations
from tracer_pipeline.tracing.seeds import invocation_seed

# DummyI2T2 names only the dominant colour, so with a fixed seed this network repeats at once.
CONFIG = {"name": "seeds", "networks": [["DummyT2I", "DummyI2T2"]], "seeds": [1, 2],
          "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 12}
QUICKSTART_PROMPT = "a large red circle on the left and a small blue square at the top"


@pytest.fixture
def pool(tmp_path):
    return ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))


def test_run_ids_made_before_seed_modes_stay_the_same():
    # The id README's quickstart figure names, computed before seed modes existed.
    spec = RunSpec(("SceneT2I", "SceneI2TSampled"), 2, prompt=QUICKSTART_PROMPT)
    assert spec.run_id.startswith("8180c9af")
    assert "seed_mode" not in spec.canonical()
    explicit = parse_experiment({**CONFIG, "seed_mode": "fixed"}, "x").runs()
    assert [r.run_id for r in explicit] == [r.run_id for r in parse_experiment(CONFIG, "x").runs()]


def test_per_invocation_seeds_are_another_run():
    fixed = parse_experiment(CONFIG, "x").runs()
    varied = parse_experiment({**CONFIG, "seed_mode": "per_invocation"}, "x").runs()
    assert not {r.run_id for r in fixed} & {r.run_id for r in varied}
    assert all(r.canonical()["seed_mode"] == "per_invocation" for r in varied)


def test_an_unknown_seed_mode_is_named_with_the_choices():
    with pytest.raises(ConfigError) as info:
        parse_experiment({**CONFIG, "seed_mode": "random"}, "x.json")
    assert info.value.problems == [
        "seed_mode: expected one of 'fixed', 'per_invocation', got 'random' (\"fixed\": every invocation uses "
        "the run's seed; \"per_invocation\": a new seed per invocation, derived from the run's seed)"]


def test_invocation_seeds_differ_per_invocation_and_per_run_seed():
    store_run = type("Run", (), {"seed": 1, "seed_mode": "per_invocation"})
    seeds = [invocation_seed(store_run, i) for i in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s < 2**63 for s in seeds)
    other = type("Run", (), {"seed": 2, "seed_mode": "per_invocation"})
    assert not set(seeds) & {invocation_seed(other, i) for i in range(50)}
    assert invocation_seed(type("Run", (), {"seed": 7, "seed_mode": "fixed"}), 9) == 7


def test_a_fixed_seed_run_stops_at_a_repeat_and_a_per_invocation_run_goes_on(tmp_path, pool):
    store = TraceStore(f"sqlite:///{tmp_path / 'trace.sqlite'}")
    fixed = store.register_experiment(parse_experiment(CONFIG, "x"))
    varied = store.register_experiment(parse_experiment({**CONFIG, "name": "v", "seed_mode": "per_invocation"}, "x"))
    outcomes = run_invocations(store, pool, fixed + varied)
    assert {outcomes[r].status for r in fixed} == {RunStatus.STUCK}
    for run_id in varied:
        assert outcomes[run_id].status == RunStatus.COMPLETE
        stored = store.invocations(run_id)
        assert len(stored) == 12
        assert len({i.seed for i in stored}) == 12  # every invocation its own seed, as stored
    # Repeated captions (one colour word) did not stop the per-invocation runs.
    texts = [i.output_text for i in store.invocations(varied[0]) if i.output_type == "text"]
    assert len(set(texts)) < len(texts)


def test_per_invocation_runs_give_the_same_bytes_in_fresh_stores_and_when_resumed(tmp_path, pool):
    config = parse_experiment({**CONFIG, "seed_mode": "per_invocation"}, "x")
    stores = [TraceStore(f"sqlite:///{tmp_path / f'{name}.sqlite'}") for name in ("a", "b")]
    ids = stores[0].register_experiment(config)
    stores[1].register_experiment(config)
    run_invocations(stores[0], pool, ids)
    short = parse_experiment({**CONFIG, "seed_mode": "per_invocation", "max_length": 5}, "x")
    stores[1].register_experiment(short)
    run_invocations(stores[1], pool, ids)  # stops at 5, then resumes to 12
    stores[1].register_experiment(config)
    run_invocations(stores[1], pool, ids)

    def outputs(store):
        return {r: [(i.seed, i.output_sha256) for i in store.invocations(r)] for r in ids}
    assert outputs(stores[0]) == outputs(stores[1])


def test_clusters_are_stored_per_output_and_recomputed_only_when_the_embeddings_change(tmp_path, pool):
    from tracer_pipeline.tracing.clusters import cluster_experiment
    from tracer_pipeline.tracing.embeddings import embed_runs

    store = TraceStore(f"sqlite:///{tmp_path / 'trace.sqlite'}")
    config = {**CONFIG, "stop_when_stuck": False, "seeds": [1, 2, 3], "max_length": 10}
    ids = store.register_experiment(parse_experiment(config, "x"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    [first] = cluster_experiment(store, "seeds")
    assert not first.skipped and first.outputs == 30
    stored = store.clusters(["seeds"])
    assert len(stored) == 30 and {(r.run_id, r.sequence_number) for r in stored} == {
        (r, s) for r in ids for s in range(10)}
    # With a fixed seed each run repeats one image and one caption: states HDBSCAN finds.
    assert first.clusters >= 1 and sum(r.is_medoid for r in stored) == first.clusters
    [again] = cluster_experiment(store, "seeds")
    assert again.skipped and store.clusters(["seeds"]) == stored
