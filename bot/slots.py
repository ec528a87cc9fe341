"""Time slots shared by every process: "may this happen now?" won by exactly one of them.

A slot is a row (key, next_at). Taking it is a conditional UPDATE (or the first INSERT)
that succeeds only when `next_at` has passed, and moves it on by an interval; whoever
loses simply tries later. The outbox paces each installation's writes with one, and a
job that only one process may run (redelivery reconcile) takes one before each run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import dialect_insert
from bot.db.lean import Lean
from bot.db.models import TimeSlot

_SLOTS = cast(Table, TimeSlot.__table__)
# Move a slot on if it is free (the common case: the slot exists): prebuilt.
_TAKE = Lean(
    update(_SLOTS)
    .where(_SLOTS.c.slot_key == bindparam("key"), _SLOTS.c.next_at <= bindparam("now"))
    .values(next_at=bindparam("following"))
)
_HOLD = (
    update(_SLOTS)
    .where(_SLOTS.c.slot_key == bindparam("key"), _SLOTS.c.next_at < bindparam("until"))
    .values(next_at=bindparam("until"))
)


@functools.cache
def _first(dialect: str) -> Any:
    """The slot's first row, unless another process made it meanwhile."""
    insert = dialect_insert(dialect)
    return (
        insert(_SLOTS)
        .values(slot_key=bindparam("key"), next_at=bindparam("following"))
        .on_conflict_do_nothing(index_elements=["slot_key"])
        .returning(_SLOTS.c.slot_key)
    )


def take(conn: Connection, key: str, now: datetime, interval: float) -> bool:
    """Take slot `key` if it is free at `now`, holding it for `interval` seconds.

    A slot that exists is taken by one conditional UPDATE; only a slot that does not
    exist yet (or is not free) costs an INSERT that does nothing on a conflict."""
    params = {"key": key, "now": now, "following": now + timedelta(seconds=interval)}
    if _TAKE.count(conn, params) == 1:
        return True
    inserted = conn.execute(_first(conn.dialect.name), params).first()
    return inserted is not None


def hold(conn: Connection | Session, key: str, until: datetime) -> None:
    """Keep slot `key` taken until at least `until` (never brings it forward)."""
    conn.execute(_HOLD, {"key": key, "until": until})


class Slots:
    """Slots in their own transactions, for callers that hold no session."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def take(self, key: str, interval: float) -> bool:
        with self.engine.begin() as conn:
            return take(conn, key, self.clock(), interval)
