"""Steering runs end to end on CPU: SceneGen steered toward a SceneWorld caption with SceneCLIP
as the artificial user's feature space, cut to a few rounds of a few pairs; config validation and
identity; resume after a simulated crash; export and report; the diffusers path's tiny twin."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from sqlalchemy import delete

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.errors import ConfigError, WeightsNotFoundError
from tracer_pipeline.exports import export_data
from tracer_pipeline.models.base import LoadOptions
from tracer_pipeline.models.pool import ModelPool
from tracer_pipeline.models.registry import get_model
from tracer_pipeline.reporting.gather import experiment_data
from tracer_pipeline.reporting.report import build_report
from tracer_pipeline.status import RunStatus
from tracer_pipeline.steering.feedback import ArtificialUser, Choice
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import SteeringRoundRow
from tracer_pipeline.tracing import steering as steering_engine
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.engines import run_engines

ROUNDS = 4
TARGET = "a large red circle in the centre"
SMALL = {"generator": "SceneGen", "target": TARGET, "actions": 16, "pairs": 3, "reward_epochs": 30,
         "destination_epochs": 10}


def experiment(max_length: int = ROUNDS, **entry):
    return parse_experiment({"name": "steering-test", "steering": [SMALL | entry], "seeds": [5],
                             "embedding_models": ["SceneCLIP"], "max_length": max_length}, "test")


def pool() -> ModelPool:
    return ModelPool(LoadOptions(model_dir=Path(os.environ["TRACER_MODEL_DIR"])))


def _problems(entry: dict, **top) -> str:
    config = {"name": "x", "steering": [entry], "seeds": [1], "embedding_models": ["SceneCLIP"],
              "max_length": 3} | top
    with pytest.raises(ConfigError) as caught:
        parse_experiment(config, "cfg.json")
    return str(caught.value)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[TraceStore, list[str]]:
    """A fresh store where the run computed its rounds in one go, then was embedded."""
    store = TraceStore(f"sqlite:///{tmp_path_factory.mktemp('straight') / 'a.sqlite'}")
    run_ids = store.register_experiment(experiment())
    outcomes = run_engines(store, pool(), run_ids)
    assert outcomes[run_ids[0]].status == RunStatus.COMPLETE
    embed_runs(store, pool(), run_ids)
    return store, run_ids


def test_config_validation_names_each_problem() -> None:
    assert "steering[0].generator: SceneT2I is a text-to-image model, not a noise-to-image" in _problems(
        {"generator": "SceneT2I", "target": TARGET})
    assert 'give exactly one of "target" (a caption) and "target_image"' in _problems(
        {"generator": "SceneGen", "target": TARGET, "target_image": "x.png"})
    assert "steering[0].target_image: file not found" in _problems({"generator": "SceneGen", "target_image": "no.png"})
    text = _problems({"generator": "SceneGen", "target": TARGET, "pairs": 40, "actions": 0, "speed": 2,
                      "feedback": {"embedding_model": "DummyT2I", "noise": -1}})
    assert "steering[0].actions: expected an integer from 2 to 4096" in text
    assert "steering[0].speed: not an option of a steering run" in text
    assert "steering[0].feedback.noise: expected a number from 0 to 10" in text
    assert "steering[0].feedback.embedding_model: DummyT2I is a text-to-image model, not an embedding model" in text
    assert "steering[0].pairs: 4 pairs need 8 actions per round, but actions is 6" in _problems(
        {"generator": "SceneGen", "target": TARGET, "pairs": 4, "actions": 6})
    assert "both_bad (0.5) must be below both_good (0.2)" in _problems(
        {"generator": "SceneGen", "target": TARGET, "feedback": {"both_good": 0.2, "both_bad": 0.5}})
    assert "SceneGen is a noise-to-image generator; steer it with" in _problems(
        {"generator": "SceneGen", "target": TARGET}, networks=[["SceneGen"]])


def test_identity_holds_the_options_and_not_max_length(tmp_path: Path) -> None:
    [spec] = experiment().runs()
    assert spec.canonical() == {
        "kind": "steering", "generator": {"name": "SceneGen", "params": {"size": 64}},
        "options": {"actions": 16, "pairs": 3, "reward_epochs": 30, "destination_epochs": 10,
                    "reward_learning_rate": 0.01, "destination_learning_rate": 0.02,
                    "feedback": {"embedding_model": "SceneCLIP", "noise": 0.0, "both_good": None, "both_bad": None}},
        "target": TARGET, "target_image_sha256": None, "seed": 5}
    assert spec.run_id == "28d816284542bbd5"
    assert experiment(max_length=9).runs()[0].run_id == spec.run_id
    assert experiment(feedback={"noise": 0}).runs()[0].run_id == spec.run_id  # the defaults, given
    assert experiment(feedback={"noise": 0.1}).runs()[0].run_id != spec.run_id
    assert experiment(target="a small blue square on the left").runs()[0].run_id != spec.run_id
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "red.png")
    config = {"name": "img", "steering": [{"generator": "SceneGen", "target_image": "red.png"}], "seeds": [1, 2],
              "embedding_models": ["SceneCLIP"], "max_length": 2}
    runs = parse_experiment(config, "cfg", base_dir=tmp_path).runs()
    assert [r.seed for r in runs] == [1, 2] and runs[0].initial_image_sha256 and runs[0].prompt is None


def test_each_round_is_an_invocation_of_the_destination_with_its_figures(straight) -> None:
    store, [run_id] = straight
    invocations = store.invocations(run_id)
    assert [i.sequence_number for i in invocations] == list(range(ROUNDS))
    assert {i.model for i in invocations} == {"SceneGen"} and all(i.output_type == "image" for i in invocations)
    assert {i.output.size for i in invocations} == {(64, 64)}
    rounds = store.steering_rounds(run_id)
    assert [r.round for r in rounds] == list(range(ROUNDS))
    assert all(len(r.preferences) == 3 and r.destination.shape == (10,) for r in rounds)
    assert all(len(r.reward_losses) == 30 and r.target_similarity is not None for r in rounds)
    # The target is the run's initial input: its embedding is the reference at sequence −1.
    reference = store.reference_embedding(run_id, "SceneCLIP")
    assert reference is not None and len(store.trajectory(run_id, "SceneCLIP")[0]) == ROUNDS
    # The artificial user's similarity is the same cosine the pipeline's own embeddings give.
    cosines = store.trajectory(run_id, "SceneCLIP")[2] @ reference[1]
    np.testing.assert_allclose(cosines, [r.target_similarity for r in rounds], atol=1e-5)


def test_two_fresh_stores_hold_the_same_bytes_even_after_a_crash_and_resume(straight, tmp_path: Path) -> None:
    store, [run_id] = straight
    other = TraceStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    other.register_experiment(experiment(max_length=2))
    run_engines(other, pool(), [run_id])
    # A crash after round 1's invocation, before its round: the invocation is not kept.
    with other.session() as s:
        s.execute(delete(SteeringRoundRow).where(SteeringRoundRow.run_id == run_id, SteeringRoundRow.round == 1))
    other.register_experiment(experiment())
    outcome = run_engines(other, pool(), [run_id])[run_id]
    assert (outcome.stored_before, outcome.computed, outcome.status) == (1, 3, RunStatus.COMPLETE)
    assert [i.output_sha256 for i in other.invocations(run_id)] == [i.output_sha256 for i in store.invocations(run_id)]
    ours, theirs = store.steering_rounds(run_id), other.steering_rounds(run_id)
    assert [r.reward_state for r in theirs] == [r.reward_state for r in ours]
    assert [r.destination.tobytes() for r in theirs] == [r.destination.tobytes() for r in ours]
    assert other.preferences([run_id]) == store.preferences([run_id])
    assert other.steering_figures([run_id]) == store.steering_figures([run_id])


def test_a_stored_run_is_not_computed_again(straight) -> None:
    store, [run_id] = straight
    outcome = run_engines(store, pool(), [run_id])[run_id]
    assert (outcome.stored_before, outcome.computed) == (ROUNDS, 0)


def test_rounds_judged_by_another_feedback_model_version_are_recomputed(straight, tmp_path: Path,
                                                                         monkeypatch) -> None:
    store, [run_id] = straight
    generator = get_model("SceneGen").version
    assert {i.model_version for i in store.invocations(run_id)} == {
        f"{generator}+SceneCLIP@{get_model('SceneCLIP').version}"}
    other = TraceStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    other.register_experiment(experiment(max_length=2))
    run_engines(other, pool(), [run_id])
    # The feedback model changes version (retrained weights): the stored rounds were judged by the
    # old one, so none is kept.
    changed = dataclasses.replace(get_model("SceneCLIP"), version="changed")
    monkeypatch.setattr(steering_engine, "get_model", lambda name: changed if name == "SceneCLIP" else get_model(name))
    outcome = run_engines(other, pool(), [run_id])[run_id]
    assert (outcome.stored_before, outcome.recomputed_stale, outcome.computed) == (0, 2, 2)
    assert {i.model_version for i in other.invocations(run_id)} == {f"{generator}+SceneCLIP@changed"}


def test_export_data_writes_preferences_and_round_figures(straight, tmp_path: Path) -> None:
    store, run_ids = straight
    paths = export_data(store, run_ids, tmp_path)
    preferences = pl.read_parquet(paths["preferences"])
    assert preferences.columns == ["run_id", "round", "pair", "first_reward", "second_reward", "first_similarity",
                                   "second_similarity", "choice"]
    assert preferences.height == ROUNDS * 3 and set(preferences["choice"]) <= {"first", "second"}
    # With no noise, the artificial user picks the image closer to the target.
    closer = np.where(preferences["first_similarity"] >= preferences["second_similarity"], "first", "second")
    assert preferences["choice"].to_list() == closer.tolist()
    figures = pl.read_parquet(paths["steering_rounds"])
    assert figures.columns == ["run_id", "round", "reward_loss", "heldout_accuracy", "destination_reward",
                               "target_similarity"]
    assert figures["round"].to_list() == list(range(ROUNDS))
    embeddings = pl.read_parquet(paths["embeddings"])
    assert embeddings.filter(pl.col("sequence_number") == -1).height == 1


def test_the_report_has_a_steering_section_only_with_steering_runs(straight) -> None:
    store, [run_id] = straight
    report = build_report(experiment_data(store, "steering-test"), None)
    assert "## 7. Steering runs: does the output move toward its target?" in report.markdown
    assert "steering_curves.png" in report.figures and "](steering_curves.png)" in report.markdown
    [row] = report.tables["steering"]
    assert row["run_id"] == run_id and row["rounds"] == ROUNDS and row["target"] == TARGET
    assert len(report.tables["steering_by_round"]) == ROUNDS
    plain = TraceStore(f"sqlite:///{store.url.split('///')[1]}.plain")
    plain.register_experiment(parse_experiment({"name": "plain", "networks": [["DummyT2I", "DummyI2T"]],
                                                "prompts": ["a"], "seeds": [1], "embedding_models": ["DummyEmbed"],
                                                "max_length": 4}, "t"))
    ids = plain.experiment_run_ids("plain")
    run_engines(plain, pool(), ids)
    embed_runs(plain, pool(), ids)
    assert "Steering runs" not in build_report(experiment_data(plain, "plain"), None).markdown


def test_artificial_user_thresholds_and_noise() -> None:
    class Fixed:
        dimension = 2

        def embed(self, items):
            return [np.array([1.0, 0.0], np.float32) if item.getpixel((0, 0))[0] > 100
                    else np.array([0.0, 1.0], np.float32) for item in items]

    red, grey = Image.new("RGB", (4, 4), (200, 0, 0)), Image.new("RGB", (4, 4), (50, 50, 50))
    user = ArtificialUser(Fixed(), np.array([1.0, 0.0]), both_good=0.9, both_bad=0.1)
    answers = user.judge([(red, grey), (grey, red), (red, red), (grey, grey)], seed=0)
    assert [a.choice for a in answers] == [Choice.FIRST, Choice.SECOND, Choice.BOTH_GOOD, Choice.BOTH_BAD]
    noisy = ArtificialUser(Fixed(), np.array([1.0, 0.0]), noise=5.0)
    flips = [a.choice for s in range(20) for a in noisy.judge([(red, grey)], seed=s)]
    assert Choice.SECOND in flips and Choice.FIRST in flips


def test_held_out_accuracy_counts_decided_pairs_and_both_answers_train_toward_a_tie() -> None:
    from tracer_pipeline.steering.loop import ranking_accuracy

    first, second = np.array([1.0, 0.0, 2.0, 5.0]), np.array([0.0, 1.0, 3.0, 1.0])
    assert ranking_accuracy(first, second, ["first", "first", "second", "both_good"]) == pytest.approx(2 / 3)
    assert ranking_accuracy(first[:1], second[:1], ["both_bad"]) is None
    assert [Choice(c).target for c in ("first", "second", "both_good", "both_bad")] == [1.0, 0.0, 0.5, 0.5]


def test_the_tiny_diffusers_twin_runs_and_the_real_model_says_where_it_looked(tmp_path: Path) -> None:
    store = TraceStore(f"sqlite:///{tmp_path / 'tiny.sqlite'}")
    exp = parse_experiment({"name": "tiny", "steering": [{"generator": "TinyDDIM", "target": "a red balloon",
                            "actions": 8, "pairs": 2, "reward_epochs": 5, "destination_epochs": 3,
                            "feedback": {"embedding_model": "DummyEmbed"}}],
                            "seeds": [1], "embedding_models": ["DummyEmbed"], "max_length": 2}, "t")
    ids = store.register_experiment(exp)
    outcome = run_engines(store, pool(), ids)[ids[0]]
    assert (outcome.status, outcome.computed) == (RunStatus.COMPLETE, 2)
    assert {i.output.size for i in store.invocations(ids[0])} == {(32, 32)}
    assert store.steering_rounds(ids[0])[0].destination.shape == (3, 32, 32)
    spec = get_model("DDPMCifar10")
    with pytest.raises(WeightsNotFoundError, match="google/ddpm-cifar10-32"):
        spec.loader(spec, LoadOptions(model_dir=tmp_path / "models"))


def test_a_target_image_is_the_reference_and_the_users_target(tmp_path: Path) -> None:
    from tracer_pipeline.sceneworld.grammar import Scene, SceneObject
    from tracer_pipeline.sceneworld.render import render

    render(Scene((SceneObject("square", "blue", "large", "left"),))).save(tmp_path / "target.png")
    config = {"name": "image-target", "steering": [{"generator": "SceneGen", "target_image": "target.png",
                                                    "actions": 8, "pairs": 2, "reward_epochs": 5,
                                                    "destination_epochs": 2}],
              "seeds": [1], "embedding_models": ["SceneCLIP"], "max_length": 2}
    store = TraceStore(f"sqlite:///{tmp_path / 'image.sqlite'}")
    [run_id] = store.register_experiment(parse_experiment(config, "cfg", base_dir=tmp_path))
    assert run_engines(store, pool(), [run_id])[run_id].status == RunStatus.COMPLETE
    embed_runs(store, pool(), [run_id])
    _, reference = store.reference_embedding(run_id, "SceneCLIP")
    [image_vector] = get_model("SceneCLIP").loader(get_model("SceneCLIP"), LoadOptions()).embed(
        [Image.open(tmp_path / "target.png")])
    np.testing.assert_allclose(reference, image_vector, atol=1e-6)
    cosines = store.trajectory(run_id, "SceneCLIP")[2] @ reference
    np.testing.assert_allclose(cosines, [r.target_similarity for r in store.steering_rounds(run_id)], atol=1e-5)
