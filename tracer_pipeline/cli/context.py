"""What every command shares: the resolved settings, the trace store, and how to fail."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from tracer_pipeline.settings import Settings
from tracer_pipeline.store import TraceStore


class Context:
    def __init__(self, settings: Settings, verbose: bool):
        self.settings = settings
        self.verbose = verbose
        self._store: TraceStore | None = None

    @property
    def store(self) -> TraceStore:
        if self._store is None:
            self._store = TraceStore(self.settings.db_url)
        return self._store


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short(text: str | None, width: int) -> str:
    text = "(image)" if text is None else text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
