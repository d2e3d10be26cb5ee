"""One exception type per kind of failure; messages name what is wrong and what to do."""

from __future__ import annotations


class TracerError(Exception):
    """Base class of every error this package raises on purpose.

    ``exit_code``: what the command line exits with: 2 when what the user gave (a config, a path,
    a database) cannot be used, 1 when work failed.
    """

    exit_code = 1


class ConfigError(TracerError):
    """An experiment config is invalid. Holds every problem found, not only the first."""

    exit_code = 2

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


class StoreOpenError(StoreError):
    """The database named is not a trace store this version can use (missing, foreign, of another
    schema version, damaged or unreachable); it is left untouched."""

    exit_code = 2


class UsageError(TracerError):
    """What the user named cannot be used: a path that cannot be written, weights that are absent."""

    exit_code = 2


class RunNotRegisteredError(StoreError):
    """A run partition was materialized that no experiment has registered."""


class SettingsError(TracerError):
    """A setting (a flag or a ``TRACER_*`` environment variable) has a value that cannot work."""

    exit_code = 2
