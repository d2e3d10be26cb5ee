"""Figures drawn only when what they show changed.

matplotlib's ``savefig`` is the slowest part of a report (about 3 s a figure on a busy CPU), and
most of a report's figures show data that did not change since the last one: the same runs'
drift, the same stuck timeline. Each figure function in :mod:`.plots` is wrapped by
:func:`cached_figure`: while a :class:`FigureCache` is active (``build_report(..., figures=…)``)
the figure's key, a sha256 of the function's name, the drawing code and every argument's
content, is looked up among the figures of the previous report, and only a figure whose key is
new is drawn. Figures are deterministic (the same data give the same PNG bytes), so a reused
figure is byte for byte the one that would have been drawn.

The previous report's keys are kept next to it, in ``.figures.json`` (figure file name → key),
written by :func:`tracer_pipeline.reporting.files.write_report`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import functools
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec

import numpy as np
from PIL import Image

MANIFEST = ".figures.json"
_SCALARS = frozenset({str, int, float, bool, type(None)})

P = ParamSpec("P")

_ACTIVE: contextvars.ContextVar[FigureCache | None] = contextvars.ContextVar("figure_cache", default=None)


def _feed(digest: Any, value: Any) -> None:
    """Add ``value``'s content, with its type, to ``digest`` (unambiguously: lengths and tags)."""
    if value is None or isinstance(value, bool | int | float | str):
        digest.update(f"{type(value).__name__}:{value!r}\0".encode())
    elif isinstance(value, enum.Enum):
        digest.update(f"{type(value).__name__}:{value.value!r}\0".encode())
    elif isinstance(value, bytes):
        digest.update(f"bytes:{len(value)}\0".encode() + value)
    elif isinstance(value, np.ndarray | np.generic):
        array = np.ascontiguousarray(value)
        if array.dtype == object:
            raise TypeError("a figure's input holds an object array; its content cannot be hashed")
        digest.update(f"array:{array.dtype.str}:{array.shape}\0".encode() + array.tobytes())
    elif isinstance(value, Image.Image):
        digest.update(f"image:{value.mode}:{value.size}\0".encode() + value.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"{type(value).__qualname__}{{\0".encode())
        for field in dataclasses.fields(value):
            if not field.compare:  # not part of its value (e.g. how to read what the rest identifies)
                continue
            digest.update(f"{field.name}=".encode())
            _feed(digest, getattr(value, field.name))
        digest.update(b"}\0")
    elif isinstance(value, Mapping):
        digest.update(f"map:{len(value)}\0".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        if all(type(item) in _SCALARS for item in value):
            # A run's hashes, sequence numbers, captions: its repr, unambiguous for these types,
            # at once (item by item this was most of the key's time at 1,000 runs).
            digest.update(f"scalars:{tuple(value)!r}\0".encode())
            return
        digest.update(f"seq:{len(value)}\0".encode())
        for item in value:
            _feed(digest, item)
    else:
        raise TypeError(f"cannot hash a figure's input of type {type(value).__qualname__}; "
                        "teach reporting/figure_cache.py's _feed about it")


def figure_key(name: str, code: str, args: tuple, kwargs: Mapping[str, Any]) -> str:
    """sha256 of a figure function's name, its module's source (``code``) and its arguments."""
    digest = hashlib.sha256(f"{name}\0{code}\0".encode())
    _feed(digest, args)
    _feed(digest, dict(sorted(kwargs.items())))
    return digest.hexdigest()


class FigureCache:
    """PNG figures by key: those of the previous report (``load``), and those of this one."""

    def __init__(self, previous: Mapping[str, bytes] | None = None):
        self._previous = dict(previous or {})
        self._current: dict[str, bytes] = {}
        self.drawn = 0
        self.reused = 0

    @classmethod
    def load(cls, folder: Path) -> FigureCache:
        """The figures a report in ``folder`` was written with (none when there is no report, or
        its manifest or a figure file is missing or unreadable)."""
        try:
            names = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        previous = {}
        for name, key in names.items() if isinstance(names, dict) else ():
            path = folder / name
            if isinstance(key, str) and path.is_file():
                previous[key] = path.read_bytes()
        return cls(previous)

    def get_or_draw(self, key: str, draw: Callable[[], bytes | None]) -> bytes | None:
        if key in self._current:
            return self._current[key]
        if key in self._previous:
            self.reused += 1
            png: bytes | None = self._previous[key]
        else:
            self.drawn += 1
            png = draw()
        if png is not None:
            self._current[key] = png
        return png

    def keys(self, figures: Mapping[str, bytes]) -> dict[str, str]:
        """File name → key for each of a report's figures that went through this cache."""
        by_content = {png: key for key, png in self._current.items()}
        return {name: by_content[png] for name, png in sorted(figures.items()) if png in by_content}

    @contextmanager
    def active(self) -> Iterator[FigureCache]:
        """Route the figure functions through this cache inside the ``with`` block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def cached_figure(code: str) -> Callable[[Callable[P, bytes | None]], Callable[P, bytes | None]]:
    """Wrap a figure function so that, while a :class:`FigureCache` is active, it draws only when
    its key (:func:`figure_key`, with ``code`` the source of the module that draws) is new.
    Without an active cache it simply draws."""

    def wrap(draw: Callable[P, bytes | None]) -> Callable[P, bytes | None]:
        @functools.wraps(draw)
        def figure(*args: P.args, **kwargs: P.kwargs) -> bytes | None:
            cache = _ACTIVE.get()
            if cache is None:
                return draw(*args, **kwargs)
            key = figure_key(draw.__qualname__, code, args, kwargs)
            return cache.get_or_draw(key, lambda: draw(*args, **kwargs))

        return figure

    return wrap
