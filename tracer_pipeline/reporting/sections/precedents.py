"""Question 3: has it done this before? This experiment's runs against the earlier runs in the
store (the store comparison): nearest earlier runs by persistence diagram and by end state, and
the attractors (recurring end states) they share with other runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.compare import (
    DEFAULT_ATTRACTOR_THRESHOLD,
    NEAREST_CANDIDATES,
    diagram_hash,
    nearest_earlier_by_diagram,
    nearest_earlier_by_end_state,
    pair_sample,
)
from tracer_pipeline.reporting.data import ExperimentData, Report, RunData
from tracer_pipeline.reporting.findings import Finding, all_unsuited, notice, resting_on, supported, unsupported
from tracer_pipeline.reporting.measures import MODALITIES, RunMeasures, factor_level
from tracer_pipeline.reporting.sections import topology
from tracer_pipeline.reporting.sections.format import (
    Row,
    figure,
    markdown_table,
    median,
    num,
    plural,
    short_id,
)
from tracer_pipeline.reporting.sections.topology import DiagramDistances
from tracer_pipeline.store import AttractorData, StoreComparison

NEAR_PERCENTILE = 5  # "near" = closer than this percentile of all pairwise distances in the store
NEIGHBOURS = 1  # earlier runs listed per run and measure (at most compare.NEAREST_STORED: those are kept)
CONTACT_ROWS = 6  # runs shown on the contact sheet


def _neighbour_rows(own: Sequence[RunMeasures], found: dict[str, list[tuple[str, float]]], measure: str,
                    by_id: dict[str, RunData], own_ids: set[str]) -> list[Row]:
    """Rows of table ``nearest_earlier_runs`` for ``own`` by one ``measure``, each naming the
    earlier run's network, prompt and seed and whether it is from this experiment."""
    rows: list[Row] = []
    for m in own:
        for rank, (earlier, distance) in enumerate(found.get(m.run.run_id, []), start=1):
            other = by_id[earlier]
            rows.append({"run_id": m.run.run_id, "measure": measure, "rank": rank, "earlier_run_id": earlier,
                         "distance": distance, "earlier_in_experiment": earlier in own_ids,
                         "earlier_network": other.network_name, "earlier_prompt": factor_level(other, "prompt"),
                         "earlier_seed": other.seed})
    return rows


def _current_runs(data: ExperimentData, comparison: StoreComparison) -> tuple[list[RunData], list[RunData]]:
    """Store runs with a diagram that the comparison covers with the same diagram, and this
    experiment's runs it does not (computed before them, or before their diagram changed)."""
    hashes = dict(zip(comparison.run_ids, comparison.diagram_hashes, strict=True))
    current = [r for r in data.store_runs if r.diagram and hashes.get(r.run_id) == diagram_hash(r.diagram)]
    current_ids = {r.run_id for r in current}
    stale = [r for r in data.runs if r.diagram and r.run_id not in current_ids]
    return current, stale


def _attractor_rows(attractors: Sequence[AttractorData], own_ids: set[str], by_id: dict[str, RunData]) -> list[Row]:
    """Table ``attractors``: the attractors this experiment's runs take part in, numbered per
    modality over every attractor in the store comparison so that each has one name in every
    experiment's report."""
    rows: list[Row] = []
    counters: Counter[str] = Counter()
    for attractor in attractors:
        counters[attractor.modality] += 1
        members = [by_id[r] for r in attractor.run_ids if r in by_id]
        if not own_ids & set(attractor.run_ids):
            continue
        medoid = by_id.get(attractor.medoid_run_id)
        first = min(members, key=lambda r: r.order) if members else None
        rows.append({
            "attractor": f"{attractor.modality}-{counters[attractor.modality]}", "modality": attractor.modality,
            "size": len(attractor.run_ids), "experiment_runs": len(own_ids & set(attractor.run_ids)),
            "other_runs": len(set(attractor.run_ids) - own_ids), "medoid_run_id": attractor.medoid_run_id,
            "medoid_in_experiment": attractor.medoid_run_id in own_ids,
            "medoid_last_caption": medoid.last_caption if medoid else None,
            "first_run_id": first.run_id if first else None,
            "first_run_in_experiment": first.run_id in own_ids if first else None,
            "mean_distance_to_medoid": attractor.mean_distance_to_medoid,
            "run_ids": ",".join(attractor.run_ids),
        })
    return rows


