"""Time and identity for leases: the one clock every module reads, and this process's name."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (every stored time is UTC)."""
    return datetime.now(UTC)


def iso(at: datetime | None) -> str | None:
    """`at` in ISO 8601, or None when there is no time."""
    return None if at is None else at.isoformat()


def worker_name() -> str:
    """A name unique to this worker process, readable in `deliveries show`: host, pid, nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Every:
    """Says when a periodic look (for lapsed leases) is due for each of its callers (by
    name): at a caller's first ask, then at most once per `seconds`, or per `lease` of
    the caller's if that is shorter, of the times it gives (its own clock), and at once
    should that clock go back."""

    KEPT = 64  # callers remembered (a process has a few); past that all start afresh

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[str, datetime] = {}

    def due(self, who: str, now: datetime, lease: float) -> bool:
        seconds = min(self.seconds, lease)
        last = self._last.get(who)
        if last is not None and 0 <= (now - last).total_seconds() < seconds:
            return False
        if len(self._last) >= self.KEPT:
            self._last.clear()
        self._last[who] = now
        return True
