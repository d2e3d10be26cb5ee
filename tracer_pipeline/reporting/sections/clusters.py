"""Semantic states: the clusters of this experiment's outputs (``tracing.clusters``, HDBSCAN per
modality), what sits at their centre, how long runs stay in each and where they go next."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracer_pipeline.analysis.clusters import MAX_FITTED_OUTPUTS, NOISE, dwell_times, transitions
from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.data import ClusterData, ExperimentData, Report, RunData
from tracer_pipeline.reporting.findings import Finding, all_unsuited, notice, supported, unsupported
from tracer_pipeline.reporting.measures import MODALITIES, RunMeasures
from tracer_pipeline.reporting.sections.format import Row, figure, markdown_table, num, plural

SHOWN_MEDOID_IMAGES = 6


def run_sequences(clusters: ClusterData, run: RunData) -> dict[str, list[int]]:
    """The run's cluster labels in step order (−1 for noise), one sequence per modality: text and
    image clusters are separate states, and a run alternating modalities visits one of each."""
    found: dict[str, list[int]] = {}
    for seq, label in sorted(clusters.labels.get(run.run_id, {}).items()):
        modality = run.output_types[seq] if 0 <= seq < len(run.output_types) else None
        if modality is not None:
            found.setdefault(modality, []).append(label)
    return found


def cluster_rows(clusters: ClusterData, runs: Sequence[RunData]) -> tuple[list[Row], list[Row], list[Row]]:
    """Tables ``clusters`` (one row per cluster: size, runs, medoid, time spent), ``cluster_transitions``
    (from, to, count) and ``cluster_sequences`` (run, step, cluster)."""
    by_modality = {m: [run_sequences(clusters, r).get(m, []) for r in runs] for m in MODALITIES}
    medoids = {m.cluster: m for m in clusters.medoids}
    sizes: Counter[int] = Counter()
    members: dict[int, set[str]] = {}
    sequence_rows: list[Row] = []
    for run in runs:
        for seq, label in sorted(clusters.labels.get(run.run_id, {}).items()):
            sizes[label] += 1
            members.setdefault(label, set()).add(run.run_id)
            sequence_rows.append({"run_id": run.run_id, "sequence_number": int(seq), "cluster": int(label)})
    stays = {k: v for m in MODALITIES for k, v in dwell_times(by_modality[m]).items()}
    counts = sum((transitions(by_modality[m]) for m in MODALITIES), Counter())
    rows: list[Row] = []
    for label in sorted(set(sizes) - {NOISE}):
        medoid = medoids.get(label)
        rows.append({
            "cluster": label, "modality": medoid.modality if medoid else None, "outputs": sizes[label],
            "runs": len(members[label]), "mean_stay": float(np.mean(stays[label])) if label in stays else None,
            "longest_stay": max(stays[label]) if label in stays else None,
            "medoid_run_id": medoid.run_id if medoid else None,
            "medoid_step": medoid.sequence_number if medoid else None,
            "medoid_caption": medoid.caption if medoid else None,
        })
    transition_rows: list[Row] = [{"from_cluster": a, "to_cluster": b, "count": n}
                                  for (a, b), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return rows, transition_rows, sequence_rows


def fitted_on_samples(clusters: ClusterData, runs: Sequence[RunData]) -> dict[str, int]:
    """Modality → its number of outputs, for the modalities with more than
    ``analysis.clusters.MAX_FITTED_OUTPUTS``, whose clusters HDBSCAN fitted on a sample of them."""
    sizes: Counter[str] = Counter()
    for run in runs:
        for modality, labels in run_sequences(clusters, run).items():
            sizes[modality] += len(labels)
    return {m: n for m, n in sizes.items() if n > MAX_FITTED_OUTPUTS}


def clusters_finding(clusters: ClusterData | None, measures: Sequence[RunMeasures],
                     rows: Sequence[Row], transition_rows: Sequence[Row], sequence_rows: Sequence[Row]) -> Finding:
    """Clusters need the clusters asset, runs of outputs the embedder is suited to, and at least
    one cluster found."""
    outputs = len(sequence_rows)
    clustered = sum(row["cluster"] != NOISE for row in sequence_rows)
    figures = {
        "outputs": outputs, "clustered_outputs": clustered, "clusters": len(rows),
        "min_cluster_size": clusters.min_cluster_size if clusters else None,
        "per_cluster": [dict(r) for r in rows], "transitions": [dict(r) for r in transition_rows[:20]],
    }
    sampled = fitted_on_samples(clusters, [m.run for m in measures if m.run.embedder_unsuited is None]) if clusters \
        else {}
    if sampled:
        figures |= {"fitted_outputs": MAX_FITTED_OUTPUTS, "sampled_modalities": sampled}
    if blind := all_unsuited([m.run.embedder_unsuited for m in measures]):
        return unsupported(blind, **figures)
    if clusters is None:
        return unsupported("the outputs have not been clustered yet; materialise the clusters asset (the report "
                           "job does) and report again", **figures)
    if not rows:
        return unsupported(f"HDBSCAN found no group of {clusters.min_cluster_size} or more alike outputs among "
                           f"{outputs} (too few outputs, or every one unlike the others)", **figures)
    return supported(**figures)


def section(report: Report, data: ExperimentData, measures: Sequence[RunMeasures]) -> list[str]:
    """The clusters of the outputs with their medoids, time spent in each and transitions; adds
    finding ``clusters`` and tables ``clusters``, ``cluster_transitions`` and ``cluster_sequences``."""
    lines = ["", "## 5. Which states do the runs pass through?", ""]
    runs = [m.run for m in measures if m.run.embedder_unsuited is None]
    rows, transition_rows, sequence_rows = cluster_rows(data.clusters, runs) if data.clusters else ([], [], [])
    report.tables["clusters"] = rows
    report.tables["cluster_transitions"] = transition_rows
    report.tables["cluster_sequences"] = sequence_rows
    finding = report.sections["clusters"] = clusters_finding(data.clusters, measures, rows, transition_rows,
                                                             sequence_rows)
    lines += notice(finding)
    if not finding.valid or data.clusters is None:
        return lines
    f = finding.figures
    moves = sum(int(r["count"]) for r in transition_rows)
    lines.append(
        f"**Clusters:** HDBSCAN (minimum cluster size {f['min_cluster_size']}, text and images apart) finds "
        f"**{f['clusters']}** states among {f['outputs']} outputs; {f['clustered_outputs']} of them "
        f"({num(f['clustered_outputs'] / max(f['outputs'], 1))}) lie in one, the rest between states (noise). "
        f"Runs moved between states {plural(moves, 'time')}.")
    for modality, count in f.get("sampled_modalities", {}).items():
        lines.append(
            f"\n*Bounded for scale:* HDBSCAN was fitted on a seeded sample of {f['fitted_outputs']} of the {count} "
            f"{modality} outputs; every other {modality} output took the cluster of its nearest sampled output "
            "(noise when that one is noise).")
    lines += markdown_table(rows, [("cluster", "cluster"), ("modality", "modality"), ("outputs", "outputs"),
                                   ("runs", "runs"), ("mean_stay", "mean stay"), ("longest_stay", "longest stay"),
                                   ("medoid_caption", "medoid caption")], "clusters")
    if transition_rows:
        lines += markdown_table(transition_rows, [("from_cluster", "from"), ("to_cluster", "to"), ("count", "times")],
                                "cluster_transitions")
    sequences = {r.run_id: r for r in runs}
    lines += figure(report, "clusters.png", plots.cluster_timeline_figure(
        [(r, sorted(data.clusters.labels.get(r.run_id, {}).items())) for r in sequences.values()]), "clusters")
    images = tuple((m.cluster, m.image) for m in data.clusters.medoids if m.image is not None)
    if images:
        lines += figure(report, "cluster_medoids.png", plots.contact_sheet_figure(
            [plots.ContactRow("medoid image of each image cluster (labelled by cluster)",
                              images[:SHOWN_MEDOID_IMAGES], None)], label="cluster"), "cluster medoids")
    lines.append(
        "\n*What it means:* a cluster is a state many outputs share — a fixed point is a tight one, a theme a run "
        "keeps returning to a looser one; long stays mean the run settled, many transitions that it wanders "
        "between a few states. *What it cannot say:* clusters are those of one embedding model and of this "
        "experiment's outputs only (another experiment's numbers name other clusters); HDBSCAN calls noise what is "
        "not dense enough, which includes rare but real states.")
    return lines
