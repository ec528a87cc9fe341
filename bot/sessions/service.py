"""The session runtime: launching, feeding, closing, running turns, and the timers.

Handlers call `SessionService`; a `TurnRunner` per process runs turns (one at a time per
session, across every process, through `SessionStore.claim_turn`); a `Timekeeper` per
process wakes at the next deadline and closes what is overdue. Everything written to a
host goes through the outbox; everything that happens goes into the transcript.
"""

from __future__ import annotations

from bot.sessions.service_approvals import ApprovalDecisions
from bot.sessions.service_core import (
    SESSION_IN_KEY,
    AgentCatalog,
    Enqueue,
    PermissionCheck,
    ServiceCore,
    Trigger,
    tighter,
)
from bot.sessions.timekeeper import Timekeeper
from bot.sessions.turns import TurnRunner

__all__ = [
    "SESSION_IN_KEY",
    "AgentCatalog",
    "Enqueue",
    "PermissionCheck",
    "ServiceCore",
    "SessionService",
    "Timekeeper",
    "Trigger",
    "TurnRunner",
    "tighter",
]


class SessionService(ApprovalDecisions):
    """The session runtime handlers call: the core (service_core) and approvals."""
