"""The inbox's statements, built once: the claim's queries, start, settle and order.

Statuses and the statements that move deliveries between them live here; `bot.inbox`
runs them (see its docstring for what each step guarantees).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, tuple_, update
from sqlalchemy.orm import aliased

from bot.db.lean import Lean, numbered, numbered_params
from bot.db.models import Delivery
from bot.db.types import UtcDateTime

PENDING, PROCESSING, DONE, IGNORED, FAILED = "pending", "processing", "done", "ignored", "failed"
STATUSES = (PENDING, PROCESSING, DONE, IGNORED, FAILED)
WAITING = (PENDING, PROCESSING)  # not finished: it holds back later deliveries of its thread
NO_THREAD = ""  # the thread key of a delivery that is ordered with nothing

# The columns a delivery row is read with.
_FIELDS = (
    "id", "host", "delivery_id", "event", "action", "status", "attempts", "received_at",
    "next_attempt_at", "finished_at", "note", "last_error", "headers", "body",
    "thread_key", "event_time", "started_at", "out_of_order",
)  # fmt: skip
_TABLE = cast(Table, Delivery.__table__)
_COLUMNS = tuple(_TABLE.c[name] for name in _FIELDS)


def _held_by(owner: str) -> tuple[Any, ...]:
    """Conditions for a delivery `owner` still holds: it is being processed on its lease."""
    return (Delivery.status == PROCESSING, Delivery.lease_owner == owner)


@functools.cache
def _start_statement(ordered: bool) -> Lean:
    """Inbox.start's UPDATE, with its values as bound parameters."""
    values = {
        "attempts": Delivery.attempts + 1,
        "started_at": bindparam("now", type_=UtcDateTime()),
        "out_of_order": bindparam("late"),
    }
    where = [Delivery.id == bindparam("pk"), *_held_by(bindparam("owner"))]  # type: ignore[arg-type]
    if ordered:
        other = aliased(Delivery, name="other")
        at = bindparam("at", type_=UtcDateTime())
        received = bindparam("received", type_=UtcDateTime())
        place = tuple_(other.event_time, other.received_at, other.id)
        earlier = select(other.id).where(
            other.thread_key == bindparam("key"),
            other.status.in_(WAITING),
            other.event_time <= at,
            place < tuple_(at, received, bindparam("pk")),
        )
        unknown = select(other.id).where(
            other.thread_key.is_(None),
            other.status.in_(WAITING),
            other.event_time.is_(None),  # always so with no key; lets the index answer
            other.received_at <= bindparam("window", type_=UtcDateTime()),
            other.id != bindparam("pk"),
        )
        where += [~exists(earlier), ~exists(unknown)]
    return Lean(update(Delivery).where(*where).values(**values))


@functools.cache
def _order_statement() -> Lean:
    """Inbox.set_order's UPDATE of one delivery, with its values as bound parameters."""
    return Lean(
        update(_TABLE)
        .where(Delivery.id == bindparam("pk"), Delivery.thread_key.is_(None))
        .values(thread_key=bindparam("key"), event_time=bindparam("at", type_=UtcDateTime()))
    )


@functools.cache
def _settle_statement(columns: tuple[str, ...]) -> Lean:
    """Inbox._settle's UPDATE of `columns` (each bound as new_<name>), held rows only."""
    table = Delivery.__table__
    values = {name: bindparam(f"new_{name}", type_=table.c[name].type) for name in columns}
    where = [Delivery.id == bindparam("pk"), *_held_by(bindparam("owner"))]  # type: ignore[arg-type]
    return Lean(update(Delivery).where(*where).values(values))


@functools.cache
def _head_of_thread() -> Any:
    """The claim's condition on a pending delivery: it is the first waiting one of its
    thread (or belongs to none, or its thread is not known yet). A delivery behind
    another that is being handled, or waits for a retry, is not claimed at all: its
    turn comes with that one's (see Inbox.claim's followers)."""
    other = aliased(Delivery, name="earlier")
    earlier = select(other.id).where(
        other.thread_key == Delivery.thread_key,
        other.status.in_(WAITING),
        other.event_time <= Delivery.event_time,
        tuple_(other.event_time, other.received_at, other.id)
        < tuple_(Delivery.event_time, Delivery.received_at, Delivery.id),
    )
    return or_(Delivery.thread_key.is_(None), Delivery.thread_key == NO_THREAD, ~exists(earlier))


@functools.cache
def _late_lean(size: int) -> Lean:
    """`_late_query` for `size` deliveries (ids `id0`...), one statement per size."""
    return Lean(_late_query(_ids_in(size)))


def _ids_in(size: int) -> list[Any]:
    """Placeholders for `size` ids (`id0`...)."""
    return numbered("id", size)


