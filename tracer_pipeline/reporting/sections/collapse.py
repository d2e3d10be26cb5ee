"""Self-consuming runs: does the generator collapse when it retrains on its own samples, and when?

For each self-consuming run of the experiment: the cross-accuracy matrix (every generation's
classifier on every generation's test split), the label frequencies over generations (by
generation 0's classifier and by the labels each generation was trained on), the generator's
and classifier's final losses, grids of samples over generations, and the generation where
diversity snaps, decided by :func:`tracer_pipeline.analysis.collapse.snap_generation`.
"""

from __future__ import annotations

import numpy as np

from tracer_pipeline.analysis.collapse import SNAP_MIN_DROP, snap_generation
from tracer_pipeline.reporting import collapse_plots as plots
from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.sections.format import Row, figure, markdown_table, num, plural, short_id


def _summary(run, snap: int | None, fall: float) -> Row:
    div = plots.diversity(run)
    counts = run.label_counts["initial"]
    last = counts[-1] if len(counts) else np.zeros(0)
    dominant = int(np.argmax(last)) if last.size and last.sum() else None
    diagonal = np.diag(run.cross_accuracy)
    return {
        "run_id": run.run_id, "generator": run.generator, "seed": run.seed, "generations": len(div),
        "real_accuracy": float(run.cross_accuracy[0, 0]) if len(div) else None,
        "mean_own_accuracy": float(np.nanmean(diagonal)) if len(div) else None,
        "initial_on_last": float(run.cross_accuracy[0, -1]) if len(div) else None,
        "first_diversity": float(div[0]) if len(div) else None,
        "last_diversity": float(div[-1]) if len(div) else None,
        "largest_fall": fall, "snap_generation": snap,
        "dominant_label": run.label_names[dominant] if dominant is not None else None,
        "dominant_share": float(last[dominant] / last.sum()) if dominant is not None else None,
    }


def _by_generation(run) -> list[Row]:
    initial, current = plots.diversity(run), plots.diversity(run, "current")
    return [{"run_id": run.run_id, "generation": g, "diversity_initial": float(initial[g]),
             "diversity_current": float(current[g]), "generator_loss": float(run.generator_loss[g]),
             "classifier_loss": float(run.classifier_loss[g])} for g in range(len(initial))]


def section(report: Report, data: ExperimentData) -> list[str]:
    """Adds tables ``collapse`` (one row per self-consuming run) and ``collapse_by_generation``;
    nothing when the experiment has no self-consuming runs."""
    runs = [run for run in data.generations if len(run.generator_loss)]
    if not runs:
        return []
    snaps = {run.run_id: snap_generation(plots.diversity(run)) for run in runs}
    rows = [_summary(run, *snaps[run.run_id]) for run in runs]
    report.tables["collapse"] = rows
    report.tables["collapse_by_generation"] = [row for run in runs for row in _by_generation(run)]
    snapped = [row for row in rows if row["snap_generation"] is not None]
    lines = ["## 6. Self-consuming runs: does the generator collapse?", "",
             f"{plural(len(runs), 'self-consuming run')} ({', '.join(sorted({r.generator for r in runs}))}), "
             f"{plural(max(len(r.generator_loss) for r in runs), 'generation')} at most. Generation 0 is real data; "
             "generation g ≥ 1 is sampled from the generator after it was trained on generation g−1 and labelled "
             "by generation g−1's classifier. Each generation's classifier is trained on four fifths of its data; "
             "accuracies are measured on the other fifth (each generation's test split, with that generation's "
             "labels). Generation 0's classifier, trained on real data, also labels every generation: a fixed judge "
             "of what the samples look like.", ""]
    real = [row["real_accuracy"] for row in rows]
    lines.append(f"**Generation 0's classifier on held-out real data:** {num(min(real))} to {num(max(real))} "
                 f"accuracy over {plural(len(rows), 'run')}.")
    where = ", ".join(f"{row['snap_generation']} ({short_id(str(row['run_id']))})" for row in snapped)
    lines += ["", f"**Where diversity snaps:** {len(snapped)} of {len(rows)} runs snapped"
              + (f", at generation {where}" if snapped else "")
              + ". Diversity is the normalised entropy of the labels generation 0's classifier gives a generation's "
              "samples (1: every label equally often; 0: one label only); the snap is the generation whose diversity "
              f"fell most from the one before, if that fall is at least {SNAP_MIN_DROP} — a smaller largest fall is "
              "called a gradual decline."]
    lines += markdown_table(rows, [("run_id", "run"), ("generator", "generator"), ("seed", "seed"),
                                   ("generations", "generations"), ("real_accuracy", "gen-0 accuracy on real"),
                                   ("initial_on_last", "gen-0 classifier on last"),
                                   ("first_diversity", "diversity at 0"), ("last_diversity", "diversity at last"),
                                   ("largest_fall", "largest fall"), ("snap_generation", "snap at"),
                                   ("dominant_label", "dominant label at last"), ("dominant_share", "its share")],
                            "collapse")
    lines += figure(report, "collapse_cross_accuracy.png", plots.cross_accuracy_figure(runs), "cross-accuracy")
    lines += figure(report, "collapse_labels.png", plots.label_frequencies_figure(runs), "label frequencies")
    lines += ["", "Diversity by generation 0's classifier (solid) and of the labels each generation was trained on "
              "(dotted), with each run's snap (dashed); the generator's and the classifier's losses in the last epoch "
              "of their training on each generation."]
    lines += figure(report, "collapse_curves.png",
                    plots.curves_figure(runs, {run_id: snap for run_id, (snap, _) in snaps.items()}),
                    "diversity and losses")
    lines += figure(report, "collapse_grids.png", plots.grids_figure(runs), "samples over generations")
    if len(runs) > plots.MAX_PANELS:
        lines.append(f"*The figures show the first {plots.MAX_PANELS} runs; the tables hold all {len(runs)}.*")
    lines += ["", "*What it means:* a row of the cross-accuracy matrix is one generation's classifier on every "
              "generation's data: accuracy that holds on later generations but falls on earlier ones means the later "
              "data have become a narrower, easier subset; a column that is high for every classifier means that "
              "generation is easy to label for everyone, typically because it holds few kinds of samples. Falling "
              "diversity by the fixed judge is the collapse itself. *What it cannot say:* labels of generated "
              "samples are a classifier's guesses, not ground truth; the losses of different generations are "
              "measured on different data; and the snap's threshold is a convention, so the diversity curve and the "
              "label frequencies are the evidence."]
    return lines
