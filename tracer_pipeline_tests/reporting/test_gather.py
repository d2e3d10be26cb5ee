"""The report's data read from a store: a run's images are read only when a contact sheet shows
that run, and they are the stored outputs."""

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.reporting.compare import compare_store
from tracer_pipeline.reporting.gather import CONTACT_IMAGES, experiment_data
from tracer_pipeline.reporting.report import build_report
from tracer_pipeline.reporting.sections.precedents import CONTACT_ROWS
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.diagrams import compute_diagrams
from tracer_pipeline.tracing.embeddings import embed_runs
from tracer_pipeline.tracing.invocations import run_invocations

CONFIG = {
    "name": "gather", "networks": [["DummyT2I", "DummyI2T"]], "seeds": list(range(12)), "prompts": ["a red balloon"],
    "embedding_models": ["DummyEmbed"], "max_length": 20, "stop_when_stuck": False,
}


def test_images_are_read_only_for_the_runs_a_contact_sheet_shows(tmp_path, monkeypatch):
    store = TraceStore(f"sqlite:///{tmp_path / 'trace.sqlite'}")
    ids = store.register_experiment(parse_experiment(CONFIG, "x"))
    pool = ModelPool(resolve_load_options("cpu", "auto", tmp_path / "models"))
    run_invocations(store, pool, ids)
    embed_runs(store, pool, ids)
    compute_diagrams(store, ids)

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
