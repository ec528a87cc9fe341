"""What this process has seen of each model provider: its last call's outcome.

`GET /api/v1/health` reports it. Only calls this process made count (a provider no call
has gone to since start is "unknown"); no probe calls are made, so a health check costs
no tokens. An error is kept as its kind and HTTP status only: a provider's message can
quote the request, and health answers go to viewer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.agents.providers.base import ContextTooLong, ProviderError
from bot.clock import iso, utcnow


@dataclass
class Seen:
    calls: int = 0
    failures: int = 0
    last_ok_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    failing: bool = False

    def state(self) -> str:
        if self.calls == 0:
            return "unknown"
        return "failing" if self.failing else "ok"

    def summary(self) -> dict[str, Any]:
        return {
            "state": self.state(),
            "calls": self.calls,
            "failures": self.failures,
            "last_ok_at": iso(self.last_ok_at),
            "last_failure_at": iso(self.last_failure_at),
            "last_error": self.last_error,
        }


_seen: dict[str, Seen] = {}


def answered(provider: str) -> None:
    """A call to `provider` got its answer."""
    seen = _seen.setdefault(provider, Seen())
    seen.calls += 1
    seen.last_ok_at = utcnow()
    seen.failing = False


def refused(provider: str, error: ProviderError) -> None:
    """A call to `provider` failed. A request too long for the model's window is the
    request's fault, not the provider's: it counts as an answer."""
    if isinstance(error, ContextTooLong):
        answered(provider)
        return
    seen = _seen.setdefault(provider, Seen())
    seen.calls += 1
    seen.failures += 1
    seen.last_failure_at = utcnow()
    status = f" (HTTP {error.status})" if error.status is not None else ""
    seen.last_error = f"{type(error).__name__}{status}"
    seen.failing = True


def seen(provider: str) -> Seen:
    return _seen.get(provider) or Seen()
