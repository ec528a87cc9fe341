"""The store's restart of a failed session from its last completed turn (blocking SQL).

The failed turn is undone as far as the next turn can see: its inputs are queued again,
and its `conversation` messages and worktree diff are passed over (the `restarted`
event names the turn; `StoreBase.conversation` and the workspace's `last_diff` skip
it). Its transcript stays as it was, for the record. The session gets its time limits
afresh, like a resumed one.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.models import LIVE_STATES, SessionInput, SessionRow
from bot.sessions.store_base import RESTARTED, StoreBase
from bot.sessions.store_rows import (
    ACTIVE,
    CONSUMED,
    FAILED,
    QUEUED,
    SessionInfo,
    _info,
    _options,
)

NO_SUCH_SESSION = "no session {id}"
NOT_FAILED = "session {id} is {state}: only a failed session can be restarted"
THREAD_TAKEN = "session {other} is live in the same thread; end it first"
DELEGATION = (
    "session {id} is a delegation of session {parent}: it runs within its coordinator's "
    "turn, so restart that one"
)
GO_ON = "The operator restarted this session after its last turn failed: go on with the task."


class RestartRefused(Exception):
    """Why a session cannot be restarted (fit to show the operator)."""


class Restarts(StoreBase):
    """Restarting failed sessions."""

    def restart(self, session_id: str, *, by: str) -> SessionInfo:
        """Make failed session `session_id` live again from its last completed turn;
        RestartRefused says why not (not failed, another session live in its thread).
        A conditional UPDATE from `failed`: two operators racing restart it once."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, session_id)
            if row is None:
                raise RestartRefused(NO_SUCH_SESSION.format(id=session_id))
            if row.state != FAILED:
                raise RestartRefused(NOT_FAILED.format(id=session_id, state=row.state))
            if row.parent_id is not None:
                raise RestartRefused(DELEGATION.format(id=session_id, parent=row.parent_id))
            other = session.execute(
                select(SessionRow.id).where(
                    SessionRow.thread_key == row.thread_key,
                    SessionRow.state.in_(LIVE_STATES),
                    SessionRow.id != session_id,
                )
            ).scalar()
            if other is not None:
                raise RestartRefused(THREAD_TAKEN.format(other=other))
            failed_turn = row.turns
            options = _options(dict(row.options))
            progress = {k: v for k, v in (row.progress or {}).items() if k != "problem"}
            won = session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.state == FAILED)
                .values(
                    state=ACTIVE,
                    close_reason=None,
                    closed_by=None,
                    closed_at=None,
                    updated_at=now,
                    turn_owner=None,
                    turn_expires_at=None,
                    idle_deadline_at=None,
                    extended_minutes=0.0,
                    time_limit_at=now + timedelta(minutes=options.time_limit_minutes),
                    lifetime_at=now + timedelta(minutes=options.lifetime_minutes),
                    progress=progress,
                )
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                raise RestartRefused(NOT_FAILED.format(id=session_id, state="no longer failed"))
            again = (
                session.execute(
                    select(SessionInput.id).where(
                        SessionInput.session_id == session_id,
                        SessionInput.turn == failed_turn,
                        SessionInput.status == CONSUMED,
                    )
                )
                .scalars()
                .all()
            )
            if again:
                session.execute(
                    update(SessionInput)
                    .where(SessionInput.id.in_(again))
                    .values(status=QUEUED, turn=None)
                    .execution_options(synchronize_session=False)
                )
            else:  # a turn with no input of its own (taken over): something to go on from
                item = SessionInput(
                    session_id=session_id,
                    kind="operator",
                    author=by,
                    body=GO_ON,
                    status=QUEUED,
                    created_at=now,
                )
                session.add(item)
                session.flush()
                again = [item.id]
            self._record(
                session,
                session_id,
                RESTARTED,
                {"by": by, "turn": failed_turn, "from_turn": failed_turn - 1, "inputs": again},
            )
            fresh = session.get(SessionRow, session_id, populate_existing=True)
            assert fresh is not None
            return _info(fresh)
