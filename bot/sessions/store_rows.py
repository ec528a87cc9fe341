"""Session rows as the rest of the bot sees them: states, close reasons, frozen records."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, insert
from sqlalchemy.orm import Session

from bot.agents.models import usd
from bot.db.lean import Lean
from bot.db.models import LIVE_STATES, SessionInput, SessionRow, TranscriptEvent
from bot.events import HEADLESS, ThreadRef
from bot.sessions.search import search_text_for

ACTIVE, BUSY, IDLE, CLOSED, FAILED = "active", "busy", "idle", "closed", "failed"
AWAITING = "awaiting_approval"  # live: an approval gate is open
# queued -> taken (handed to a running turn) -> consumed; queued -> withdrawn
QUEUED, TAKEN, CONSUMED, WITHDRAWN = "queued", "taken", "consumed", "withdrawn"
UNCONSUMED = (QUEUED, TAKEN)
WORKING = (ACTIVE, BUSY, IDLE)  # live and not waiting on an approval
TURNING = (ACTIVE, BUSY)  # starting or in a turn: the states whose time the time limit counts

# Why a session ended.
USER_SIGNAL, CANCELLED, DONE = "user_signal", "cancelled", "done"
TIME_LIMIT, IDLE_EXPIRY, LIFETIME = "time_limit", "idle_expiry", "lifetime"
# Ended by the clock: a later mention in the thread resumes the session.
RESUMABLE = (TIME_LIMIT, IDLE_EXPIRY, LIFETIME)
CAPACITY, FAILURE, UNINSTALLED, PURGED, OPERATOR = (
    "capacity",
    "failure",
    "uninstalled",
    "purged",
    "operator",
)
BUDGET, PARENT_CLOSED = "budget", "parent_closed"
AGENT_REMOVED = "agent_removed"
CONVERSATION = "conversation"  # the transcript event kind of a remembered message


@dataclass(frozen=True)
class SessionOptions:
    """A session's settings as launched (from the configuration, frozen for its life)."""

    listen_to_comments: bool = True
    keep_open_for_comments: bool = False
    time_limit_minutes: float = 10.0
    user_signals: tuple[str, ...] = ("/done",)
    idle_expiry_minutes: float = 10.0
    lifetime_minutes: float = 60.0
    max_extend_minutes: float = 60.0
    feed_outsider_comments: bool = False
    # Per-session overrides a launch through the API carried (bot/api/overrides.py).
    runtime_params: dict[str, Any] | None = None  # camelCase, prompt level below a turn's
    additional_instructions: str | None = None  # added to the agent's system prompt
    agent_ids: tuple[str, ...] | None = None  # a coordinator's sub-agents instead
    provider: str | None = None  # an llm agent's provider instead (`metadata.provider`)


@dataclass(frozen=True)
class Launch:
    client_request_id: str
    thread: ThreadRef
    installation_id: int | None
    agent_id: str
    task: str
    started_by: str
    trigger_comment_id: str | None
    trigger_url: str | None
    options: SessionOptions
    parent_id: str | None = None  # a delegation: the coordinator's session
    thread_key: str | None = None  # default: thread.key (a delegation gets its own)
    spec: dict[str, Any] | None = None  # the agent as launched
    resumed_from: str | None = None  # the session this one takes up again


@dataclass(frozen=True)
class SessionInfo:
    id: str
    thread: ThreadRef
    installation_id: int | None
    agent_id: str
    state: str
    close_reason: str | None
    closed_by: str | None
    task: str
    started_by: str
    trigger_comment_id: str | None
    options: SessionOptions
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    time_limit_at: datetime
    idle_deadline_at: datetime | None
    lifetime_at: datetime
    extended_minutes: float
    turns: int
    completed: bool
    progress: dict[str, Any]
    output: str | None
    status_seq: int
    parent_id: str | None = None
    thread_key: str = ""
    spec: dict[str, Any] | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    delegations: int = 0
    cache_read_tokens: int = 0  # of tokens_in
    cache_write_tokens: int = 0  # of tokens_in
    cost_micros: int = 0  # US$ 1e-6, from the price table
    resumed_from: str | None = None

    @property
    def key(self) -> str:
        """How the session tools name it: `<agent id>:<thread key>`."""
        return f"{self.agent_id}:{self.thread_key or self.thread.key}"

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "thread": self.thread.key,
            "agent": self.agent_id,
            "state": self.state,
            "close_reason": self.close_reason,
            "closed_by": self.closed_by,
            "started_by": self.started_by,
            "task": self.task,
            "turns": self.turns,
            "created_at": self.created_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "time_limit_at": self.time_limit_at.isoformat(),
            "idle_deadline_at": self.idle_deadline_at.isoformat()
            if self.idle_deadline_at
            else None,
            "lifetime_at": self.lifetime_at.isoformat(),
            "options": asdict(self.options),
            "progress": self.progress,
            "output": self.output,
            "parent": self.parent_id,
            "tokens": {
                "input": self.tokens_in,
                "output": self.tokens_out,
                "cache_read": self.cache_read_tokens,
                "cache_write": self.cache_write_tokens,
            },
            "cost_usd": usd(self.cost_micros),
            "delegations": self.delegations,
            "resumed_from": self.resumed_from,
        }