def _contact_rows(data: ExperimentData, attractors: Sequence[Row]) -> list[plots.ContactRow]:
    """Representative runs with images: one per attractor that involves the experiment (its
    medoid when the medoid is this experiment's, else a member that is), then one per network."""
    by_id = {r.run_id: r for r in data.runs}
    rows, shown = [], set()
    for attractor in attractors:
        # Members not shown yet first; a run already shown for another attractor (the text and the
        # image attractor of one fixed point hold the same runs) is shown again rather than the
        # attractor dropped.
        members = sorted((by_id[r] for r in str(attractor["run_ids"]).split(",") if r in by_id and by_id[r].images),
                         key=lambda r: r.run_id in shown)
        medoid = by_id.get(str(attractor["medoid_run_id"]))
        run = medoid if medoid is not None and medoid.run_id in {m.run_id for m in members} else (
            members[0] if members else None)
        if run is None or len(rows) >= CONTACT_ROWS:
            continue
        note = "medoid" if run is medoid else f"member; medoid {short_id(str(attractor['medoid_run_id']))}"
        rows.append(plots.ContactRow(
            f"attractor {attractor['attractor']} ({attractor['size']} runs) — {short_id(run.run_id)} ({note}) · "
            f"{run.network_name} · seed {run.seed}", run.images.read(),
            f"medoid's last caption: {attractor['medoid_last_caption']}" if attractor["medoid_last_caption"]
            else run.last_caption))
        shown.add(run.run_id)
    shown_networks = {by_id[run_id].network_name for run_id in shown}
    for network in sorted({r.network_name for r in data.runs} - shown_networks):
        run = next((r for r in data.runs if r.network_name == network and r.images), None)
        if run is not None and len(rows) < CONTACT_ROWS:
            rows.append(plots.ContactRow(f"{short_id(run.run_id)} · {network} · seed {run.seed} · "
                                         f"{(factor_level(run, 'prompt') or '')[:40]}", run.images.read(),
                                         run.last_caption))
    return rows


def _nearest_by_shape(data: ExperimentData, measures: Sequence[RunMeasures], comparison: StoreComparison,
                      by_id: dict[str, RunData], own_ids: set[str]) -> tuple[Finding, list[Row], list[RunData]]:
    """Each run's nearest earlier run by H1 Wasserstein distance between diagrams, judged "near"
    against all pairs in the store; runs the comparison does not cover yet are returned to be
    named, not guessed. Runs of outputs the embedder is unsuited to take no part."""
    current, stale = _current_runs(data, comparison)
    current = [r for r in current if r.embedder_unsuited is None]
    nearest_runs = nearest_earlier_by_diagram(comparison, current, k=NEIGHBOURS)
    current_ids = {r.run_id for r in current}
    own_current = [m for m in measures if m.run.run_id in current_ids]
    rows = _neighbour_rows(own_current, nearest_runs.found, "H1 Wasserstein", by_id, own_ids)
    sample = pair_sample(current)
    matrix = topology.h1_wasserstein(sample, comparison) if len(sample) >= 2 else np.zeros((len(sample),) * 2)
    pairs = matrix[np.triu_indices(len(sample), k=1)]
    nearest = [float(row["distance"]) for row in rows if row["rank"] == 1]
    if not (pairs.size and nearest):
        return (unsupported("fewer than two runs in the store comparison have both a diagram and an earlier run",
                            runs_with_earlier=len(nearest)), rows, stale)
    near = float(np.percentile(pairs, NEAR_PERCENTILE))
    # Without the comparison's matrices (a store too large for all pairs) the figures say what was
    # bounded instead.
    bounded = {} if comparison.all_pairs else {
        "runs_compared": len(current), "sampled_runs": len(sample), "candidates": NEAREST_CANDIDATES,
        "unproven": len(set(nearest_runs.unproven) & {m.run.run_id for m in own_current})}
    return supported(
        runs_with_earlier=len(nearest), close=sum(d <= near for d in nearest), near_distance=near,
        near_percentile=NEAR_PERCENTILE, median_nearest=median(nearest), pairs=int(pairs.size),
        median_pair_distance=float(np.median(pairs)),
        nearest_elsewhere=sum(not row["earlier_in_experiment"] for row in rows if row["rank"] == 1), **bounded,
    ), rows, stale


