"""What the store-wide comparison and an experiment's report are computed from, as fingerprints,
so that they are recomputed only when one of their inputs changed.

A fingerprint is a sha256 over cheap summaries of the inputs, read without loading trajectories
or diagrams, plus the source of the code that computes the result (``analysis/`` and
``reporting/``), so that a change to the analysis makes every report stale without a version
number to remember. The Dagster assets use a fingerprint as their data version and skip the
work when it equals the one of their last materialization.

Light on purpose: this module imports neither numba, matplotlib nor scikit-learn, so deciding
that nothing changed costs a few queries.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from tracer_pipeline.config import Experiment, canonical_json
from tracer_pipeline.store import RunRecord, TraceStore

PACKAGE = Path(__file__).resolve().parent.parent
ANALYSIS_CODE = ("analysis", "reporting")


@cache
def code_fingerprint() -> str:
    """sha256 of the analysis and reporting code (every ``.py`` file, by relative path)."""
    digest = hashlib.sha256()
    for folder in ANALYSIS_CODE:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            digest.update(f"{path.relative_to(PACKAGE).as_posix()}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def _run_summary(run: RunRecord) -> list:
    return [run.run_id, run.created_at.isoformat() if run.created_at else None, list(run.network), run.prompt,
            run.seed, str(run.status), run.stop_reason, run.error, run.max_length, list(run.embedding_models),
            run.max_homology_dim, sorted(run.experiments)]


def comparison_fingerprint(store: TraceStore) -> str:
    """Changes when the store-wide comparison could: a persistence diagram added or replaced, a
    run registered or changed (status, embedding models, order), an invocation or embedding
    stored or removed, or the analysis code changed.

    An embedding replaced in place by one of the same count changes the run's diagrams (they are
    recomputed from it), and so the fingerprint, once its diagrams are recomputed.
    """
    runs = sorted(store.get_runs(), key=lambda r: r.run_id)
    counts = store.counts([r.run_id for r in runs])
    payload = {
        "code": code_fingerprint(),
        "diagrams": store.diagrams_fingerprint(),
        "runs": [_run_summary(r) + [counts[r.run_id]] for r in runs],
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def report_fingerprint(store: TraceStore, experiment: str, comparison: str | None = None) -> str:
    """Changes when the experiment's report could: its config, the comparison's inputs
    (``comparison``, computed here when not given), or what is stored for its own runs (every
    output, whose images and captions the report shows).

    Raises:
        StoreError: no experiment of that name is stored.
    """
    row = store.require_experiment(experiment)
    own = store.experiment_run_ids(experiment)
    payload = {
        "comparison": comparison if comparison is not None else comparison_fingerprint(store),
        "config": row.config,
        "runs": store.content_hashes(own, "invocations"),
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


@cache
def package_fingerprint() -> str:
    """sha256 of every ``.py`` file of the package and the size and time of every shipped weight
    file: any change to the code or the shipped models (versions bumped or not)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix == ".py":
            digest.update(f"{path.relative_to(PACKAGE).as_posix()}\0".encode() + path.read_bytes())
        elif path.suffix in {".safetensors", ".json"} and path.parent.name == "weights":
            stat = path.stat()
            digest.update(f"{path.relative_to(PACKAGE).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def experiment_fingerprint(store: TraceStore, experiment: Experiment, where: dict[str, str]) -> str | None:
    """Changes whenever ``run-experiment`` could have something to do for this experiment: its
    config as given, anything the report is computed from (every run's status, length, counts
    and diagrams, the experiment's outputs), the package's code and shipped weights, and
    ``where`` (the store, the Dagster instance, the model folder). None when the experiment is not
    stored under this config.

    Conservative on purpose: equal fingerprints mean the last complete ``run-experiment`` of this
    config left nothing to compute, so the next one may skip Dagster altogether; anything else
    takes the full path, which itself skips whatever is already stored.
    """
    row = store.experiment(experiment.name)
    if row is None or row.config_hash != experiment.config_hash:
        return None
    payload = {"config": experiment.config_hash, "source": experiment.source, "code": package_fingerprint(),
               "where": where,
               "report": report_fingerprint(store, experiment.name)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]
