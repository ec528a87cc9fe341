"""The store's closing and deadlines: close, extend, expire, next deadline, purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from bot.db.models import LIVE_STATES, SessionInput, SessionRow, TranscriptEvent
from bot.sessions.store_base import StoreBase
from bot.sessions.store_rows import (
    CLOSED,
    IDLE,
    IDLE_EXPIRY,
    LIFETIME,
    PURGED,
    TIME_LIMIT,
    TURNING,
    UNCONSUMED,
    UNINSTALLED,
    WITHDRAWN,
    SessionInfo,
    _info,
    _options,
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
        closed: list[SessionInfo] = []
        rules = (
            (LIFETIME, SessionRow.lifetime_at <= now, SessionRow.state.in_(LIVE_STATES)),
            # The time limit counts working time: waiting on a maintainer or for comments
            # does not use it up (a turn taken up after waiting moves the limit on).
            (TIME_LIMIT, SessionRow.time_limit_at <= now, SessionRow.state.in_(TURNING)),
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
            TIME_LIMIT: and_(SessionRow.time_limit_at <= now, SessionRow.state.in_(TURNING)),
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
                    select(func.min(SessionRow.time_limit_at)).where(SessionRow.state.in_(TURNING))
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
