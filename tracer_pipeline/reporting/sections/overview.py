"""The report's opening: what the experiment holds (runs, networks, prompts, seeds, statuses) and
the per-run table every later section draws on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracer_pipeline.reporting.data import ExperimentData, Report
from tracer_pipeline.reporting.measures import RunMeasures, factor_level, trajectory_rows
from tracer_pipeline.reporting.sections.format import Row, plural, short_id
from tracer_pipeline.status import RunStatus


def _run_rows(measures: Sequence[RunMeasures]) -> list[Row]:
    """Table ``run_metrics``: one row per run with every per-run measure the questions use."""
    rows: list[Row] = []
    for m in measures:
        run = m.run
        rows.append({
            "run_id": run.run_id, "network": run.network_name, "prompt": factor_level(run, "prompt"),
            "seed": run.seed, "t2i_model": factor_level(run, "t2i_model"), "i2t_model": factor_level(run, "i2t_model"),
            "status": run.status, "stop_reason": run.stop_reason, "order": run.order,
            "outputs": m.n_outputs, "embedded_outputs": int(trajectory_rows(run).shape[0]),
            "has_reference": m.drift is not None,
            "final_drift": m.final_drift,
            "mean_drift": float(m.drift.mean()) if m.drift is not None and m.drift.size else None,
            "mean_step_distance": float(m.step_distance.mean()) if m.step_distance.size else None,
            "exactly_stuck": m.orbit is not None,
            "exact_stuck_start": m.orbit.start if m.orbit else None,
            "exact_period": m.orbit.period if m.orbit else None,
            "exact_network_cycles": m.orbit.network_cycles if m.orbit else None,
            "exact_repeat_at": m.orbit.detected_at if m.orbit else None,
            "semantically_stuck": m.semantic_start is not None,
            "semantic_stuck_start": m.semantic_start,
            "stuck_start": m.stuck_start,
            "time_to_stuck": m.time_to_stuck,
            "time_to_stuck_censored": m.stuck_start is None and m.time_to_stuck is not None,
            "h0_entropy": m.entropy.get(0), "h1_entropy": m.entropy.get(1),
            "h0_bars": int(np.asarray(run.diagram[0]).reshape(-1, 2).shape[0]) if 0 in run.diagram else None,
            "h1_bars": int(np.asarray(run.diagram[1]).reshape(-1, 2).shape[0]) if 1 in run.diagram else None,
        })
    return rows


def section(report: Report, data: ExperimentData, measures: Sequence[RunMeasures]) -> list[str]:
    """The title and what the experiment holds, with the runs too short or failed to count
    everywhere; adds table ``run_metrics``."""
    report.tables["run_metrics"] = _run_rows(measures)
    statuses = Counter(m.run.status for m in measures)
    networks = sorted({m.run.network_name for m in measures})
    lines = [f"# Experiment report: {data.name}", "",
             f"Embedding model **{data.embedding_model}**. This experiment has {plural(len(measures), 'run')} "
             f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none stored yet'}) over "
             f"{plural(len(networks), 'network')}, "
             f"{plural(len({factor_level(m.run, 'prompt') for m in measures}), 'prompt')} and "
             f"{plural(len({m.run.seed for m in measures}), 'seed')}; the store holds "
             f"{plural(len(data.store_runs), 'run')} embedded by this model.",
             "", "Steps are invocation sequence numbers from 0 (step 0 is the first output). Distances between "
             "outputs are cosine distances 1 − cos(x, y) between their embeddings (0 = same direction, about 1 = "
             "unrelated)."]
    short = [m for m in measures if trajectory_rows(m.run).shape[0] < 3]
    if short:
        lines += ["", f"{plural(len(short), 'run')} ha{'s' if len(short) == 1 else 've'} fewer than 3 embedded "
                  f"outputs ({', '.join(short_id(m.run.run_id) for m in short[:8])}{'…' if len(short) > 8 else ''}): "
                  "they add little to any curve below."]
    failed = [m for m in measures if m.run.status == RunStatus.FAILED]
    if failed:
        lines += ["", f"{plural(len(failed), 'run')} failed; their stored outputs are used where a measure needs "
                  "one run only, and left out of the group comparisons (divergence, collapse)."]
    return lines
