"""Progress bars for a running experiment, fed from the trace store (the source of truth)."""

from __future__ import annotations

import sys
import threading

from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.progress import progress_counts

POLL_SECONDS = 0.5


class ProgressBars:
    """One bar each for runs, invocations, embeddings and diagrams, refreshed in a thread."""

    def __init__(self, store: TraceStore, run_ids: list[str]):
        from tqdm import tqdm

        self.store, self.run_ids = store, run_ids
        counts = progress_counts(store, run_ids)
        self._stop = threading.Event()
        bar = "{desc:<12}{bar:30} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
        quiet = not sys.stderr.isatty()  # bars redrawn into a log file are noise; the summary says it all
        self.bars = {name: tqdm(total=total or 0, desc=name, bar_format=bar, leave=True, disable=quiet)
                     for name, (_, total) in counts.items()}
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProgressBars:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        for bar in self.bars.values():
            bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.update()
            except Exception:  # a busy database at one poll is no reason to stop the run
                continue

    def update(self) -> None:
        for name, (n, total) in progress_counts(self.store, self.run_ids).items():
            bar = self.bars[name]
            bar.total = max(total, n) if total is not None else max(bar.total, n)
            bar.n = n
            bar.refresh()
