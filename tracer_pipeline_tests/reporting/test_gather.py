"""The report's data read from a store: a run's images are read only when a contact sheet shows
that run, and they are the stored outputs."""

import dataclasses

import pytest

from tracer_pipeline.analysis.surrogates import surrogate_total_persistence
from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.gather import CONTACT_IMAGES, experiment_data
from tracer_pipeline.reporting.report import build_report
from tracer_pipeline.reporting.sections import topology
from tracer_pipeline.reporting.sections.precedents import CONTACT_ROWS
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations

CONFIG = {
    "name": "gather", "networks": [["DummyT2I", "DummyI2T"]], "seeds": list(range(12)), "prompts": ["a red balloon"],
    "embedding_models": ["DummyEmbed"], "max_length": 20, "stop_when_stuck": False,
}


@pytest.fixture
def traced(tmp_path):
    """The experiment's runs traced, embedded and with their diagrams: (store, run ids)."""
    store = TraceStore(f"sqlite:///{tmp_path / 'trace.sqlite'}")
    ids = store.register_experiment(parse_experiment(CONFIG, "x"))
    pool = ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    compute_diagrams(store, ids)
    return store, ids


def test_images_are_read_only_for_the_runs_a_contact_sheet_shows(traced, monkeypatch):
    store, ids = traced

    reads: list[list[tuple[str, int]]] = []
    images = store.images
    monkeypatch.setattr(store, "images", lambda outputs: reads.append(list(outputs)) or images(outputs))
    data = experiment_data(store, "gather")
    assert reads == [] and all(run.images for run in data.runs)
    first = data.runs[0]
    assert [seq for seq, _ in first.images.outputs] == list(range(0, 20, 2))[:CONTACT_IMAGES]
    digests = {seq: digest for seq, _, digest, _ in store.invocation_digests([first.run_id])[first.run_id]}
    assert all(digests[seq] == digest for seq, digest in first.images.outputs)

    report = build_report(data, compare_store(data.store_runs, embedding_model=data.embedding_model))
    assert "contact_sheet.png" in report.figures
    assert 1 <= len(reads) <= CONTACT_ROWS < len(ids)
    shown = {run_id for outputs in reads for run_id, _ in outputs}
    assert len(shown) == len(reads)  # each shown run read once, in one query
    [(seq, image)] = first.images.read()[:1]
    [stored] = [i for i in store.invocations(first.run_id) if i.sequence_number == seq]
    assert image.tobytes() == stored.output.tobytes()


def test_the_surrogate_baseline_is_stored_with_a_diagram_and_not_computed_again_by_the_report(traced, monkeypatch):
    store, _ = traced
    data = experiment_data(store, "gather")
    with_h1 = [run for run in data.runs if run.diagram[1].size]
    assert len(with_h1) > 0 and all(run.surrogate_h1_total_persistence is None
                                    for run in data.runs if not run.diagram[1].size)
    for run in with_h1:  # what the report computed from the trajectory it reads
        assert run.surrogate_h1_total_persistence == surrogate_total_persistence(run.run_id, run.trajectory)
    comparison = compare_store(data.store_runs, embedding_model=data.embedding_model)
    computed = build_report(dataclasses.replace(
        data, runs=[dataclasses.replace(r, surrogate_h1_total_persistence=None) for r in data.runs]), comparison)

    def not_again(*_):
        raise AssertionError("the report computed a surrogate diagram that is stored")

    monkeypatch.setattr(topology, "surrogate_total_persistence", not_again)
    stored = build_report(data, comparison)
    figures = stored.sections["diagram_distances"].figures
    assert figures == computed.sections["diagram_distances"].figures and figures["runs_with_surrogate"] == len(with_h1)
