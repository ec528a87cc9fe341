"""Time slots shared by every process: "may this happen now?" won by exactly one of them.

A slot is a row (key, next_at). Taking it is a conditional UPDATE (or the first INSERT)
that succeeds only when `next_at` has passed, and moves it on by an interval; whoever
loses simply tries later. The outbox paces each installation's writes with one, and a
job that only one process may run (redelivery reconcile) takes one before each run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.models import TimeSlot


def take(session: Session, key: str, now: datetime, interval: float) -> bool:
    """Take slot `key` if it is free at `now`, holding it for `interval` seconds."""
    following = now + timedelta(seconds=interval)
    insert = insert_ignoring_conflicts(session.get_bind())  # type: ignore[arg-type]
    inserted = session.execute(
        insert(TimeSlot)
        .values(slot_key=key, next_at=following)
        .on_conflict_do_nothing(index_elements=["slot_key"])
        .returning(TimeSlot.slot_key)
    ).scalar_one_or_none()
    if inserted is not None:
        return True
    taken = session.execute(
        update(TimeSlot)
        .where(TimeSlot.slot_key == key, TimeSlot.next_at <= now)
        .values(next_at=following)
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def hold(session: Session, key: str, until: datetime) -> None:
    """Keep slot `key` taken until at least `until` (never brings it forward)."""
    session.execute(
        update(TimeSlot)
        .where(TimeSlot.slot_key == key, TimeSlot.next_at < until)
        .values(next_at=until)
        .execution_options(synchronize_session=False)
    )


class Slots:
    """Slots in their own transactions, for callers that hold no session."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def take(self, key: str, interval: float) -> bool:
        with Session(self.engine) as session, session.begin():
            return take(session, key, self.clock(), interval)