def _shape_lines(finding: Finding, stale: Sequence[RunData]) -> list[str]:
    lines = notice(finding)
    f = finding.figures
    if finding.valid:
        lines.append(
            f"**Nearest earlier run by shape:** **{f['close']} of {f['runs_with_earlier']}** runs with an earlier run "
            f"have one whose persistence diagram is as close as the closest {f['near_percentile']}% of all pairs in "
            f"the store (H1 1-Wasserstein distance ≤ {num(f['near_distance'])}; median nearest "
            f"{num(f['median_nearest'])}, median of all {f['pairs']} pairs {num(f['median_pair_distance'])}); "
            f"{f['nearest_elsewhere']} of the {f['runs_with_earlier']} nearest earlier runs belong to other "
            "experiments. \"Earlier\" is registration order in the store.")
        if "sampled_runs" in f:
            lines.append(
                f"\n*Bounded for scale:* the store holds {f['runs_compared']} runs with a diagram, too many to compare "
                f"all pairs: the pairs above are those among {f['sampled_runs']} of them"
                + (" (a fixed sample: the runs whose ids hash lowest)"
                   if f["sampled_runs"] < f["runs_compared"] else "")
                + f", and each run's nearest earlier run was searched among the "
                f"{f['candidates']} earlier runs whose total H1 persistence is closest to its own (a lower bound of "
                f"the distance); for {f['runs_with_earlier'] - f['unproven']} of this experiment's runs the bound "
                f"proves it the nearest of all, for {f['unproven']} it is the nearest among those candidates.")
    if stale:
        named = ", ".join(short_id(r.run_id) for r in stale[:8])
        lines.append(f"\n{plural(len(stale), 'run')} of this experiment ({named}) are not in the store "
                     "comparison with their current diagram: it was computed before them; recompute it to include "
                     "them.")
    return lines


def _attractor_finding(rows: Sequence[Row], measures: Sequence[RunMeasures], comparison: StoreComparison | None,
                       threshold: float) -> Finding:
    """Attractors need the store comparison and runs of outputs the embedder is suited to."""
    figures = {"attractors": len(rows), "shared_with_other_experiments": sum(int(r["other_runs"]) > 0 for r in rows),
               "threshold": threshold}
    if blind := all_unsuited([m.run.embedder_unsuited for m in measures]):
        return unsupported(blind, **figures)
    if comparison is None:
        return unsupported("the store-wide comparison has not been computed yet; materialise store_comparison and "
                           "report again", **figures)
    return supported(**figures)


