"""The store's base: engine and clock, the transcript, and the owned one-row UPDATE."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import execute_alone
from bot.db.lean import Lean
from bot.db.models import LIVE_STATES, SessionInput, SessionRow, TranscriptEvent
from bot.sessions.store_rows import (
    BUSY,
    CONSUMED,
    CONVERSATION,
    EVENTS,
    INSERT_EVENT,
    SESSIONS,
    Event,
    SessionInfo,
    _info,
    add_event,
    event_row,
)

# The caller's own writes that go in the transaction of a launch, a turn claim or a turn's
# finish (its first writes, its status comment), given the session as that left it.
InTransaction = Callable[[Connection, SessionInfo], None]

RESTARTED = "restarted"  # a failed session restarted: its failed turn is passed over
MAX_LINE = 100  # sessions of one line of work whose conversation a resumed session gets

# A resumed session's predecessor, and a session's remembered messages and restarts:
# read at the start of every turn (prebuilt Core queries).
_RESUMED_FROM = Lean(select(SESSIONS.c.resumed_from).where(SESSIONS.c.id == bindparam("sid")))
_REMEMBERED = Lean(
    select(EVENTS.c.kind, EVENTS.c.data)
    .where(
        EVENTS.c.session_id == bindparam("sid"),
        EVENTS.c.kind.in_((CONVERSATION, RESTARTED)),
    )
    .order_by(EVENTS.c.id)
)

# A fresh version of the status comment, and the session as it is (RETURNING).
_BUMP_STATUS = Lean(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("sid"))
    .values(status_seq=SESSIONS.c.status_seq + 1)
    .returning(*SESSIONS.c)
)


class StoreBase:
    """What every part of the session store shares: the engine, the clock, the transcript."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def transcript(self, session_id: str) -> list[Event]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(TranscriptEvent)
                .where(TranscriptEvent.session_id == session_id)
                .order_by(TranscriptEvent.id)
            ).scalars()
            return [Event(r.id, r.session_id, r.at, r.kind, dict(r.data)) for r in rows]

    def last_event(self, session_id: str, kind: str) -> dict[str, Any] | None:
        """The data of the session's newest event of `kind`, if it has one."""
        with Session(self.engine) as session:
            data = session.execute(
                select(TranscriptEvent.data)
                .where(TranscriptEvent.session_id == session_id, TranscriptEvent.kind == kind)
                .order_by(TranscriptEvent.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            return None if data is None else dict(data)

    def conversation(self, session_id: str) -> list[dict[str, Any]]:
        """The messages the engine remembered (`conversation` events), oldest first,
        those of the sessions it resumes (its line of work) first; a turn a restart undid
        (`restarted`) is left out."""
        with self.engine.connect() as conn:
            line: list[str] = []
            sid: str | None = session_id
            while sid is not None and sid not in line and len(line) < MAX_LINE:
                line.append(sid)
                sid = _RESUMED_FROM.scalar(conn, {"sid": sid})
            messages: list[dict[str, Any]] = []
            for one in reversed(line):
                own: list[tuple[Any, dict[str, Any]]] = []
                for kind, data in _REMEMBERED.rows(conn, {"sid": one}):
                    if kind == RESTARTED:  # the failed turn's messages are passed over
                        own = [(turn, m) for turn, m in own if turn != data.get("turn")]
                    else:
                        own.append((data.get("turn"), dict(data["message"])))
                messages.extend(message for _, message in own)
            return messages

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

    # ---------------------------------------------------------------- transcript

    def record(
        self, session_id: str, kind: str, data: dict[str, Any], conn: Connection | None = None
    ) -> None:
        """Add a transcript event: in `conn`'s transaction when given, else on its own."""
        row = event_row(session_id, self.clock(), kind, data)
        if conn is None:
            INSERT_EVENT.alone(self.engine, row)
        else:
            INSERT_EVENT.count(conn, row)

    def record_for_comment(
        self, session_id: str, kind: str, comment_id: str, data: dict[str, Any]
    ) -> bool:
        """Record an event about one comment once: a delivery handled again (a worker
        killed before settling it, a replay) finds it there; False then."""
        with Session(self.engine) as session, session.begin():
            seen = session.execute(
                select(TranscriptEvent.data).where(
                    TranscriptEvent.session_id == session_id, TranscriptEvent.kind == kind
                )
            ).scalars()
            if any(d.get("comment") == comment_id for d in seen):
                return False
            self._record(session, session_id, kind, {**data, "comment": comment_id})
            return True

    def status_snapshot(self, session_id: str) -> tuple[int, SessionInfo]:
        """A fresh version number for the status comment and the session as it is, read in
        one transaction: a higher version never shows an older state."""
        with self.engine.begin() as conn:
            return self.status_snapshot_in(conn, session_id)

    def status_snapshot_in(self, conn: Connection, session_id: str) -> tuple[int, SessionInfo]:
        """`status_snapshot` in the caller's transaction."""
        # One statement: the bumped row comes back with RETURNING, not a second read.
        row = _BUMP_STATUS.first(conn, {"sid": session_id})
        if row is None:
            raise KeyError(session_id)
        return int(row.status_seq), _info(row)

    def _record(self, session: Session, session_id: str, kind: str, data: dict[str, Any]) -> None:
        add_event(session, session_id, self.clock(), kind, data)
