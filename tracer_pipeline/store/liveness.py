"""Whether the process computing a run is still alive, so that a killed run reads as interrupted
everywhere (list-runs, status, the UI's metadata) at once, not at the next run-experiment.

A run set to ``running`` records its owner: host, process id and a heartbeat that a thread of the
owning process refreshes every :data:`HEARTBEAT_S` seconds while it holds running runs. The
owner is alive when, on this host, its process exists and its heartbeat is recent; on another
host (a worker of a shared PostgreSQL store), when its heartbeat is recent. A heartbeat older
than :data:`STALE_AFTER_S` also catches a process id reused by an unrelated process.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0  # twelve missed heartbeats: a process frozen this long is as good as gone


def this_host() -> str:
    return socket.gethostname()


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_alive(host: str, pid: int, heartbeat_at: datetime, now: datetime) -> bool:
    """Whether the process that claimed a run can still be computing it."""
    if now - heartbeat_at > timedelta(seconds=STALE_AFTER_S):
        return False
    return host != this_host() or process_exists(pid)


class Heartbeat:
    """A daemon thread calling ``beat`` every :data:`HEARTBEAT_S` seconds until it is stopped or
    ``beat`` returns False (nothing left to keep alive)."""

    def __init__(self, beat: Callable[[], bool]):
        self._beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tracer-run-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self._beat():
                    return
            except Exception:  # a busy or closed store: the next beat tries again
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
