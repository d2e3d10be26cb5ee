"""Progress bars for a running experiment: where it starts from the store, then the engine's own
reports (nothing is polled from the store while the work runs)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing import progress
from tracer_pipeline.tracing.progress import embeddable_share, progress_counts

BAR_FORMAT = "{desc:<12}{bar:30} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"


class ProgressBars:
    """One bar each for runs, invocations, embeddings and diagrams."""

    def __init__(self, store: TraceStore, run_ids: list[str]):
        from tqdm import tqdm

        quiet = not sys.stderr.isatty()  # bars redrawn into a log file are noise; the summary says it all
        self._share = {r.run_id: embeddable_share(r) for r in store.get_runs(run_ids)}
        counts = progress_counts(store, run_ids)
        self.bars = {name: tqdm(total=counts[name][1], initial=counts[name][0], desc=name, bar_format=BAR_FORMAT,
                                leave=True, disable=quiet)
                     for name in ("runs", "invocations", "embeddings", "diagrams")}
        self._listening = progress.listening(self)

    def __enter__(self) -> ProgressBars:
        self._listening.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._listening.__exit__(*exc)
        for bar in self.bars.values():
            bar.close()

    def advance(self, what: str, amount: int, run_id: str | None) -> None:
        if what == "shortfall":  # a run stopped early: its remaining work will not come
            self._shrink("invocations", amount)
            self._shrink("embeddings", round(amount * self._share.get(run_id, 0.0)))
            return
        if what not in self.bars:
            return
        bar = self.bars[what]
        bar.update(amount)
        if bar.total is not None and bar.n > bar.total:
            bar.total = bar.n

    def _shrink(self, name: str, amount: int) -> None:
        bar = self.bars[name]
        bar.total = max(bar.n, (bar.total or 0) - amount)
        bar.refresh()


class PairsBar:
    """One bar for the diagram distances the store comparison and the report compute, shown from
    the first one planned (none when everything is reused); its total grows as each matrix or
    search starts."""

    def __init__(self, stream: TextIO | None = None):
        self.bar = None
        # The bar appears inside a Dagster step, whose log capture redirects the process's
        # stderr: it draws on a copy of it taken before.
        self._own_stream = stream is None
        if stream is None:
            try:
                stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
            except (OSError, ValueError):  # stderr without a file descriptor: no bar
                self._own_stream = False
        self._stream = stream
        self._listening = progress.listening(self)

    def __enter__(self) -> PairsBar:
        self._listening.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._listening.__exit__(*exc)
        if self.bar is not None:
            self.bar.close()
        if self._own_stream:
            self._stream.close()

    def advance(self, what: str, amount: int, run_id: str | None) -> None:
        if what not in ("pairs_planned", "pairs"):
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc="distances", bar_format=BAR_FORMAT, leave=True, file=self._stream,
                            disable=self._stream is None or not self._stream.isatty())
        if what == "pairs_planned":
            self.bar.total += amount
            self.bar.refresh()
        else:
            self.bar.update(amount)