@dataclass(frozen=True)
class InputInfo:
    id: int
    kind: str
    author: str
    body: str
    comment_id: str | None
    url: str | None
    status: str
    params: dict[str, Any] | None = None  # runtimeParams for the turn that reads it


@dataclass(frozen=True)
class Event:
    id: int
    session_id: str
    at: datetime
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LaunchResult:
    session: SessionInfo
    created: bool  # False: this request id launched it before, or the thread had a live one
    refused: bool = False  # created, but closed at once for lack of capacity


def _options(data: dict[str, Any]) -> SessionOptions:
    known = {k: v for k, v in data.items() if k in SessionOptions.__dataclass_fields__}
    if "user_signals" in known:
        known["user_signals"] = tuple(known["user_signals"])
    if known.get("agent_ids") is not None:
        known["agent_ids"] = tuple(known["agent_ids"])
    return SessionOptions(**known)


def _info(row: Any) -> SessionInfo:
    """A session as the bot sees it, from its row (an entity, a Core row or the values
    just written: anything with the columns as attributes)."""
    return SessionInfo(
        id=row.id,
        thread=ThreadRef(**row.thread),
        installation_id=row.installation_id,
        agent_id=row.agent_id,
        state=row.state,
        close_reason=row.close_reason,
        closed_by=row.closed_by,
        task=row.task,
        started_by=row.started_by,
        trigger_comment_id=row.trigger_comment_id,
        options=_options(dict(row.options)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        time_limit_at=row.time_limit_at,
        idle_deadline_at=row.idle_deadline_at,
        lifetime_at=row.lifetime_at,
        extended_minutes=row.extended_minutes,
        turns=row.turns,
        completed=row.completed,
        progress=dict(row.progress or {}),
        output=row.output,
        status_seq=row.status_seq,
        parent_id=row.parent_id,
        thread_key=row.thread_key,
        spec=row.spec,
        tokens_in=row.tokens_in or 0,
        tokens_out=row.tokens_out or 0,
        delegations=row.delegations or 0,
        cache_read_tokens=row.cache_read_tokens or 0,
        cache_write_tokens=row.cache_write_tokens or 0,
        cost_micros=row.cost_micros or 0,
        resumed_from=row.resumed_from,
    )


def _input(row: Any) -> InputInfo:
    return InputInfo(
        row.id, row.kind, row.author, row.body, row.comment_id, row.url, row.status, row.params
    )


# One prebuilt INSERT for every transcript event, run lean (bot.db.lean): it skips the
# ORM's unit of work and SQLAlchemy's execution path. EVENTS is its table.
EVENTS = cast(Table, TranscriptEvent.__table__)
_EVENT_COLUMNS = ("session_id", "at", "kind", "data", "search_text")
INSERT_EVENT = Lean(insert(EVENTS).values({name: bindparam(name) for name in _EVENT_COLUMNS}))
# The session and input tables, for the store's Core statements.
SESSIONS = cast(Table, SessionRow.__table__)
INPUTS = cast(Table, SessionInput.__table__)


def has_status(parent_id: str | None, host: str) -> bool:
    """Whether a session has a status comment: a delegation has none (its coordinator's
    speaks for it), nor has a headless session (no host thread to hold one)."""
    return parent_id is None and host != HEADLESS


# `has_status` in SQL: a launch, a turn's claim and its finish count the version they
# queue in the row they write (status_seq counts the versions of the comment).
COUNT_STATUS = case(
    (and_(SESSIONS.c.parent_id.is_(None), SESSIONS.c.host != HEADLESS), SESSIONS.c.status_seq + 1),
    else_=SESSIONS.c.status_seq,
)


def event_row(session_id: str, at: datetime, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The values of a transcript event's row, with its words for search."""
    return {
        "session_id": session_id,
        "at": at,
        "kind": kind,
        "data": data,
        "search_text": search_text_for(kind, data),
    }


def add_event(
    session: Session, session_id: str, at: datetime, kind: str, data: dict[str, Any]
) -> None:
    """Add a transcript event to `session`'s transaction, after what it holds so far
    (a session row added in the same transaction is written first)."""
    if session.new or session.dirty:
        session.flush()
    INSERT_EVENT.count(session.connection(), event_row(session_id, at, kind, data))


def new_session_id() -> str:
    return "s-" + secrets.token_hex(4)
