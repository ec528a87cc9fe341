"""Thread history: normalized comment events, kept per thread (blocking SQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.lean import Lean, LeanRun
from bot.db.models import CommentRecord
from bot.events import CommentEvent

_RECORDED = (
    "delivery_pk",
    "host",
    "repo",
    "thread_key",
    "action",
    "comment_id",
    "author",
    "body",
    "url",
    "recorded_at",
)


@dataclass(frozen=True)
class RecordedComment:
    delivery_pk: int
    thread_key: str
    action: str
    comment_id: str
    author: str
    body: str
    url: str | None


def _recorded(r: CommentRecord) -> RecordedComment:
    return RecordedComment(
        r.delivery_pk, r.thread_key, r.action, r.comment_id, r.author, r.body, r.url
    )


class CommentHistory:
    """Appends comment events; recording the same delivery twice keeps one row."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = insert_ignoring_conflicts(engine)
        # Built once with bound values: built per comment, its Python side (coercing
        # ten values, the cache key) cost more than the database's insert.
        table = CommentRecord.__table__
        self._record = Lean(
            self._insert(CommentRecord)
            .values({c: bindparam(c, type_=table.c[c].type) for c in _RECORDED})
            .on_conflict_do_nothing(index_elements=["delivery_pk"])
        )

    def record(self, event: CommentEvent, delivery_pk: int) -> bool:
        """Record `event` for the delivery it came in; False if that delivery was recorded."""
        # A row count, not RETURNING: the insert and its commit are then one call.
        return self._record.alone(self.engine, self._params(event, delivery_pk)) == 1

    def record_later(self, event: CommentEvent, delivery_pk: int) -> LeanRun:
        """`record_in` as a write to do later in someone's transaction (a delivery's
        settle); the settle sends such writes together."""
        return LeanRun(self._record, self._params(event, delivery_pk))

    def record_in(self, connection: Connection, event: CommentEvent, delivery_pk: int) -> bool:
        """`record` in the caller's transaction on `connection` (its commit is the caller's)."""
        return self._record.count(connection, self._params(event, delivery_pk)) == 1

    def _params(self, event: CommentEvent, delivery_pk: int) -> dict[str, Any]:
        return {
            "delivery_pk": delivery_pk,
            "host": event.host,
            "repo": event.repo,
            "thread_key": event.thread.key,
            "action": event.action,
            "comment_id": event.comment_id,
            "author": event.actor.login,
            "body": event.body,
            "url": event.url,
            "recorded_at": self.clock(),
        }

    def all(self, *, limit: int = 1000) -> list[RecordedComment]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(CommentRecord).order_by(CommentRecord.id).limit(limit)
            ).scalars()
            return [_recorded(r) for r in rows]
