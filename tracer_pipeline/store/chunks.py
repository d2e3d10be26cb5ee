"""Long lists of keys read or deleted a slice at a time: SQLite refuses a statement with more
than 32,766 bound variables, and an ``IN (...)`` list of 10,000 runs' keys passes it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    """Slices small enough for an ``IN (...)`` list on every database."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