def ids_params(ids: Sequence[int]) -> dict[str, Any]:
    """The parameters of `_ids_in(len(ids))`."""
    return numbered_params("id", ids)


@functools.cache
def _claim_update(size: int) -> Lean:
    """The claim's UPDATE of `size` picked deliveries (ids `id0`...), re-checking that
    each is still claimable (see `Inbox.claim`); one statement per size."""
    status = func.coalesce(Delivery.status, "")
    # The status is tested through coalesce() so that no index can answer the test:
    # given the bare column, SQLite's planner chose the claim index over the ids and
    # read every pending row (5 ms of the UPDATE with 20,000 waiting) instead of
    # looking up the picked ones.
    claimable = or_(
        and_(status == PENDING, Delivery.next_attempt_at <= _at("due_by")),
        and_(status == PROCESSING, Delivery.lease_expires_at < _at("now")),
    )
    return Lean(
        update(_TABLE)
        .where(Delivery.id.in_(_ids_in(size)), claimable)
        .values(status=PROCESSING, lease_owner=bindparam("owner"), lease_expires_at=_at("expires"))
        .returning(*_COLUMNS)
    )


def _late_query(ids: list[Any]) -> Any:
    """Inbox.late's SELECT of the deliveries `ids` (placeholders)."""
    mine = aliased(Delivery, name="mine")
    other = aliased(Delivery, name="other")
    later = select(other.id).where(
        other.thread_key == mine.thread_key,
        other.status.in_((DONE, FAILED, PENDING, PROCESSING)),
        other.event_time >= mine.event_time,
        tuple_(other.event_time, other.received_at, other.id)
        > tuple_(mine.event_time, mine.received_at, mine.id),
        other.started_at.is_not(None),
    )
    return select(mine.id).where(mine.id.in_(ids), exists(later))


@functools.cache
def _abandoned_query(room: int) -> Lean:
    """The claim's first query: deliveries whose worker's lease ran out."""
    return Lean(
        select(Delivery.id)
        .where(Delivery.status == PROCESSING, Delivery.lease_expires_at < _at("now"))
        .order_by(Delivery.id)
        .limit(room)
        .with_for_update(skip_locked=True)
    )


@functools.cache
def _heads_query(room: int) -> Lean:
    """The claim's second query: the due heads of their threads, in the order they fell due."""
    return Lean(
        select(Delivery.id, Delivery.thread_key, Delivery.event_time, Delivery.received_at)
        .where(
            Delivery.status == PENDING,
            Delivery.next_attempt_at <= _at("due_by"),
            _head_of_thread(),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(room)
        .with_for_update(skip_locked=True)
    )


@functools.cache
def _unordered_query(received_by: bool, room: int) -> Lean:
    """Inbox.unordered's query, with or without its bound on received_at."""
    query = (
        select(*_COLUMNS)
        .where(
            Delivery.thread_key.is_(None),
            Delivery.status.in_(WAITING),
            Delivery.event_time.is_(None),  # always so with no key; lets the index answer
        )
        .order_by(Delivery.received_at, Delivery.id)
        .limit(room)
    )
    if received_by:
        query = query.where(Delivery.received_at <= _at("received_by"))
    return Lean(query)


def _at(name: str) -> Any:
    """A time parameter, stored as the deliveries' times are."""
    return bindparam(name, type_=UtcDateTime())


def followers(heads: Sequence[Any], due_by: datetime, room: int) -> tuple[Lean, dict[str, Any]]:
    """The due pending deliveries of `heads`' threads other than the heads, in order,
    to claim with them, up to `room`: one query for all heads (the statement for this
    many threads, heads and room, and its parameters). Every other pending
    delivery of a head's thread comes after it (a head has no earlier waiting
    delivery), and one that a look ordered meanwhile before it is only started in its
    turn (`start`)."""
    keys = sorted({h.thread_key for h in heads})
    params = {**numbered_params("key", keys), **ids_params([h.id for h in heads])}
    params["due_by"] = due_by
    return _followers_query(len(keys), len(heads), room), params


@functools.cache
def _followers_query(keys: int, heads: int, room: int) -> Lean:
    """`followers`' statement for `keys` threads and `heads` heads (placeholders `key0`...
    and `id0`...), up to `room` (in the SQL text on PostgreSQL: one statement each)."""
    return Lean(
        select(Delivery.id)
        .where(
            Delivery.thread_key.in_(numbered("key", keys)),
            Delivery.status == PENDING,
            Delivery.next_attempt_at <= _at("due_by"),
            Delivery.id.not_in(_ids_in(heads)),
        )
        .order_by(Delivery.event_time, Delivery.received_at, Delivery.id)
        .limit(room)
        .with_for_update(skip_locked=True)
    )
