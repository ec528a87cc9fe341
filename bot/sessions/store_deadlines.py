"""The store's closing and deadlines: close, extend, expire, next deadline, purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from bot.db import reading
from bot.db.lean import Lean
from bot.db.models import LIVE_STATES, SessionInput, SessionRow, TranscriptEvent
from bot.sessions.store_base import StoreBase
from bot.sessions.store_rows import (
    CLOSED,
    IDLE,
    IDLE_EXPIRY,
    LIFETIME,
    PURGED,
    SESSIONS,
    TIME_LIMIT,
    TURNING,
    UNCONSUMED,
    UNINSTALLED,
    WITHDRAWN,
    SessionInfo,
    _info,
    _options,
)

# The deadlines, in the order a session past several is closed under: (reason, its
# column, the states it applies to).
_RULES = (
    (LIFETIME, "lifetime_at", LIVE_STATES),
    (TIME_LIMIT, "time_limit_at", TURNING),
    (IDLE_EXPIRY, "idle_deadline_at", (IDLE,)),
)
_S = SESSIONS.c
# Every check of the timer (pokes come with launches and turns): prebuilt, one each.
_DUE = Lean(
    select(_S.id, _S.state, *(_S[column] for _, column, _ in _RULES)).where(
        _S.state.in_(LIVE_STATES),
        or_(
            *(
                and_(_S[column] <= bindparam("now"), _S.state.in_(states))
                for _, column, states in _RULES
            )
        ),
    )
)
_NEXT = Lean(
    select(
        *(func.min(case((_S.state.in_(states), _S[column]))) for _, column, states in _RULES)
    ).where(_S.state.in_(LIVE_STATES))
)


class Deadlines(StoreBase):
    """Ending sessions: by request, by deadline (time limit, idle, lifetime), by uninstall."""

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
        with reading(self.engine) as conn:
            rows = _DUE.rows(conn, {"now": now})
        # Each overdue session under the first deadline it is past, in the order of
        # RULES (the time limit counts working time: waiting on a maintainer or for
        # comments does not use it up, and a turn taken up after waiting moves it on).
        due: list[tuple[int, str]] = []
        for row in rows:
            for n, (_, column, states) in enumerate(_RULES):
                at = getattr(row, column)
                if at is not None and at <= now and row.state in states:
                    due.append((n, row.id))
                    break
        closed: list[SessionInfo] = []
        for n, sid in sorted(due, key=lambda item: item[0]):
            done = self._expire_one(sid, n, now)
            if done is not None:
                closed.append(done)
        return closed

    def _expire_one(self, session_id: str, rule: int, now: datetime) -> SessionInfo | None:
        """Close the session under `_RULES[rule]` if it is still past that deadline."""
        reason, column, states = _RULES[rule]
        deadline = and_(getattr(SessionRow, column) <= now, SessionRow.state.in_(states))
        return self._close(
            session_id, reason, only_if=deadline, events=(("timer", {"deadline": reason}),)
        )

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of any live session: when the timer should next look."""
        with reading(self.engine) as conn:
            times = _NEXT.first(conn)
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
