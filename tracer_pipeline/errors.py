"""One exception type per kind of failure; messages name what is wrong and what to do."""

from __future__ import annotations


class TracerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TracerError):
    """An experiment config is invalid. Holds every problem found, not only the first."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in the experiment config:\n{lines}")


class UnknownModelError(TracerError):
    """A model name is not in the registry."""


class WeightsNotFoundError(TracerError):
    """A real model's weights are not on this machine (and cannot be downloaded)."""


class ModelLoadError(TracerError):
    """A model could not be loaded for a reason other than missing weights."""


class StoreError(TracerError):
    """The trace store was asked for something it does not hold, or holds inconsistently."""


class RunNotRegisteredError(StoreError):
    """A run partition was materialized that no experiment has registered."""


class SettingsError(TracerError):
    """A setting (a flag or a ``TRACER_*`` environment variable) has a value that cannot work."""
