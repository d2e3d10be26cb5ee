"""Comparisons across every run in the store ("has it done this before?"): persistence diagram
distances, recurring end states (attractors), and each run's nearest earlier runs.

The all-pairs matrices grow as n², so ``compare_store`` keeps the rows of a previous comparison
for runs whose diagrams did not change and computes only the pairs that involve new or changed
runs, and computes all pairs only for up to ``MAX_ALL_PAIRS_RUNS`` runs (1,000 runs: 500,000
pairs per matrix). Beyond that, the matrices are those of a fixed sample of ``MAX_ALL_PAIRS_RUNS``
runs (``pair_sample``: the distribution of the pairwise distances is that of the sample's pairs),
kept and reused in the same way, and each run's nearest earlier runs by diagram are searched
among the earlier runs whose lower bound is nearest its own, proven exact where the bound allows
(``analysis.nearest_runs.nearest_earlier_by_candidates``), and kept with the comparison: a run's
answer depends only on the runs before it, so it is searched again only when a run before it (or
itself) is new or changed. A report then computes no diagram distance for either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from tracer_pipeline.analysis.attractors import find_attractors
from tracer_pipeline.analysis.cosine import unit_rows
from tracer_pipeline.analysis.diagram_distances import METRICS, Progress, diagram_distance_matrix
from tracer_pipeline.analysis.nearest_runs import nearest_earlier_by_candidates, nearest_earlier_runs
from tracer_pipeline.reporting.data import RunData
from tracer_pipeline.reporting.measures import MODALITIES, end_state
from tracer_pipeline.store import AttractorData, StoreComparison
from tracer_pipeline.tracing import progress

HOMOLOGY_DIMS = (0, 1)
DEFAULT_ATTRACTOR_THRESHOLD = 0.1
END_STATE_BLOCK = 512  # end states compared with every other at a time
# All-pairs diagram distances up to this many runs; beyond, a sample of this many (module docstring).
MAX_ALL_PAIRS_RUNS = 1000
# Earlier runs whose diagram distance is computed for each run when there are no all-pairs matrices.
NEAREST_CANDIDATES = 256
# Nearest earlier runs by H1 Wasserstein kept per run with a comparison without all pairs.
NEAREST_STORED = 1


def diagram_hash(diagram: dict[int, np.ndarray]) -> str:
    """sha256 of a persistence diagram's bars: each dimension, in order, as its float64 (k, 2)
    array bytes. Equal diagrams hash equally whatever dtype or layout they were stored in."""
    digest = hashlib.sha256()
    for dim in sorted(diagram):
        bars = np.ascontiguousarray(np.asarray(diagram[dim], dtype=np.float64).reshape(-1, 2))
        digest.update(f"H{dim}:{bars.shape[0]}\0".encode())
        digest.update(bars.tobytes())
    return digest.hexdigest()


def _bars(run: RunData, dim: int) -> np.ndarray:
    return np.asarray(run.diagram.get(dim, np.empty((0, 2))), dtype=np.float64).reshape(-1, 2)


def pair_sample(runs: Sequence[RunData]) -> list[RunData]:
    """``runs`` when there are at most ``MAX_ALL_PAIRS_RUNS``, else the ``MAX_ALL_PAIRS_RUNS`` whose
    run ids hash lowest (sha256), in their given order: a sample fixed by the runs alone, which
    adding runs to the store changes little."""
    if len(runs) <= MAX_ALL_PAIRS_RUNS:
        return list(runs)
    chosen = set(sorted(range(len(runs)), key=lambda i: hashlib.sha256(runs[i].run_id.encode()).digest())
                 [:MAX_ALL_PAIRS_RUNS])
    return [run for i, run in enumerate(runs) if i in chosen]


def pairs_progress() -> Progress:
    """A ``progress`` callback for one computation of diagram distances that tells this process's
    progress listeners (``tracing.progress``) the pairs it plans (``pairs_planned``) and then
    those it has done (``pairs``): the store comparison of thousands of long runs takes minutes."""
    reported = 0

    def step(done: int, total: int) -> None:
        nonlocal reported
        if done == 0:
            progress.report("pairs_planned", total)
        else:
            progress.report("pairs", done - reported)
        reported = done

    return step


@dataclass(frozen=True)
class KeptMatrix:
    """A distance matrix between runs (``run_ids`` order), and the hashes (``diagram_hash``) of
    the diagrams it was computed from."""

    run_ids: tuple[str, ...]
    diagram_hashes: tuple[str, ...]
    matrix: np.ndarray


def reuse_pairs(run_ids: Sequence[str], hashes: Sequence[str], diagrams: Sequence[np.ndarray], metric: str,
                previous: KeptMatrix | None) -> np.ndarray:
    """The (n, n) distance matrix of ``diagrams`` (those of ``run_ids``, with ``hashes``): the pairs
    of runs whose diagram is unchanged since ``previous`` are taken from it, the others computed."""
    position = {} if previous is None else {run_id: i for i, run_id in enumerate(previous.run_ids)}
    done = [i for i, (run_id, digest) in enumerate(zip(run_ids, hashes, strict=True))
            if run_id in position and previous.diagram_hashes[position[run_id]] == digest]
    todo = sorted(set(range(len(run_ids))) - set(done))
    matrix = np.zeros((len(run_ids), len(run_ids)))
    if done:
        old = [position[run_ids[i]] for i in done]
        matrix[np.ix_(done, done)] = previous.matrix[np.ix_(old, old)]
    if todo:
        matrix[np.ix_(todo, todo)] = diagram_distance_matrix([diagrams[i] for i in todo], metric,
                                                             progress=pairs_progress())
    if todo and done:
        across = diagram_distance_matrix([diagrams[i] for i in todo], metric, others=[diagrams[i] for i in done],
                                         progress=pairs_progress())
        matrix[np.ix_(todo, done)] = across
        matrix[np.ix_(done, todo)] = across.T
    return matrix


def _distance_matrices(runs: Sequence[RunData], hashes: Sequence[str],
                       previous: StoreComparison | None) -> dict[tuple[int, str], np.ndarray]:
    """(dim, metric) → (n, n) matrix over ``runs``, reusing ``previous`` for pairs of runs in its
    matrices whose diagrams did not change."""
    run_ids = [run.run_id for run in runs]
    previous_hashes: tuple[str, ...] = ()
    if previous is not None:
        by_id = dict(zip(previous.run_ids, previous.diagram_hashes, strict=True))
        previous_hashes = tuple(by_id[run_id] for run_id in previous.matrix_ids)
    matrices = {}
    for dim in HOMOLOGY_DIMS:
        diagrams = [_bars(run, dim) for run in runs]
        for metric in METRICS:
            stored = previous.matrices.get((dim, metric)) if previous is not None else None
            kept = None if stored is None else KeptMatrix(previous.matrix_ids, previous_hashes, stored)
            matrices[(dim, metric)] = reuse_pairs(run_ids, hashes, diagrams, metric, kept)
    return matrices


def _nearest_runs(runs: Sequence[RunData], hashes: Sequence[str], previous: StoreComparison | None
                  ) -> tuple[dict[str, tuple[tuple[str, float], ...]], frozenset[str]]:
    """Each run with a diagram of outputs its embedding model is suited to (the runs the report
    asks about): its ``NEAREST_STORED`` nearest earlier runs among them by H1 Wasserstein distance,
    searched among ``NEAREST_CANDIDATES`` candidates, and the runs whose answer is unproven.

    A run's answer depends on itself and the runs before it only, so ``previous``'s is kept for
    every run earlier than the first new or changed one (all are searched again when a run that
    had a diagram then has none now, e.g. a deleted one)."""
    with_diagram = [i for i, run in enumerate(runs) if run.diagram and run.embedder_unsuited is None]
    ids = [runs[i].run_id for i in with_diagram]
    keys = np.array([runs[i].order for i in with_diagram])
    kept: dict[str, tuple[tuple[str, float], ...]] = {}
    if previous is not None and previous.nearest is not None:
        previous_hash = dict(zip(previous.run_ids, previous.diagram_hashes, strict=True))
        now = {run_id: hashes[i] for run_id, i in zip(ids, with_diagram, strict=True)}
        if set(previous.nearest) <= set(now):
            changed = [key for run_id, key in zip(ids, keys, strict=True)
                       if run_id not in previous.nearest or previous_hash[run_id] != now[run_id]]
            first_changed = min(changed, default=np.inf)
            kept = {run_id: previous.nearest[run_id] for run_id, key in zip(ids, keys, strict=True)
                    if key < first_changed}
    queries = [p for p, run_id in enumerate(ids) if run_id not in kept]
    neighbours, proven = nearest_earlier_by_candidates(
        [_bars(runs[i], 1) for i in with_diagram], "wasserstein", keys, NEAREST_STORED, NEAREST_CANDIDATES,
        queries=queries, progress=pairs_progress())
    nearest = {run_id: kept[run_id] if run_id in kept else tuple((ids[j], d) for j, d in neighbours[p])
               for p, run_id in enumerate(ids)}
    unproven = {run_id for run_id in previous.unproven if run_id in kept} if kept else set()
    unproven |= {ids[p] for p in queries if not proven[p]}
    return nearest, frozenset(unproven)


def end_states(runs: Sequence[RunData], modality: str) -> tuple[list[int], np.ndarray]:
    """The indices of the runs that have an output of ``modality`` and their end states (the
    embedding of their last such output), as an (R, d) array."""
    indices, states = [], []
    for index, run in enumerate(runs):
        state = end_state(run, modality)
        if state is not None:
            indices.append(index)
            states.append(state)
    return indices, np.stack(states) if states else np.zeros((0, 0))


def _attractors(runs: Sequence[RunData], threshold: float) -> tuple[AttractorData, ...]:
    found = []
    for modality in MODALITIES:
        indices, states = end_states(runs, modality)
        for attractor in find_attractors(states, threshold) if indices else []:
            if len(attractor.members) < 2:
                continue  # a run alone is not a recurring end state
            found.append(AttractorData(
                modality=modality,
                run_ids=tuple(runs[indices[m]].run_id for m in attractor.members),
                medoid_run_id=runs[indices[attractor.medoid]].run_id,
                mean_distance_to_medoid=attractor.mean_distance_to_medoid,
            ))
    return tuple(found)


def compare_store(
    runs: list[RunData],
    previous: StoreComparison | None = None,
    attractor_threshold: float = DEFAULT_ATTRACTOR_THRESHOLD,
    embedding_model: str | None = None,
) -> StoreComparison:
    """All-pairs diagram distances and attractors over every given run (one embedding model).

    With more than ``MAX_ALL_PAIRS_RUNS`` runs the matrices are those of ``pair_sample(runs)``
    (``matrix_run_ids``), and ``nearest`` holds each run's nearest earlier runs searched among
    candidates (module docstring), reused from ``previous`` where no run before it changed. The
    attractors always take every run.

    Distances: for H0 and H1, bottleneck and 1-Wasserstein
    (``analysis.diagram_distances.diagram_distance_matrix``; infinite bars dropped; a run without
    a diagram in a dimension counts as the empty diagram; H0 of Rips diagrams, every bar born at
    0, by sorting the deaths instead of the general matching, with the same values). Rows of ``previous`` are reused for
    runs present there with an unchanged ``diagram_hash``; only pairs involving the other runs
    are computed (the ``others=`` argument for new × kept). ``previous`` is not reused when it
    was made with another embedding model.

    Attractors: per modality ("text", "image"), ``analysis.attractors.find_attractors`` (average
    linkage on cosine distance, cut at ``attractor_threshold``) on the end states, the embedding
    of each run's last output of that modality; runs without such an output are left out. Only
    clusters of at least two runs are kept: a run alone is not a recurring end state.

    Args:
        runs: the runs to compare, in any order (the result keeps it).
        previous: an earlier comparison to reuse.
        attractor_threshold: the largest mean cosine distance inside an attractor.
        embedding_model: the embedding model the runs' trajectories and diagrams come from;
            defaults to ``previous.embedding_model``.

    Raises:
        ValueError: neither ``embedding_model`` nor ``previous`` names the embedding model.
    """
    if embedding_model is None:
        if previous is None:
            raise ValueError("compare_store needs embedding_model (or a previous comparison to take it from)")
        embedding_model = previous.embedding_model
    if previous is not None and previous.embedding_model != embedding_model:
        previous = None
    hashes = tuple(diagram_hash(run.diagram) for run in runs)
    sample = pair_sample(runs)
    every = len(sample) == len(runs)
    by_id = dict(zip((run.run_id for run in runs), hashes, strict=True))
    nearest, unproven = (None, frozenset()) if every else _nearest_runs(runs, hashes, previous)
    return StoreComparison(
        embedding_model=embedding_model,
        run_ids=tuple(run.run_id for run in runs),
        diagram_hashes=hashes,
        matrices=_distance_matrices(sample, [by_id[run.run_id] for run in sample], previous),
        attractors=_attractors(runs, attractor_threshold),
        attractor_threshold=attractor_threshold,
        matrix_run_ids=None if every else tuple(run.run_id for run in sample),
        nearest=nearest,
        unproven=unproven,
    )


def _nearest(run_ids: Sequence[str], distances: np.ndarray, order: Sequence[int],
             k: int) -> dict[str, list[tuple[str, float]]]:
    neighbours = nearest_earlier_runs(distances, np.asarray(order), k)
    return {run_id: [(run_ids[j], d) for j, d in found] for run_id, found in zip(run_ids, neighbours, strict=True)}


@dataclass(frozen=True)
class NearestRuns:
    """Each run's nearest earlier runs (run id → up to k (earlier run id, distance), nearest
    first; empty for the first run) and the runs whose answer is not proven to be that of all
    pairs (searched among candidates only)."""

    found: dict[str, list[tuple[str, float]]]
    unproven: tuple[str, ...]


def nearest_earlier_by_diagram(
    comparison: StoreComparison,
    runs: Sequence[RunData],
    k: int = 1,
    homology_dim: int = 1,
    metric: str = "wasserstein",
) -> NearestRuns:
    """Each run's k nearest earlier runs by persistence-diagram distance.

    With the comparison's all-pairs matrix, ``analysis.nearest_runs.nearest_earlier_runs`` on
    ``comparison.matrices[(homology_dim, metric)]``; without it (more than ``MAX_ALL_PAIRS_RUNS``
    runs), ``nearest_earlier_by_candidates`` on the runs' diagrams with ``NEAREST_CANDIDATES``
    candidates each: the same answer where it is proven, the nearest among the candidates where
    not. Those the comparison keeps (``comparison.nearest``: H1 Wasserstein, up to
    ``NEAREST_STORED`` each) are taken as they are when ``runs`` are the runs it searched.
    "Earlier" means a lower ``RunData.order``. Only runs both in the comparison and in ``runs``
    (which supply the order and, without a matrix, the diagrams) take part.
    """
    order = {run.run_id: run.order for run in runs}
    index = [i for i, run_id in enumerate(comparison.run_ids) if run_id in order]
    ids = [comparison.run_ids[i] for i in index]
    keys = [order[run_id] for run_id in ids]
    if comparison.all_pairs and (homology_dim, metric) in comparison.matrices:
        distances = comparison.matrices[(homology_dim, metric)][np.ix_(index, index)]
        return NearestRuns(_nearest(ids, distances, keys, k), ())
    if ((homology_dim, metric) == (1, "wasserstein") and comparison.nearest is not None
            and k <= NEAREST_STORED and set(ids) == set(comparison.nearest)):
        found = {run_id: list(comparison.nearest[run_id][:k]) for run_id in ids}
        return NearestRuns(found, tuple(run_id for run_id in ids if run_id in comparison.unproven))
    by_id = {run.run_id: run for run in runs}
    neighbours, proven = nearest_earlier_by_candidates(
        [_bars(by_id[run_id], homology_dim) for run_id in ids], metric, np.asarray(keys), k, NEAREST_CANDIDATES)
    found = {run_id: [(ids[j], d) for j, d in near] for run_id, near in zip(ids, neighbours, strict=True)}
    return NearestRuns(found, tuple(run_id for run_id, ok in zip(ids, proven, strict=True) if not ok))


def nearest_earlier_by_end_state(
    runs: Sequence[RunData], modality: str, k: int = 1
) -> dict[str, list[tuple[str, float]]]:
    """Each run's k nearest earlier runs by the cosine distance between their end states (the
    last output of ``modality``); runs without such an output are left out."""
    indices, states = end_states(runs, modality)
    if not indices:
        return {}
    ids = [runs[i].run_id for i in indices]
    keys = np.array([runs[i].order for i in indices])
    points = unit_rows(states)
    found: dict[str, list[tuple[str, float]]] = {}
    # A block of rows against every run at a time: the (R, R) matrix of 10,000 runs would take
    # 800 MB. 1 − s(x, y) = ‖x̂ − ŷ‖² / 2 from exact differences, as the attractors use: runs stuck
    # on the same output are exactly 0 apart.
    for start in range(0, len(ids), END_STATE_BLOCK):
        block = cdist(points[start:start + END_STATE_BLOCK], points, metric="sqeuclidean") / 2
        for offset, row in enumerate(block):
            i = start + offset
            earlier = np.flatnonzero(keys < keys[i])
            if earlier.size > k:  # only the runs as near as the k-th can rank among the k nearest
                earlier = earlier[row[earlier] <= np.partition(row[earlier], k - 1)[k - 1]]
            ranked = earlier[np.lexsort((earlier, keys[earlier], row[earlier]))][:k]
            found[ids[i]] = [(ids[j], float(row[j])) for j in ranked]
    return found
