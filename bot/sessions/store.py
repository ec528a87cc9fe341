"""Sessions in the shared database: launch, inputs, turns, deadlines, closing (blocking SQL).

Every state change is a conditional UPDATE, so when several processes race for the same
change (a turn, a close, an expiry) exactly one of them wins and the others see False.
"""

from __future__ import annotations

from bot.sessions.store_cancel import CancelAnswer, Cancels
from bot.sessions.store_deadlines import Deadlines
from bot.sessions.store_launch import LaunchAndLookups
from bot.sessions.store_restart import RestartRefused, Restarts
from bot.sessions.store_rows import (
    ACTIVE,
    AGENT_REMOVED,
    AWAITING,
    BUDGET,
    BUSY,
    CANCELLED,
    CAPACITY,
    CLOSED,
    CONSUMED,
    CONVERSATION,
    DONE,
    FAILED,
    FAILURE,
    IDLE,
    IDLE_EXPIRY,
    LIFETIME,
    OPERATOR,
    PARENT_CLOSED,
    PURGED,
    QUEUED,
    RESUMABLE,
    TAKEN,
    TIME_LIMIT,
    TURNING,
    UNCONSUMED,
    UNINSTALLED,
    USER_SIGNAL,
    WITHDRAWN,
    WORKING,
    Event,
    InputInfo,
    Launch,
    LaunchResult,
    SessionInfo,
    SessionOptions,
    add_event,
    has_status,
    new_session_id,
)
from bot.sessions.store_turns import TurnLease

__all__ = [
    "ACTIVE",
    "AGENT_REMOVED",
    "AWAITING",
    "BUDGET",
    "BUSY",
    "CANCELLED",
    "CAPACITY",
    "CLOSED",
    "CONSUMED",
    "CONVERSATION",
    "DONE",
    "FAILED",
    "FAILURE",
    "IDLE",
    "IDLE_EXPIRY",
    "LIFETIME",
    "OPERATOR",
    "PARENT_CLOSED",
    "PURGED",
    "QUEUED",
    "RESUMABLE",
    "TAKEN",
    "TIME_LIMIT",
    "TURNING",
    "UNCONSUMED",
    "UNINSTALLED",
    "USER_SIGNAL",
    "WITHDRAWN",
    "WORKING",
    "CancelAnswer",
    "Event",
    "InputInfo",
    "Launch",
    "LaunchResult",
    "RestartRefused",
    "SessionInfo",
    "SessionOptions",
    "SessionStore",
    "add_event",
    "has_status",
    "new_session_id",
]


class SessionStore(LaunchAndLookups, TurnLease, Deadlines, Restarts, Cancels):
    """Sessions in the shared database (see the module's docstring); built from its parts:
    the base (store_base), launch and lookups, the input queue and turn lease, deadlines,
    restarts of failed sessions."""
