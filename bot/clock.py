"""Time and identity for leases: the one clock every module reads, and this process's name."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (every stored time is UTC)."""
    return datetime.now(UTC)


def worker_name() -> str:
    """A name unique to this worker process, readable in `deliveries show`: host, pid, nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
