"""Stopping a turn in flight: the request in the database, and who must see it.

The API's cancel and a thread's `/stop` store a request on a busy session; the process
whose runner owns the turn asks for its requests every half second or so
(`cancel_requests`), stops the engine, and settles the turn as usual, which clears the
request (claim and finish clear it too, so a request never outlives its turn).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.models import LIVE_STATES, SessionRow
from bot.sessions.store_base import StoreBase
from bot.sessions.store_rows import BUSY

CancelAnswer = Literal["requested", "pending", "no_turn", "not_live", "missing"]


class Cancels(StoreBase):
    """Cancel requests on sessions' turns."""

    def request_cancel(self, session_id: str, *, by: str, how: str) -> CancelAnswer:
        """Ask the runner of the session's turn to stop it. "requested": asked now (and
        recorded in the transcript); "pending": asked before and not yet seen; "no_turn":
        live but no turn in flight; "not_live": closed or failed; "missing": no such
        session."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(SessionRow)
                .where(
                    SessionRow.id == session_id,
                    SessionRow.state == BUSY,
                    SessionRow.cancel_requested_at.is_(None),
                )
                .values(cancel_requested_at=now, cancel_requested_by=by)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                turn = session.execute(
                    select(SessionRow.turns).where(SessionRow.id == session_id)
                ).scalar_one()
                self._record(
                    session, session_id, "cancel_requested", {"by": by, "how": how, "turn": turn}
                )
                return "requested"
            row = session.execute(
                select(SessionRow.state, SessionRow.cancel_requested_at).where(
                    SessionRow.id == session_id
                )
            ).first()
        if row is None:
            return "missing"
        if row[0] == BUSY:
            return "pending"
        return "no_turn" if row[0] in LIVE_STATES else "not_live"

    def cancel_requests(self, owner: str) -> dict[str, str]:
        """The sessions whose turn `owner` runs and someone asked to stop: id -> by."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(SessionRow.id, SessionRow.cancel_requested_by).where(
                    SessionRow.turn_owner == owner,
                    SessionRow.state == BUSY,
                    SessionRow.cancel_requested_at.is_not(None),
                )
            ).all()
        return {str(sid): str(by or "") for sid, by in rows}
