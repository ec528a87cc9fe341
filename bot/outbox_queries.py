"""The outbox's prebuilt statements (bot/outbox.py), one Lean each, and its row states."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, case, exists, func, select, update

from bot.db import bound_values, dialect_insert
from bot.db.lean import Lean
from bot.db.models import OutboxItem, PostedComment, TimeSlot

PENDING, SENDING, SENT, FAILED, SUPERSEDED = "pending", "sending", "sent", "failed", "superseded"


_OUTBOX = cast(Table, OutboxItem.__table__)
_POSTED = cast(Table, PostedComment.__table__)
_SLOTS = cast(Table, TimeSlot.__table__)
_ID_OF_KEY = Lean(select(_OUTBOX.c.id).where(_OUTBOX.c.key == bindparam("key")))
_SAME = _OUTBOX.c.coalesce_key == bindparam("coalesce")
_NEWER_VERSION = Lean(
    select(_OUTBOX.c.id).where(
        _SAME,
        _OUTBOX.c.version > bindparam("than"),
        _OUTBOX.c.status.in_((PENDING, SENDING, SENT)),
    )
)
_OLDER_PENDING = (_SAME, _OUTBOX.c.status == PENDING, _OUTBOX.c.version < bindparam("than"))
_INHERIT_UNCLEAR = Lean(
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("pk"))
    .values(maybe_sent=True, next_attempt_at=bindparam("at"))
)
# Superseded with what an unclear older try hands on (see Outbox._coalesce).
_SUPERSEDE_OLDER = Lean(
    update(_OUTBOX)
    .where(*_OLDER_PENDING)
    .values(status=SUPERSEDED, sent_at=bindparam("now"))
    .returning(_OUTBOX.c.maybe_sent, _OUTBOX.c.next_attempt_at)
)
_LAPSED_LEASE = (_OUTBOX.c.status == SENDING, _OUTBOX.c.lease_expires_at < bindparam("now"))
_LAPSED = Lean(select(_OUTBOX.c.id).where(*_LAPSED_LEASE).limit(1))
_EXPIRE_LEASES = Lean(
    update(_OUTBOX)
    .where(*_LAPSED_LEASE)
    .values(status=PENDING, maybe_sent=True, lease_owner=None, lease_expires_at=None)
)
_EARLIER = _OUTBOX.alias("earlier")
_CANDIDATES = Lean(
    select(_OUTBOX.c.id, _OUTBOX.c.host, _OUTBOX.c.installation_id)
    .where(
        _OUTBOX.c.status == PENDING,
        _OUTBOX.c.next_attempt_at <= bindparam("now"),
        ~exists().where(
            _EARLIER.c.thread_key == _OUTBOX.c.thread_key,
            _EARLIER.c.id < _OUTBOX.c.id,
            _EARLIER.c.status.in_((PENDING, SENDING)),
        ),
    )
    .order_by(_OUTBOX.c.urgent.desc(), _OUTBOX.c.id)
    .limit(20)
    .with_for_update(of=_OUTBOX, skip_locked=True)
)
_TAKE_ROW = Lean(
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("pk"), _OUTBOX.c.status == PENDING)
    .values(
        status=SENDING,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        attempts=_OUTBOX.c.attempts + 1,
    )
    .returning(*_OUTBOX.c)
)
_NEXT_DUE = Lean(select(func.min(_OUTBOX.c.next_attempt_at)).where(_OUTBOX.c.status == PENDING))
_NEXT_SLOT = Lean(select(func.min(_SLOTS.c.next_at)).where(_SLOTS.c.slot_key.not_like("job:%")))
_POSTED_ONE = Lean(select(_POSTED).where(_POSTED.c.coalesce_key == bindparam("key")))


# The columns an enqueue and a saved comment give (the statements name each).
_ENQUEUED = (
    "key",
    "host",
    "installation_id",
    "repo",
    "thread_key",
    "thread",
    "kind",
    "payload",
    "coalesce_key",
    "version",
    "urgent",
    "status",
    "attempts",
    "maybe_sent",
    "next_attempt_at",
    "created_at",
)
_POSTED_COLUMNS = ("coalesce_key", "host", "thread_key", "comment_id", "url")


@dataclass(frozen=True)
class _DialectStatements:
    enqueue: Lean
    enqueue_version: Lean
    save_posted: Lean


@functools.cache
def _statements(dialect: str) -> _DialectStatements:
    """The statements whose ON CONFLICT is each dialect's own."""
    insert = dialect_insert(dialect)
    enqueue = (
        insert(_OUTBOX)
        .values({name: bindparam(name) for name in _ENQUEUED})
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(_OUTBOX.c.id)
    )
    # A version of an edited-in-place comment is stored superseded at once when a newer
    # version is already queued, sending or sent (a slower writer): decided in the
    # INSERT, where a query before it and an UPDATE after it did this.
    newer = _OUTBOX.alias("newer")
    at_type = _OUTBOX.c.created_at.type
    has_newer = exists().where(
        newer.c.coalesce_key == bindparam("coalesce_key"),
        newer.c.version > bindparam("version"),
        newer.c.status.in_((PENDING, SENDING, SENT)),
    )
    enqueue_version = (
        insert(_OUTBOX)
        .values(
            {
                **{name: bindparam(name) for name in _ENQUEUED},
                "status": case((has_newer, SUPERSEDED), else_=PENDING),
                "sent_at": case((has_newer, bindparam("created_at", type_=at_type)), else_=None),
            }
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(_OUTBOX.c.id, _OUTBOX.c.status)
    )
    posted = insert(_POSTED).values({name: bindparam(name) for name in _POSTED_COLUMNS})
    save_posted = posted.on_conflict_do_update(
        index_elements=["coalesce_key"],
        set_={"comment_id": posted.excluded.comment_id, "url": posted.excluded.url},
    )
    return _DialectStatements(Lean(enqueue), Lean(enqueue_version), Lean(save_posted))


@functools.cache
def _settle(names: tuple[str, ...], refund: bool) -> Lean:
    """Set `names` (bot.db.bound_values) on row `pk` if `owner` still holds it; `refund`:
    and give back the attempt its claim counted. Built once per set of columns."""
    values = bound_values(names)
    if refund:
        values["attempts"] = _OUTBOX.c.attempts - 1
    return Lean(
        update(_OUTBOX)
        .where(
            _OUTBOX.c.id == bindparam("pk"),
            _OUTBOX.c.status == SENDING,
            _OUTBOX.c.lease_owner == bindparam("owner"),
        )
        .values(values)
    )
