"""What an operator may do to a session from the inspector and the command line: close it,
restart it after a failure, purge it (blocking SQL).

Both go through SessionStore, so they race safely with turns and timers, and both
leave their mark in the transcript as done by `operator:<name>`. A session that was
live gets its status comment updated through the outbox, as `threadline sessions
close` does.
"""

from __future__ import annotations

from sqlalchemy import Engine

from bot import outbox as ob
from bot.clock import utcnow
from bot.outbox import Outbox
from bot.sessions import status
from bot.sessions.store import OPERATOR, SessionInfo, SessionStore


class OperatorActions:
    def __init__(
        self, engine: Engine, public_url: str | None = None, *, show_cost: bool = False
    ) -> None:
        self.store = SessionStore(engine)
        self.outbox = Outbox(engine)
        self.public_url = public_url  # the status comment's footer links the inspector there
        self.show_cost = show_cost  # the status comment shows the cost (`status.showCost`)

    def close(self, session_id: str, actor: str) -> SessionInfo | None:
        """Close a live session (reason operator, by `actor`); None if it was not live."""
        closed = self.store.close(session_id, OPERATOR, by=actor)
        if closed is not None:
            self._publish(closed)
        return closed

    def restart(self, session_id: str, actor: str) -> SessionInfo:
        """Restart a failed session from its last completed turn (by `actor`);
        RestartRefused says why not."""
        restarted = self.store.restart(session_id, by=actor)
        self._publish(restarted)
        return restarted

    def purge(self, session_id: str, actor: str) -> bool:
        """Close (if live) and delete the transcript and inputs; the transcript then holds
        one event saying who purged it. False if there is no such session."""
        found = self.store.get(session_id)
        if found is None:
            return False
        closed = self.store.close(session_id, OPERATOR, by=actor) if found.live else None
        self.store.purge(session_id)
        self.store.record(session_id, "purged", {"by": actor})
        if closed is not None:
            fresh = self.store.get(session_id)
            if fresh is not None:
                self._publish(fresh)
        return True

    def _publish(self, session: SessionInfo) -> None:
        seq, fresh = self.store.status_snapshot(session.id)
        body = status.render(fresh, utcnow(), public_url=self.public_url, cost=self.show_cost)
        self.outbox.enqueue(
            ob.upsert(
                status.status_key(session.id), seq, session.thread, body, session.installation_id
            )
        )
