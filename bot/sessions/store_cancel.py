"""Stopping a turn in flight: the request in the database, and who must see it.

The API's cancel and a thread's `/stop` store a request on a busy session; the process
whose runner owns the turn asks for its requests every half second or so
(`stop_requests`; a session closed meanwhile counts too), stops the engine, and settles the turn as usual, which clears the
request (claim and finish clear it too, so a request never outlives its turn).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.models import LIVE_STATES, SessionRow
from bot.sessions.store_base import StoreBase
from bot.sessions.store_rows import BUSY

CancelAnswer = Literal["requested", "pending", "no_turn", "not_live", "missing"]


@dataclass(frozen=True)
class Stop:
    """Why a runner must stop a turn: who asked, and whether the session was closed."""

    by: str
    closed: bool


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

    def stop_requests(self, owner: str, session_ids: Collection[str]) -> dict[str, Stop]:
        """Of the sessions whose turns `owner` has in hand, those to stop now: asked to
        (a cancel request) or no longer live (closed meanwhile: a model call for a closed
        session would only spend tokens). One query for all of them."""
        if not session_ids:
            return {}
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    SessionRow.id,
                    SessionRow.state,
                    SessionRow.turn_owner,
                    SessionRow.cancel_requested_by,
                    SessionRow.cancel_requested_at,
                    SessionRow.closed_by,
                ).where(SessionRow.id.in_(list(session_ids)))
            ).all()
        found: dict[str, Stop] = {}
        for sid, state, turn_owner, asked_by, asked_at, closed_by in rows:
            if state not in LIVE_STATES:
                found[str(sid)] = Stop(str(closed_by or "close"), closed=True)
            elif state == BUSY and turn_owner == owner and asked_at is not None:
                found[str(sid)] = Stop(str(asked_by or ""), closed=False)
        return found
