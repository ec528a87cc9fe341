"""Sessions in the shared database: launch, inputs, turns, deadlines, closing (blocking SQL).

Every state change is a conditional UPDATE, so when several processes race for the same
change (a turn, a close, an expiry) exactly one of them wins and the others see False.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.agents.models import usd
from bot.db import execute_alone
from bot.db.models import LIVE_STATES, SessionInput, SessionRow, TranscriptEvent
from bot.events import ThreadRef
from bot.inbox import utcnow
from bot.sessions.search import search_text_for

ACTIVE, BUSY, IDLE, CLOSED, FAILED = "active", "busy", "idle", "closed", "failed"
AWAITING = "awaiting_approval"  # live: an approval gate is open
# queued -> taken (handed to a running turn) -> consumed; queued -> withdrawn
QUEUED, TAKEN, CONSUMED, WITHDRAWN = "queued", "taken", "consumed", "withdrawn"
UNCONSUMED = (QUEUED, TAKEN)
WORKING = (ACTIVE, BUSY, IDLE)  # live and not waiting on an approval

# Why a session ended.
USER_SIGNAL, CANCELLED, DONE = "user_signal", "cancelled", "done"
TIME_LIMIT, IDLE_EXPIRY, LIFETIME = "time_limit", "idle_expiry", "lifetime"
CAPACITY, FAILURE, UNINSTALLED, PURGED, OPERATOR = (
    "capacity",
    "failure",
    "uninstalled",
    "purged",
    "operator",
)
BUDGET, PARENT_CLOSED = "budget", "parent_closed"


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
    return SessionOptions(**known)


def _info(row: SessionRow) -> SessionInfo:
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
    )


def _input(row: SessionInput) -> InputInfo:
    return InputInfo(row.id, row.kind, row.author, row.body, row.comment_id, row.url, row.status)


def add_event(
    session: Session, session_id: str, at: datetime, kind: str, data: dict[str, Any]
) -> None:
    """Add a transcript event to `session`'s transaction, with its words for search."""
    session.add(
        TranscriptEvent(
            session_id=session_id,
            at=at,
            kind=kind,
            data=data,
            search_text=search_text_for(kind, data),
        )
    )


def new_session_id() -> str:
    return "s-" + secrets.token_hex(4)


class SessionStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # ---------------------------------------------------------------- launching

    def launch(self, req: Launch, *, max_live: int) -> LaunchResult:
        """Create the session for `req`, idempotently.

        The same client request id returns the session it made before. A thread that
        already has a live session gets no second one: that one is returned. Past
        `max_live` live sessions the new one is created closed, with reason capacity.
        """
        for _ in range(3):  # a concurrent launch in the same thread may win the race
            try:
                return self._launch_once(req, max_live)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not launch a session for {req.thread.key}")

    def _launch_once(self, req: Launch, max_live: int) -> LaunchResult:
        now = self.clock()
        opts = req.options
        thread_key = req.thread_key or req.thread.key
        with Session(self.engine) as session, session.begin():
            before = session.execute(
                select(SessionRow).where(SessionRow.client_request_id == req.client_request_id)
            ).scalar_one_or_none()
            if before is not None:
                return LaunchResult(_info(before), created=False)
            live = session.execute(
                select(SessionRow).where(
                    SessionRow.thread_key == thread_key, SessionRow.state.in_(LIVE_STATES)
                )
            ).scalar_one_or_none()
            if live is not None:
                return LaunchResult(_info(live), created=False)
            count = session.execute(
                select(func.count())
                .select_from(SessionRow)
                .where(SessionRow.state.in_(LIVE_STATES))
            ).scalar_one()
            refused = count >= max_live
            row = SessionRow(
                id=new_session_id(),
                client_request_id=req.client_request_id,
                host=req.thread.host,
                repo=req.thread.repo,
                installation_id=req.installation_id,
                thread_key=thread_key,
                thread=asdict(req.thread),
                agent_id=req.agent_id,
                state=CLOSED if refused else ACTIVE,
                close_reason=CAPACITY if refused else None,
                closed_by=None,
                task=req.task,
                started_by=req.started_by,
                trigger_comment_id=req.trigger_comment_id,
                options=asdict(opts),
                created_at=now,
                updated_at=now,
                closed_at=now if refused else None,
                time_limit_at=now + timedelta(minutes=opts.time_limit_minutes),
                idle_deadline_at=None,
                lifetime_at=now + timedelta(minutes=opts.lifetime_minutes),
                extended_minutes=0.0,
                turns=0,
                completed=False,
                progress={},
                output=None,
                status_seq=0,
                parent_id=req.parent_id,
                spec=req.spec,
                tokens_in=0,
                tokens_out=0,
                delegations=0,
                cache_read_tokens=0,
                cache_write_tokens=0,
                cost_micros=0,
            )
            session.add(row)
            session.flush()
            if not refused:
                session.add(
                    SessionInput(
                        session_id=row.id,
                        kind="task",
                        author=req.started_by,
                        body=req.task,
                        comment_id=req.trigger_comment_id,
                        url=req.trigger_url,
                        status=QUEUED,
                        created_at=now,
                    )
                )
            self._record(
                session,
                row.id,
                "launched",
                {
                    "agent": req.agent_id,
                    "by": req.started_by,
                    "task": req.task,
                    "comment": req.trigger_comment_id,
                    "url": req.trigger_url,
                    "client_request_id": req.client_request_id,
                    "options": asdict(opts),
                    "parent": req.parent_id,
                },
            )
            if refused:
                self._record(session, row.id, "closed", {"reason": CAPACITY, "live": count})
            session.flush()
            return LaunchResult(_info(row), created=True, refused=refused)

    # ------------------------------------------------------------------- reading

    def get(self, session_id: str) -> SessionInfo | None:
        with Session(self.engine) as session:
            row = session.get(SessionRow, session_id)
            return _info(row) if row else None

    def live_for(self, thread_key: str) -> SessionInfo | None:
        with Session(self.engine) as session:
            row = session.execute(
                select(SessionRow).where(
                    SessionRow.thread_key == thread_key, SessionRow.state.in_(LIVE_STATES)
                )
            ).scalar_one_or_none()
            return _info(row) if row else None

    def recent(
        self,
        *,
        state: str | None = None,
        repo: str | None = None,
        limit: int = 50,
        agents: Sequence[str] | None = None,
    ) -> list[SessionInfo]:
        with Session(self.engine) as session:
            query = select(SessionRow).order_by(SessionRow.created_at.desc()).limit(limit)
            if agents is not None:
                query = query.where(SessionRow.agent_id.in_(agents), SessionRow.parent_id.is_(None))
            if state == "live":
                query = query.where(SessionRow.state.in_(LIVE_STATES))
            elif state:
                query = query.where(SessionRow.state == state)
            if repo:
                query = query.where(SessionRow.repo == repo)
            return [_info(r) for r in session.execute(query).scalars()]

    def inputs(self, session_id: str) -> list[InputInfo]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(SessionInput)
                .where(SessionInput.session_id == session_id)
                .order_by(SessionInput.id)
            ).scalars()
            return [_input(r) for r in rows]

    def transcript(self, session_id: str) -> list[Event]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(TranscriptEvent)
                .where(TranscriptEvent.session_id == session_id)
                .order_by(TranscriptEvent.id)
            ).scalars()
            return [Event(r.id, r.session_id, r.at, r.kind, dict(r.data)) for r in rows]

    def awaiting_under(self, pull_key: str, *, include_self: bool = False) -> list[SessionInfo]:
        """Sessions waiting on an approval in a pull request's review threads (and, with
        `include_self`, in its conversation)."""
        with Session(self.engine) as session:
            where: ColumnElement[bool] = SessionRow.thread_key.like(
                pull_key.replace("%", r"\%") + "/threads/%", escape="\\"
            )
            if include_self:
                where = or_(where, SessionRow.thread_key == pull_key)
            rows = session.execute(
                select(SessionRow).where(
                    SessionRow.state == AWAITING, where, SessionRow.parent_id.is_(None)
                )
            ).scalars()
            return [_info(row) for row in rows]

    def count_live(self) -> int:
        with Session(self.engine) as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(SessionRow)
                    .where(SessionRow.state.in_(LIVE_STATES))
                ).scalar_one()
            )

    # -------------------------------------------------------------------- inputs

    def add_input(
        self,
        session_id: str,
        *,
        kind: str,
        author: str,
        body: str,
        comment_id: str | None = None,
        url: str | None = None,
    ) -> int | None:
        """Queue an input for the session's next turn; None if the session is not live
        or this comment is already queued (a redelivered comment)."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None or row.state not in LIVE_STATES:
                return None
            if comment_id is not None:
                seen = session.execute(
                    select(SessionInput.id).where(
                        SessionInput.session_id == session_id, SessionInput.comment_id == comment_id
                    )
                ).first()
                if seen is not None:
                    return None
            item = SessionInput(
                session_id=session_id,
                kind=kind,
                author=author,
                body=body,
                comment_id=comment_id,
                url=url,
                status=QUEUED,
                created_at=now,
            )
            session.add(item)
            session.flush()
            self._record(
                session,
                session_id,
                "input",
                {
                    "input": item.id,
                    "kind": kind,
                    "author": author,
                    "body": body,
                    "comment": comment_id,
                    "url": url,
                },
            )
            return int(item.id)

    def amend_input(self, comment_id: str, body: str, by: str) -> str | None:
        """An edited comment changes its queued input; returns the session id if it did."""
        return self._change_queued(
            comment_id, {"body": body}, "input_amended", {"body": body, "by": by}
        )

    def withdraw_input(self, comment_id: str, by: str) -> str | None:
        """A deleted comment takes its queued input back; returns the session id if it did."""
        return self._change_queued(comment_id, {"status": WITHDRAWN}, "input_withdrawn", {"by": by})

    def _change_queued(
        self, comment_id: str, values: dict[str, Any], kind: str, data: dict[str, Any]
    ) -> str | None:
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            item = session.execute(
                select(SessionInput).where(
                    SessionInput.comment_id == comment_id, SessionInput.status == QUEUED
                )
            ).scalar_one_or_none()
            if item is None:
                return None
            changed = session.execute(
                update(SessionInput)
                .where(SessionInput.id == item.id, SessionInput.status == QUEUED)
                .values(amended_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            self._record(
                session, item.session_id, kind, {"input": item.id, "comment": comment_id, **data}
            )
            return str(item.session_id)

    # --------------------------------------------------------------------- turns

    def claim_turn(
        self, owner: str, *, lease_seconds: float, session_id: str | None = None
    ) -> tuple[SessionInfo, list[InputInfo]] | None:
        """Take the oldest live session that has queued inputs and is not mid-turn.

        A turn whose runner died (lease expired) is taken over and run again with the
        inputs it had not consumed. Delegations (sessions with a parent) are run by their
        coordinator's turn, never taken here, unless asked for by `session_id`.
        """
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            has_input = exists().where(
                SessionInput.session_id == SessionRow.id, SessionInput.status.in_(UNCONSUMED)
            )
            ready = or_(
                SessionRow.state.in_((ACTIVE, IDLE)),
                and_(SessionRow.state == BUSY, SessionRow.turn_expires_at < now),
            )
            # Start from the few sessions with waiting inputs, not from every live one.
            waiting = (
                select(SessionInput.session_id)
                .where(SessionInput.status.in_(UNCONSUMED))
                .distinct()
            )
            whose = (
                SessionRow.parent_id.is_(None)
                if session_id is None
                else SessionRow.id == session_id
            )
            candidates = (
                session.execute(
                    select(SessionRow.id)
                    .where(SessionRow.id.in_(waiting), ready, whose)
                    .order_by(SessionRow.updated_at)
                    .limit(10)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            for sid in candidates:
                won = session.execute(
                    update(SessionRow)
                    .where(SessionRow.id == sid, ready, has_input)
                    .values(
                        state=BUSY,
                        turn_owner=owner,
                        turn_expires_at=now + timedelta(seconds=lease_seconds),
                        idle_deadline_at=None,
                        # A taken-over turn keeps its number, so its writes keep their keys
                        # and whatever the dead runner already wrote is not written again.
                        turns=case(
                            (SessionRow.state == BUSY, SessionRow.turns), else_=SessionRow.turns + 1
                        ),
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row = session.get(SessionRow, sid, populate_existing=True)
                assert row is not None
                inputs = (
                    session.execute(
                        select(SessionInput)
                        .where(SessionInput.session_id == sid, SessionInput.status.in_(UNCONSUMED))
                        .order_by(SessionInput.id)
                    )
                    .scalars()
                    .all()
                )
                # Handed to this turn: an edit or deletion can no longer change them.
                session.execute(
                    update(SessionInput)
                    .where(SessionInput.id.in_([i.id for i in inputs]))
                    .values(status=TAKEN, turn=row.turns)
                    .execution_options(synchronize_session=False)
                )
                self._record(
                    session,
                    sid,
                    "turn_started",
                    {"turn": row.turns, "inputs": [i.id for i in inputs], "runner": owner},
                )
                return _info(row), [_input(i) for i in inputs]
        return None

    def record_if_turn_owned(
        self, session_id: str, owner: str, kind: str, data: dict[str, Any]
    ) -> bool:
        """Record an event of a running turn, if `owner` still runs it (the session was
        not closed or taken over meanwhile); one transaction for both."""
        with Session(self.engine) as session, session.begin():
            found = session.execute(
                select(SessionRow.id).where(
                    SessionRow.id == session_id,
                    SessionRow.state == BUSY,
                    SessionRow.turn_owner == owner,
                )
            ).first()
            if found is None:
                return False
            self._record(session, session_id, kind, data)
            return True

    def add_usage(
        self,
        session_id: str,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read: int = 0,
        cache_write: int = 0,
        cost_micros: int = 0,
    ) -> tuple[int, int, int]:
        """Count one model call's tokens (`input_tokens` all of them, cache reads and
        writes among them) and cost; the session's totals (input, output, cost) after it."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(
                    tokens_in=SessionRow.tokens_in + input_tokens,
                    tokens_out=SessionRow.tokens_out + output_tokens,
                    cache_read_tokens=SessionRow.cache_read_tokens + cache_read,
                    cache_write_tokens=SessionRow.cache_write_tokens + cache_write,
                    cost_micros=SessionRow.cost_micros + cost_micros,
                )
                .execution_options(synchronize_session=False)
            )
            found = session.execute(
                select(SessionRow.tokens_in, SessionRow.tokens_out, SessionRow.cost_micros).where(
                    SessionRow.id == session_id
                )
            ).one()
            return int(found[0]), int(found[1]), int(found[2])

    def take_delegation(self, session_id: str, most: int) -> int | None:
        """Count one more delegation if fewer than `most` were made; its number (1, 2, ...)
        or None at the limit. A conditional UPDATE, so concurrent calls cannot pass it."""
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.delegations < most)
                .values(delegations=SessionRow.delegations + 1)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return int(
                session.execute(
                    select(SessionRow.delegations).where(SessionRow.id == session_id)
                ).scalar_one()
            )

    def children(self, session_id: str) -> list[SessionInfo]:
        """The delegations of a session, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(SessionRow)
                .where(SessionRow.parent_id == session_id)
                .order_by(SessionRow.created_at, SessionRow.id)
            ).scalars()
            return [_info(row) for row in rows]

    def conversation(self, session_id: str) -> list[dict[str, Any]]:
        """The messages the engine remembered (`conversation` events), oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(TranscriptEvent.data)
                .where(
                    TranscriptEvent.session_id == session_id,
                    TranscriptEvent.kind == CONVERSATION,
                )
                .order_by(TranscriptEvent.id)
            ).scalars()
            return [dict(data["message"]) for data in rows]

    def answer_to(self, session_id: str, input_id: int) -> str | None:
        """What a session said in the turn that took input `input_id` (its messages and
        replies, in order), once that turn has ended; None until then."""
        with Session(self.engine) as session:
            item = session.get(SessionInput, input_id)
            if item is None or item.session_id != session_id:
                return None
            row = session.get(SessionRow, session_id)
            if item.turn is None or row is None:
                return None
            mid_turn = row.state == BUSY and row.turns == item.turn
            if item.status != CONSUMED and (mid_turn or row.state in LIVE_STATES):
                return None
            events = session.execute(
                select(TranscriptEvent.kind, TranscriptEvent.data)
                .where(
                    TranscriptEvent.session_id == session_id,
                    TranscriptEvent.kind.in_(("message", "tool_call")),
                )
                .order_by(TranscriptEvent.id)
            ).all()
        said: list[str] = []
        for kind, data in events:
            if data.get("turn") != item.turn:
                continue
            if kind == "message":
                said.append(str(data.get("text") or ""))
            elif data.get("tool") in ("reply", "task_completed"):
                args = data.get("args") or {}
                said.append(str(args.get("body") or args.get("output") or ""))
        return "\n\n".join(text for text in said if text) or "(no answer)"

    def renew_turn(self, session_id: str, owner: str, lease_seconds: float) -> bool:
        return self._owned_update(
            session_id, owner, turn_expires_at=self.clock() + timedelta(seconds=lease_seconds)
        )

    def finish_turn(
        self,
        session_id: str,
        owner: str,
        *,
        consumed: Iterable[int],
        turn: int,
        completed: bool,
        close_reason: str | None = None,
        failed: bool = False,
        error: str | None = None,
        awaiting: bool = False,
    ) -> SessionInfo | None:
        """End the turn: mark its inputs consumed and move to idle, closed or failed.

        Returns the session as it is now, or None if this runner no longer owned the turn
        (the session was closed meanwhile, or another runner took it over).
        """
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None:
                return None
            values: dict[str, Any] = {
                "turn_owner": None,
                "turn_expires_at": None,
                "updated_at": now,
                "completed": row.completed or completed,
            }
            if failed:
                values.update(state=FAILED, close_reason=FAILURE, closed_at=now)
                event: tuple[str, dict[str, Any]] = ("failed", {"turn": turn, "error": error})
            elif close_reason is not None:
                values.update(state=CLOSED, close_reason=close_reason, closed_at=now)
                event = ("closed", {"reason": close_reason, "turn": turn})
            elif awaiting:  # a gate is open: wait for the decision, not for comments
                values.update(state=AWAITING, idle_deadline_at=None)
                event = ("turn_finished", {"turn": turn, "state": AWAITING})
            else:
                idle = _options(dict(row.options)).idle_expiry_minutes
                values.update(state=IDLE, idle_deadline_at=now + timedelta(minutes=idle))
                event = ("turn_finished", {"turn": turn, "state": IDLE})
            # Conditional: a close or a takeover since the turn began wins over this runner.
            owned = session.execute(
                update(SessionRow)
                .where(
                    SessionRow.id == session_id,
                    SessionRow.state == BUSY,
                    SessionRow.turn_owner == owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if owned.rowcount != 1:  # type: ignore[attr-defined]
                return None
            ids = list(consumed)
            if ids:
                session.execute(
                    update(SessionInput)
                    .where(SessionInput.id.in_(ids), SessionInput.status.in_(UNCONSUMED))
                    .values(status=CONSUMED, turn=turn)
                    .execution_options(synchronize_session=False)
                )
            self._record(session, session_id, *event)
            fresh = session.get(SessionRow, session_id, populate_existing=True)
            assert fresh is not None
            return _info(fresh)

    def save_progress(self, session_id: str, progress: dict[str, Any]) -> None:
        """Replace the agent's steps and summary (a noted problem stays)."""
        self._merge_progress(session_id, progress, keep=("problem",))

    def note_problem(self, session_id: str, text: str) -> None:
        """Remember what went wrong (a failed write, a failed turn), so every later status
        comment still says so."""
        self._merge_progress(session_id, {"problem": text}, keep=("steps", "summary"))

    def _merge_progress(
        self, session_id: str, values: dict[str, Any], *, keep: tuple[str, ...]
    ) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None:
                return
            kept = {k: v for k, v in (row.progress or {}).items() if k in keep}
            row.progress = {**kept, **values}
            row.updated_at = self.clock()

    def save_output(self, session_id: str, output: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(output=output, completed=True, updated_at=self.clock())
                .execution_options(synchronize_session=False)
            )

    def _owned_update(self, session_id: str, owner: str, **values: Any) -> bool:
        """One UPDATE, in a transaction of its own (see bot.db.execute_alone)."""
        statement = (
            update(SessionRow)
            .where(
                SessionRow.id == session_id,
                SessionRow.state == BUSY,
                SessionRow.turn_owner == owner,
            )
            .values(**values)
        )
        return execute_alone(self.engine, statement) == 1

    # ------------------------------------------------------------ closing, limits

    def close(self, session_id: str, reason: str, *, by: str | None = None) -> SessionInfo | None:
        """Close a live session; None if it was not live (someone else closed it first)."""
        return self._close(session_id, reason, by=by)

    def _close(
        self,
        session_id: str,
        reason: str,
        *,
        by: str | None = None,
        only_if: Any = None,
        events: tuple[tuple[str, dict[str, Any]], ...] = (),
    ) -> SessionInfo | None:
        """Close `session_id` if it is live (and `only_if` holds): a conditional UPDATE that
        exactly one caller wins. Its unconsumed inputs are withdrawn."""
        now = self.clock()
        live = [SessionRow.id == session_id, SessionRow.state.in_(LIVE_STATES)]
        if only_if is not None:
            live.append(only_if)
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(SessionRow)
                .where(*live)
                .values(
                    state=CLOSED,
                    close_reason=reason,
                    closed_by=by,
                    closed_at=now,
                    updated_at=now,
                    turn_owner=None,
                    turn_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            session.execute(
                update(SessionInput)
                .where(SessionInput.session_id == session_id, SessionInput.status.in_(UNCONSUMED))
                .values(status=WITHDRAWN)
                .execution_options(synchronize_session=False)
            )
            for kind, data in events:
                self._record(session, session_id, kind, data)
            self._record(session, session_id, "closed", {"reason": reason, "by": by})
            row = session.get(SessionRow, session_id, populate_existing=True)
            assert row is not None
            return _info(row)

    def extend(self, session_id: str, minutes: float, *, by: str) -> SessionInfo | None:
        """Push the time limit back; None when the session is not live or the total
        would pass the configured maximum."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None or row.state not in LIVE_STATES:
                return None
            if row.extended_minutes + minutes > _options(dict(row.options)).max_extend_minutes:
                return None
            until = row.time_limit_at + timedelta(minutes=minutes)
            changed = session.execute(
                update(SessionRow)
                .where(
                    SessionRow.id == session_id,
                    SessionRow.state.in_(LIVE_STATES),
                    SessionRow.extended_minutes
                    == row.extended_minutes,  # nobody extended meanwhile
                )
                .values(
                    extended_minutes=row.extended_minutes + minutes,
                    time_limit_at=until,
                    updated_at=self.clock(),
                )
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            self._record(
                session,
                session_id,
                "extended",
                {"minutes": minutes, "by": by, "until": until.isoformat()},
            )
            fresh = session.get(SessionRow, session_id, populate_existing=True)
            assert fresh is not None
            return _info(fresh)

    def expire_due(self) -> list[SessionInfo]:
        """Close every live session past a deadline, with that deadline's reason.

        Each close is conditional, so when several processes check at once every
        session is closed exactly once.
        """
        now = self.clock()
        closed: list[SessionInfo] = []
        rules = (
            (LIFETIME, SessionRow.lifetime_at <= now, SessionRow.state.in_(LIVE_STATES)),
            # Waiting on a maintainer does not use up the session's working time.
            (TIME_LIMIT, SessionRow.time_limit_at <= now, SessionRow.state.in_(WORKING)),
            (IDLE_EXPIRY, SessionRow.idle_deadline_at <= now, SessionRow.state == IDLE),
        )
        for reason, overdue, state in rules:
            with Session(self.engine) as session:
                due = session.execute(select(SessionRow.id).where(state, overdue)).scalars().all()
            for sid in due:
                done = self._expire_one(sid, reason, now)
                if done is not None:
                    closed.append(done)
        return closed

    def _expire_one(self, session_id: str, reason: str, now: datetime) -> SessionInfo | None:
        deadline = {
            LIFETIME: SessionRow.lifetime_at <= now,
            TIME_LIMIT: and_(SessionRow.time_limit_at <= now, SessionRow.state.in_(WORKING)),
            IDLE_EXPIRY: and_(SessionRow.idle_deadline_at <= now, SessionRow.state == IDLE),
        }[reason]
        return self._close(
            session_id, reason, only_if=deadline, events=(("timer", {"deadline": reason}),)
        )

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of any live session: when the timer should next look."""
        with Session(self.engine) as session:
            live = SessionRow.state.in_(LIVE_STATES)
            times = [
                session.execute(select(func.min(SessionRow.lifetime_at)).where(live)).scalar(),
                session.execute(
                    select(func.min(SessionRow.time_limit_at)).where(SessionRow.state.in_(WORKING))
                ).scalar(),
                session.execute(
                    select(func.min(SessionRow.idle_deadline_at)).where(SessionRow.state == IDLE)
                ).scalar(),
            ]
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def close_installation(self, host: str, installation_id: int) -> list[SessionInfo]:
        with Session(self.engine) as session:
            ids = (
                session.execute(
                    select(SessionRow.id).where(
                        SessionRow.host == host,
                        SessionRow.installation_id == installation_id,
                        SessionRow.state.in_(LIVE_STATES),
                    )
                )
                .scalars()
                .all()
            )
        return [s for sid in ids if (s := self.close(sid, UNINSTALLED)) is not None]

    def purge(self, session_id: str) -> bool:
        """Close (reason purged) and delete the transcript and inputs; the row stays as a tombstone."""
        self.close(session_id, PURGED, by="operator")
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None:
                return False
            session.execute(delete(TranscriptEvent).where(TranscriptEvent.session_id == session_id))
            session.execute(delete(SessionInput).where(SessionInput.session_id == session_id))
            row.task = ""
            row.output = None
            row.progress = {}
            row.close_reason = PURGED
            return True

    # ---------------------------------------------------------------- transcript

    def record(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            self._record(session, session_id, kind, data)

    def status_snapshot(self, session_id: str) -> tuple[int, SessionInfo]:
        """A fresh version number for the status comment and the session as it is, read in
        one transaction: a higher version never shows an older state."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(status_seq=SessionRow.status_seq + 1)
                .execution_options(synchronize_session=False)
            )
            row = session.get(SessionRow, session_id, populate_existing=True)
            if row is None:
                raise KeyError(session_id)
            return row.status_seq, _info(row)

    def _record(self, session: Session, session_id: str, kind: str, data: dict[str, Any]) -> None:
        add_event(session, session_id, self.clock(), kind, data)
