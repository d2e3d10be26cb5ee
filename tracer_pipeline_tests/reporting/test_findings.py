"""Each section's finding on constructed runs whose answer is known, including the cases where
the data cannot support one: the JSON and the Markdown say the same."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tracer_pipeline.models.suitability import unsuited_reason
from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.data import ClusterData, ClusterMedoid, ExperimentData
from tracer_pipeline.reporting.findings import SECTIONS
from tracer_pipeline.reporting.report import build_report, experiment_report
from tracer_pipeline_tests.reporting.runs import DIM, basis, make_run, unit, wander

PROMPTS = ("a cat", "a ship")


def _data(runs, name="known", model="embedder", clusters=None) -> ExperimentData:
    return ExperimentData(name, model, runs, runs, clusters)


def loop(rng: np.random.Generator, centre: int, steps: int) -> np.ndarray:
    """A noisy circle in the plane of two basis vectors: a trajectory with one clear H1 loop."""
    angles = np.linspace(0, 2 * np.pi, steps, endpoint=False)
    points = np.cos(angles)[:, None] * basis(centre) + np.sin(angles)[:, None] * basis(centre + 1)
    return np.stack([unit(p + 0.3 * basis(0) + 0.02 * rng.normal(size=DIM)) for p in points])


def long_runs(steps: int = 24) -> list:
    """Two prompts × three seeds of looping runs: every section has what it needs."""
    rng = np.random.default_rng(3)
    return [make_run(f"{p}{seed}", loop(rng, 2 + 2 * p, steps), prompt=prompt, seed=seed, order=3 * p + seed)
            for p, prompt in enumerate(PROMPTS) for seed in (1, 2, 3)]


def short_runs() -> list:
    """Two prompts × three seeds of runs stopped after two outputs: their H1 diagrams are empty."""
    rng = np.random.default_rng(4)
    return [make_run(f"{p}{seed}", wander(rng, basis(2 + p), 2, 0.3), prompt=prompt, seed=seed,
                     order=3 * p + seed, status="stuck") for p, prompt in enumerate(PROMPTS) for seed in (1, 2, 3)]


def test_short_runs_leave_diagram_distances_and_what_rests_on_them_unanswered():
    runs = short_runs()
    report = build_report(_data(runs), compare_store(runs, embedding_model="embedder"))
    shape = report.sections["diagram_distances"]
    assert not shape.valid and shape.figures["runs_with_h1_bar"] == 0 and shape.figures["runs"] == 6
    assert "only 0 of 6 runs have a finite H1 bar" in shape.reason
    nearest = report.sections["nearest_by_shape"]
    assert not nearest.valid and nearest.reason.startswith("rests on the diagram distances")
    outcomes = report.sections["factors"].figures["outcomes"]
    assert not outcomes["H1 Wasserstein distances"]["valid"] and not outcomes["H1 entropy"]["valid"]
    assert outcomes["H1 Wasserstein distances"]["strongest_factor"] is None
    assert not report.sections["recurrence"].valid
    assert "recurrence matrix needs 10" in report.sections["recurrence"].reason
    # The Markdown says the same, and draws none of the figures that would imply an answer.
    assert f"**Not answered here:** {shape.reason}. No conclusion is drawn." in report.markdown
    assert f"**Not answered here:** {nearest.reason}. No conclusion is drawn." in report.markdown
    assert "Nearest earlier run by shape:**" not in report.markdown
    assert not {"distance_heatmap.png", "diagrams.png", "recurrence.png"} & set(report.figures)
    assert not any(r["outcome"] == "H1 Wasserstein distances" for r in report.tables["factor_effects"])


def test_long_looping_runs_answer_every_section_with_a_baseline():
    runs = long_runs()
    medoids = (ClusterMedoid(0, "image", "01", 0, None, None),)
    clusters = ClusterData({r.run_id: {t: 0 if t < 12 else -1 for t in range(24)} for r in runs}, medoids, 5)
    report = build_report(_data(runs, clusters=clusters), compare_store(runs, embedding_model="embedder"))
    assert list(report.sections) == list(SECTIONS)
    invalid = {name: f.reason for name, f in report.sections.items() if not f.valid}
    assert invalid == {}
    shape = report.sections["diagram_distances"].figures
    assert shape["runs_with_h1_bar"] == 6 and shape["pairs"] == 15
    # A circle is one big loop; a random walk of the same steps in another order is not.
    assert shape["runs_above_surrogate"] == shape["runs_with_surrogate"] == 6
    drift = report.sections["drift"].figures
    # Every output leans 0.3 towards the prompt's direction: 1 − 0.3 / √1.09 from any prompt.
    assert drift["unrelated_distance"] == pytest.approx(1 - 0.3 / np.sqrt(1.09), abs=0.01)
    assert report.sections["divergence"].figures["seed"]["groups"] == 2
    assert report.sections["clusters"].figures["clusters"] == 1


def test_an_embedder_unsuited_to_the_outputs_answers_nothing_that_rests_on_embeddings():
    reason = unsuited_reason("SceneCLIP", ("TinySD", "TinyBLIP"))
    assert reason == ("SceneCLIP was trained only on SceneWorld scenes and captions; the outputs of TinySD, TinyBLIP "
                      "are outside what it has seen")
    assert unsuited_reason("SceneCLIP", ("SceneT2I", "SceneI2T")) is None
    assert "random weights" in unsuited_reason("TinyCLIP", ("SceneT2I", "SceneI2T"))
    assert unsuited_reason("CLIP-ViT-B-32", ("TinySD", "TinyBLIP")) is None

    # Noise the embedder cannot see: every output embeds alike, which would read as "stuck from step 0".
    noise = [dataclasses.replace(r, embedder_unsuited=reason) for r in short_runs()]
    same = np.tile(basis(1), (12, 1))
    noise = [dataclasses.replace(r, trajectory=same.astype(np.float32), trajectory_seqs=tuple(range(12)),
                                 output_types=("image", "text") * 6, output_hashes=tuple(str(i) for i in range(12)),
                                 status="complete") for r in noise]
    report = build_report(_data(noise), None)
    for name in ("drift", "divergence", "recurrence", "diagram_distances", "attractors", "factors", "clusters"):
        assert not report.sections[name].valid, name
        assert reason in report.sections[name].reason, name
    stuck = report.sections["stuck"].figures
    assert report.sections["stuck"].valid and not stuck["semantic_valid"]
    assert stuck["semantically_stuck"] == 0 and reason in stuck["semantic_reason"]
    assert "**Semantically stuck:** not measured" in report.markdown


def test_an_embedder_that_cannot_tell_prompts_apart_does_not_call_runs_semantically_stuck():
    runs = [dataclasses.replace(r, trajectory=np.tile(basis(1), (12, 1)).astype(np.float32),
                                trajectory_seqs=tuple(range(12)), output_types=("image", "text") * 6,
                                output_hashes=tuple(f"{r.run_id}{i}" for i in range(12)), status="complete")
            for r in short_runs()]
    stuck = build_report(_data(runs), None).sections["stuck"].figures
    assert not stuck["semantic_valid"] and "cannot tell apart the first" in stuck["semantic_reason"]
    assert stuck["first_output_similarity"]["image"] == pytest.approx(1.0)


def test_per_invocation_seed_runs_are_never_exactly_stuck():
    run = make_run("varied", np.tile(np.stack([basis(1), basis(2)]), (6, 1)))
    fixed = build_report(_data([run]), None).sections["stuck"].figures
    varied = build_report(_data([dataclasses.replace(run, seed_mode="per_invocation")]), None).sections["stuck"].figures
    assert fixed["exactly_stuck"] == 1
    assert varied["exactly_stuck"] == 0 and varied["per_invocation_seed_runs"] == 1
    assert varied["semantically_stuck"] == 1  # semantic stuckness applies in both modes


def test_factors_need_two_runs_per_level():
    runs = long_runs()[:4]  # prompt "a cat" × 3 seeds and one "a ship": seeds are singletons
    outcomes = build_report(_data(runs), None).sections["factors"].figures["outcomes"]
    assert all(o["strongest_factor"] != "seed" for o in outcomes.values())
    assert outcomes["final drift"]["strongest_factor"] in (None, "prompt")


def test_two_embedding_models_both_appear_with_the_model_as_a_factor():
    runs = long_runs()
    other = [dataclasses.replace(r, trajectory=np.roll(r.trajectory, 3, axis=1)) for r in runs]
    report = experiment_report([(_data(runs, model="first"), None), (_data(other, model="second"), None)])
    document = report.to_json()
    assert document["experiment"] == "known"
    assert list(document["embedding_models"]) == ["first", "second"]
    for model in ("first", "second"):
        sections = document["embedding_models"][model]["sections"]
        assert set(SECTIONS) <= set(sections)
        assert all(isinstance(s["valid"], bool) and ("reason" in s) for s in sections.values())
    json.dumps(document)  # plain JSON, no numpy
    assert "across_embedding_models" in document
    factors = document["across_embedding_models"]["sections"]["factors"]
    assert "embedding_model" in {r["factor"] for r in report.tables["factor_effects_across_embedding_models"]}
    assert isinstance(factors["valid"], bool)
    markdown = report.markdown
    assert "| section | first | second |" in markdown
    assert "Embedding model **first**" in markdown and "Embedding model **second**" in markdown
    assert "](first/drift.png)" in markdown and "first/drift.png" in report.figures
    assert {row["embedding_model"] for row in report.tables["run_metrics"]} == {"first", "second"}
