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