def section(report: Report, data: ExperimentData, measures: Sequence[RunMeasures],
            comparison: StoreComparison | None, shape: DiagramDistances) -> list[str]:
    """Whether the runs' diagrams can be compared (``shape``), nearest earlier runs by diagram
    (needs ``comparison`` and valid diagram distances) and by end state, and the attractors the
    runs share (needs ``comparison``), with a contact sheet; adds findings ``diagram_distances``,
    ``nearest_by_shape`` and ``attractors`` and tables ``nearest_earlier_runs`` and ``attractors``."""
    lines = ["", "## 3. Has it done this before?", ""]
    report.sections["diagram_distances"] = shape.finding
    lines += topology.lines(shape)
    own_ids = {r.run_id for r in data.runs}
    by_id = {r.run_id: r for r in data.store_runs} | {r.run_id: r for r in data.runs}
    suited = [m for m in measures if m.run.embedder_unsuited is None]
    neighbours: list[Row] = []
    threshold = comparison.attractor_threshold if comparison else DEFAULT_ATTRACTOR_THRESHOLD
    attractor_rows: list[Row] = []
    if comparison is None:
        shape_finding = unsupported("the store-wide comparison has not been computed yet; materialise "
                                    "store_comparison and report again")
        stale: list[RunData] = []
    else:
        shape_finding, neighbours, stale = _nearest_by_shape(data, suited, comparison, by_id, own_ids)
        attractor_rows = _attractor_rows(comparison.attractors, {m.run.run_id for m in suited}, by_id)
    shape_finding = report.sections["nearest_by_shape"] = resting_on(shape.finding, "the diagram distances",
                                                                     shape_finding)
    lines += _shape_lines(shape_finding, stale)
    if not shape_finding.valid:
        neighbours = []
    suited_store = [r for r in data.store_runs if r.embedder_unsuited is None]
    for modality in MODALITIES:
        found = nearest_earlier_by_end_state(suited_store, modality, k=NEIGHBOURS)
        rows = _neighbour_rows(suited, found, f"end state ({modality})", by_id, own_ids)
        neighbours += rows
        nearest = [float(row["distance"]) for row in rows if row["rank"] == 1]
        if nearest:
            lines.append(
                f"\n**Nearest earlier end state ({modality}):** **{sum(d <= threshold for d in nearest)} of "
                f"{len(nearest)}** runs ended within cosine distance {threshold} of where an earlier run ended "
                f"(last {modality} output; median distance to the nearest earlier one {num(median(nearest))}).")
    report.tables["nearest_earlier_runs"] = neighbours
    compared = {row["run_id"] for row in neighbours}
    firsts = [m for m in suited if m.run.run_id not in compared]
    if firsts:
        lines.append(f"\n{plural(len(firsts), 'run')} ha{'s' if len(firsts) == 1 else 've'} no earlier run to compare "
                     "with (first in the store, or without a diagram and end state).")
    if neighbours:
        lines += markdown_table(neighbours, [("run_id", "run"), ("measure", "by"),
                                             ("earlier_run_id", "nearest earlier"), ("distance", "distance"),
                                             ("earlier_in_experiment", "same experiment"),
                                             ("earlier_prompt", "its prompt")], "nearest_earlier_runs")
    report.tables["attractors"] = attractor_rows
    attractors = report.sections["attractors"] = _attractor_finding(attractor_rows, measures, comparison, threshold)
    lines += notice(attractors)
    if attractors.valid:
        if attractor_rows:
            lines.append(
                f"**Attractors:** this experiment's runs take part in **{len(attractor_rows)}** recurring end states "
                f"(clusters of ≥ 2 runs in the store whose last outputs of one modality are within a mean cosine "
                f"distance of {threshold}, average linkage); "
                f"{attractors.figures['shared_with_other_experiments']} of them also hold runs from outside this "
                "experiment.")
            lines += markdown_table(attractor_rows, [("attractor", "attractor"), ("size", "runs"),
                                                     ("experiment_runs", "from here"), ("other_runs", "elsewhere"),
                                                     ("medoid_run_id", "medoid"),
                                                     ("medoid_last_caption", "medoid's last caption")], "attractors")
        else:
            lines.append(f"**Attractors:** none of this experiment's runs shares its end state with another run "
                         f"(within a mean cosine distance of {threshold}).")
    contact = _contact_rows(data, attractor_rows)
    if contact:
        lines += figure(report, "contact_sheet.png", plots.contact_sheet_figure(contact), "contact sheet")
    lines.append(
        "\n*What it means:* a near earlier run with the same shape or end state means this behaviour is not new: "
        "the network has been here before, possibly from another prompt or seed. *What it cannot say:* a small "
        "diagram distance says the trajectories have similar topology, not similar content; \"nearest\" is "
        "relative to what the store holds, and with few stored runs every run looks new.")
    return lines
