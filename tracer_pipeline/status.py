"""A run's status: one type for the store, the engine, the CLI, the report and the UI."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"  # registered, nothing computed for its current target yet
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # marked running, but the process computing it is gone (read, never stored)
    COMPLETE = "complete"  # reached max_length
    STUCK = "stuck"  # stopped early at an exact fixed point or cycle
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """No more invocations will come without a change of target (a longer max_length)."""
        return self in (RunStatus.COMPLETE, RunStatus.STUCK, RunStatus.FAILED)

    @property
    def done(self) -> bool:
        """Finished without an error."""
        return self in (RunStatus.COMPLETE, RunStatus.STUCK)
