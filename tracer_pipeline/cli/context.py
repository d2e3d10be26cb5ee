"""What every command shares: the resolved settings, the trace store, and how to fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from tracer_pipeline.errors import UsageError
from tracer_pipeline.settings import Settings
from tracer_pipeline.store import TraceStore


class Context:
    def __init__(self, settings: Settings, verbose: bool):
        self.settings = settings
        self.verbose = verbose
        self._store: TraceStore | None = None
        self._read_store: TraceStore | None = None

    @property
    def store(self) -> TraceStore:
        """The trace store, for commands that write (created when missing)."""
        if self._store is None:
            self._store = TraceStore(self.settings.db_url)
        return self._store

    @property
    def read_store(self) -> TraceStore:
        """The trace store, for commands that only read: nothing is created or changed, and a
        missing store is an error naming where it was looked for."""
        if self._store is not None:
            return self._store
        if self._read_store is None:
            self._read_store = TraceStore(self.settings.db_url, read_only=True)
        return self._read_store


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def writable_folder(path: Path, option: str) -> Path:
    """``path`` created if missing, or a :class:`UsageError` naming the option when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".tracer-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {option} {path}: {exc.strerror or exc}") from None
    return path


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short(text: str | None, width: int) -> str:
    text = "(image)" if text is None else text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
