"""The store's launch (idempotent, capacity-limited) and its lookups of sessions."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, func, insert, or_, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.orm import Session

from bot.db import reading
from bot.db.lean import Lean
from bot.db.models import LIVE_STATES, SessionInput, SessionRow
from bot.sessions.store_base import InTransaction, StoreBase
from bot.sessions.store_rows import (
    ACTIVE,
    AWAITING,
    CAPACITY,
    CLOSED,
    INPUTS,
    INSERT_EVENT,
    QUEUED,
    SESSIONS,
    InputInfo,
    Launch,
    LaunchResult,
    SessionInfo,
    _info,
    _input,
    event_row,
    has_status,
    new_session_id,
)

_BY_REQUEST = select(SESSIONS).where(SESSIONS.c.client_request_id == bindparam("request"))
_BY_ID = select(SESSIONS).where(SESSIONS.c.id == bindparam("sid"))
_LIVE_IN_THREAD = select(SESSIONS).where(
    SESSIONS.c.thread_key == bindparam("key"), SESSIONS.c.state.in_(LIVE_STATES)
)
_LIVE_IN_THREAD_LEAN = Lean(_LIVE_IN_THREAD)  # the lookup every comment makes
_LAST_IN_THREAD = Lean(  # what a mention may resume (asked on every trigger)
    select(SESSIONS)
    .where(SESSIONS.c.thread_key == bindparam("key"), SESSIONS.c.parent_id.is_(None))
    .order_by(SESSIONS.c.created_at.desc(), SESSIONS.c.id.desc())
    .limit(1)
)
_COUNT_LIVE = select(func.count()).select_from(SESSIONS).where(SESSIONS.c.state.in_(LIVE_STATES))
_BY_REQUEST_LEAN = Lean(_BY_REQUEST)
_BY_ID_LEAN = Lean(_BY_ID)
_COUNT_LIVE_LEAN = Lean(_COUNT_LIVE)


@functools.lru_cache(maxsize=8)
def _insert(table: Table, names: tuple[str, ...]) -> Lean:
    """A prebuilt INSERT of a session or input row with these columns (a launch's rows
    always name the same ones)."""
    return Lean(insert(table).values({name: bindparam(name) for name in names}))


def _live_in(conn: Connection, thread_key: str) -> Any:
    """The thread's live session's row, or None; more than one is a broken invariant."""
    rows = _LIVE_IN_THREAD_LEAN.rows(conn, {"key": thread_key})
    if len(rows) > 1:
        raise MultipleResultsFound(f"{len(rows)} live sessions in {thread_key}")
    return rows[0] if rows else None


# What a resumed session takes over from the one it resumes (budgets count the line).
_CARRIED = ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens", "cost_micros")


class LaunchAndLookups(StoreBase):
    """Launching a session, and finding sessions: by id, by thread, recent, awaiting."""

    # ---------------------------------------------------------------- launching

    def launch(
        self, req: Launch, *, max_live: int, after: InTransaction | None = None
    ) -> LaunchResult:
        """Create the session for `req`, idempotently.

        The same client request id returns the session it made before. A thread that
        already has a live session gets no second one: that one is returned. Past
        `max_live` live sessions the new one is created closed, with reason capacity.
        `after` runs in the transaction that creates one.
        """
        for _ in range(3):  # a concurrent launch in the same thread may win the race
            try:
                return self._launch_once(req, max_live, after)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not launch a session for {req.thread.key}")

    def _launch_once(self, req: Launch, max_live: int, after: InTransaction | None) -> LaunchResult:
        now = self.clock()
        opts = req.options
        thread_key = req.thread_key or req.thread.key
        # Core statements on the tables, built once: a launch is on every trigger's path.
        with self.engine.begin() as conn:
            before = _BY_REQUEST_LEAN.first(conn, {"request": req.client_request_id})
            if before is not None:
                return LaunchResult(_info(before), created=False)
            live = _live_in(conn, thread_key)
            if live is not None:
                return LaunchResult(_info(live), created=False)
            count = int(_COUNT_LIVE_LEAN.scalar(conn))
            refused = count >= max_live
            earlier = (
                _BY_ID_LEAN.first(conn, {"sid": req.resumed_from})
                if req.resumed_from is not None
                else None
            )
            values: dict[str, Any] = {
                "id": new_session_id(),
                "client_request_id": req.client_request_id,
                "host": req.thread.host,
                "repo": req.thread.repo,
                "installation_id": req.installation_id,
                "thread_key": thread_key,
                "thread": asdict(req.thread),
                "agent_id": req.agent_id,
                "state": CLOSED if refused else ACTIVE,
                "close_reason": CAPACITY if refused else None,
                "closed_by": None,
                "task": req.task,
                "started_by": req.started_by,
                "trigger_comment_id": req.trigger_comment_id,
                "options": asdict(opts),
                "created_at": now,
                "updated_at": now,
                "closed_at": now if refused else None,
                "time_limit_at": now + timedelta(minutes=opts.time_limit_minutes),
                "idle_deadline_at": None,
                "lifetime_at": now + timedelta(minutes=opts.lifetime_minutes),
                "extended_minutes": 0.0,
                "turns": 0,
                "completed": False,
                # A resumed session carries its line's checklist and the tokens and cost
                # spent on it (budgets apply to the line of work).
                "progress": dict(earlier.progress or {}) if earlier is not None else {},
                "output": None,
                # The launch's status version (`after` queues it), where there is one.
                "status_seq": int(has_status(req.parent_id, req.thread.host)),
                "parent_id": req.parent_id,
                "spec": req.spec,
                "delegations": 0,
                "resumed_from": earlier.id if earlier is not None else None,
                "turn_owner": None,
                "turn_expires_at": None,
                "cancel_requested_at": None,
                "cancel_requested_by": None,
            }
            for counter in _CARRIED:
                values[counter] = (getattr(earlier, counter) or 0) if earlier is not None else 0
            _insert(SESSIONS, tuple(values)).count(conn, values)
            sid = values["id"]
            if not refused:
                task = {
                    "session_id": sid,
                    "kind": "task",
                    "author": req.started_by,
                    "body": req.task,
                    "comment_id": req.trigger_comment_id,
                    "url": req.trigger_url,
                    "status": QUEUED,
                    "created_at": now,
                }
                _insert(INPUTS, tuple(task)).count(conn, task)
            launched = {
                "agent": req.agent_id,
                "by": req.started_by,
                "task": req.task,
                "comment": req.trigger_comment_id,
                "url": req.trigger_url,
                "client_request_id": req.client_request_id,
                "options": asdict(opts),
                "parent": req.parent_id,
                "resumed_from": values["resumed_from"],
            }
            events = [event_row(sid, now, "launched", launched)]
            if refused:
                events.append(event_row(sid, now, "closed", {"reason": CAPACITY, "live": count}))
            INSERT_EVENT.many(conn, events)
            info = _info(SimpleNamespace(**values))
            if after is not None:
                after(conn, info)
            return LaunchResult(info, created=True, refused=refused)

    # ------------------------------------------------------------------- reading

    def get(self, session_id: str) -> SessionInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(_BY_ID, {"sid": session_id}).one_or_none()
            return _info(row) if row else None

    def live_for(self, thread_key: str) -> SessionInfo | None:
        # Every comment asks (most threads have none): one prebuilt Core query, in
        # autocommit on PostgreSQL (bot.db.reading: one round trip, not three).
        with reading(self.engine) as conn:
            row = _live_in(conn, thread_key)
        return _info(row) if row is not None else None

    def last_in(self, thread_key: str) -> SessionInfo | None:
        """The thread's most recent session of its own (not a delegation), live or not."""
        with reading(self.engine) as conn:
            row = _LAST_IN_THREAD.first(conn, {"key": thread_key})
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

    def children(self, session_id: str) -> list[SessionInfo]:
        """The delegations of a session, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(SessionRow)
                .where(SessionRow.parent_id == session_id)
                .order_by(SessionRow.created_at, SessionRow.id)
            ).scalars()
            return [_info(row) for row in rows]
