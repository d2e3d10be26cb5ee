"""Diagram distances between an experiment's runs, kept beside its report.

In a store too large for all pairs (:mod:`.compare`), the store comparison's matrices hold a
fixed sample of the store's runs, which need not hold an experiment's own: the H1 Wasserstein
distances between the experiment's runs (questions 3 and 4: the "near" percentile, PERMANOVA and
the heatmap; ``sections.topology.h1_wasserstein``) would be computed anew by every report, up to
500,000 pairs. A :class:`DistanceCache` keeps them next to the report, in ``.distances.npz`` (per
embedding model: the runs, their diagrams' hashes and the matrix, written by
:func:`tracer_pipeline.reporting.files.write_report`), and the next report computes only the
pairs that involve new or changed diagrams (``compare.reuse_pairs``); the values are the same.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tracer_pipeline.reporting.compare import KeptMatrix, reuse_pairs

MANIFEST = ".distances.npz"


class DistanceCache:
    """Matrices by key (the embedding model): those of the previous report (``load``), and those
    of this one (``current``)."""

    def __init__(self, previous: Mapping[str, KeptMatrix] | None = None):
        self.previous = dict(previous or {})
        self.current: dict[str, KeptMatrix] = {}

    @classmethod
    def load(cls, folder: Path) -> DistanceCache:
        """The matrices a report in ``folder`` was written with (none when there is no report, or
        its file is missing or unreadable)."""
        try:
            with np.load(folder / MANIFEST, allow_pickle=False) as arrays:
                previous = {
                    str(key): KeptMatrix(tuple(str(r) for r in arrays[f"{i}_run_ids"]),
                                         tuple(str(h) for h in arrays[f"{i}_hashes"]), arrays[f"{i}_matrix"])
                    for i, key in enumerate(arrays["keys"])}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return cls()
        return cls(previous)

    def matrix(self, key: str, run_ids: Sequence[str], hashes: Sequence[str], diagrams: Sequence[np.ndarray],
               metric: str = "wasserstein") -> np.ndarray:
        """The distance matrix of ``diagrams``, reusing the previous report's pairs of unchanged runs;
        kept as this report's."""
        matrix = reuse_pairs(run_ids, hashes, diagrams, metric, self.previous.get(key))
        self.current[key] = KeptMatrix(tuple(run_ids), tuple(hashes), matrix)
        return matrix

    def write(self, folder: Path) -> None:
        """This report's matrices into ``folder`` (nothing when it computed none)."""
        if not self.current:
            return
        arrays: dict[str, np.ndarray] = {"keys": np.array(list(self.current), dtype=str)}
        for i, kept in enumerate(self.current.values()):
            arrays |= {f"{i}_run_ids": np.array(kept.run_ids, dtype=str),
                       f"{i}_hashes": np.array(kept.diagram_hashes, dtype=str), f"{i}_matrix": kept.matrix}
        with open(folder / MANIFEST, "wb") as file:
            np.savez(file, **arrays)
