"""The outbox: every write to a host is a row first, then sent exactly once, in order per thread.

- Idempotent: a write has a key; enqueueing the same key twice stores one row. The key
  also goes into the written body as a hidden marker, so after an ambiguous failure
  (a timeout after sending, a 5xx on a create) the sender looks for the marker in the
  thread before writing again.
- Ordered: a row is sent only when no older row of its thread is still unsent. Across
  threads, urgent rows (the 👀 acknowledgement) go before the rest, oldest first.
- Paced: writes to one installation (or token) go out at least `min_interval` apart,
  across every process, through a time slot per installation (bot/slots.py); a rate-limit
  answer pushes that installation's next slot back by what the host asked.
- Coalesced: edits of one comment (a session's status) share a `coalesce_key`; a newer
  edit supersedes older unsent ones, so only the newest state is sent. That comment is
  posted at most once, whichever versions supersede each other and whoever dies when:
  before a version POSTs it, `posted_comments` records that a post is under way
  (write-ahead, no comment id yet), and only the saved id replaces that record. Every
  later version that finds such a record, or inherits an unclear outcome, looks for the
  comment by its marker (the coalesce key, the same in every version) before posting.
- Leased: a claimed row is the sender's for `lease_seconds`, renewed every third of
  that while the send is in flight; a sender that dies stops renewing, so another
  takes the row over (as "maybe sent") within one lease. A send as a whole is bounded
  by `send_timeout` (each host call by the host timeout), so a hung call cannot keep a
  row, and its thread, forever.
- Retried: retryable failures back off (the host's Retry-After, else exponentially from
  `retry_seconds`), up to `max_attempts`, then the row is `failed` and stays visible.
  A rate-limited try costs no attempt: the row waits as long as the host asks.

Storage methods are blocking SQL; the `Sender` (bot/sender.py) runs them off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.orm import Session

from bot import slots
from bot.clock import Every, utcnow
from bot.db import bound_params, execute_alone
from bot.db.lean import LeanRun
from bot.db.models import OutboxItem
from bot.events import ThreadRef
from bot.hosts.base import (
    CommitState,
    DiffComment,
    Posted,
)
from bot.outbox_queries import (
    _CANDIDATES,
    _EXPIRE_LEASES,
    _ID_OF_KEY,
    _INHERIT_UNCLEAR,
    _LAPSED,
    _NEWER_VERSION,
    _NEXT_DUE,
    _NEXT_SLOT,
    _POSTED_ONE,
    _SUPERSEDE_OLDER,
    _TAKE_ROW,
    _settle,
    _statements,
)
from bot.outbox_queries import FAILED as FAILED
from bot.outbox_queries import PENDING as PENDING
from bot.outbox_queries import SENDING as SENDING
from bot.outbox_queries import SENT as SENT
from bot.outbox_queries import SUPERSEDED as SUPERSEDED

log = logging.getLogger(__name__)

# How often claims look for rows whose sender died mid-send (a lapsed lease): a lease
# is tens of seconds, so a second more before the takeover costs nothing, and the look
# was one more query in every claim.
LAPSED_LOOK_SECONDS = 1.0

STATUSES = (PENDING, SENDING, SENT, FAILED, SUPERSEDED)
COMMENT, UPSERT, REACTION, REVIEW, RESOLVE, COMMIT_STATE = (
    "comment",
    "upsert",
    "reaction",
    "review",
    "resolve",
    "commit_state",
)
MAX_RETRY_DELAY = 3600.0


def marker(key: str) -> str:
    """The hidden HTML comment that lets the bot find its own writes again."""
    return f"<!-- threadline:{key} -->"


def with_marker(body: str, key: str) -> str:
    return f"{body.rstrip()}\n\n{marker(key)}"


@dataclass(frozen=True)
class Write:
    """One intended write. Build with the constructors below."""

    key: str
    thread: ThreadRef
    kind: str
    payload: dict[str, Any]
    installation_id: int | None = None
    coalesce_key: str | None = None
    version: int | None = None  # for edits of one comment: higher is newer
    urgent: bool = False  # sent before other threads' waiting writes (acknowledgements)

    def __post_init__(self) -> None:
        if "--" in self.key or len(self.key) > 200:
            raise ValueError(f"outbox key {self.key!r} must be short and free of '--'")


def comment(key: str, thread: ThreadRef, body: str, installation_id: int | None = None) -> Write:
    """A new comment in `thread` (a reply, for a review thread)."""
    return Write(key, thread, COMMENT, {"body": body}, installation_id)


def upsert(
    name: str, version: int, thread: ThreadRef, body: str, installation_id: int | None = None
) -> Write:
    """The comment `name` (e.g. a session's status) posted once, then edited in place.

    `version` orders successive states (higher is newer, whatever order they are
    enqueued in); only the newest is sent, and an older one never overwrites it.
    """
    return Write(
        f"{name}@{version}", thread, UPSERT, {"body": body}, installation_id, name, version
    )


def reaction(
    key: str, thread: ThreadRef, comment_id: str, content: str, installation_id: int | None = None
) -> Write:
    """A reaction: the bot's acknowledgement, so it goes ahead of other threads' writes."""
    payload = {"comment_id": comment_id, "content": content}
    return Write(key, thread, REACTION, payload, installation_id, urgent=True)


def review(
    key: str,
    pull: ThreadRef,
    commit_sha: str,
    comments: list[DiffComment],
    body: str = "",
    installation_id: int | None = None,
) -> Write:
    payload = {"commit_sha": commit_sha, "body": body, "comments": [asdict(c) for c in comments]}
    return Write(key, pull, REVIEW, payload, installation_id)


def resolve(key: str, thread: ThreadRef, installation_id: int | None = None) -> Write:
    return Write(key, thread, RESOLVE, {}, installation_id)


def commit_state(
    key: str, pull: ThreadRef, state: CommitState, installation_id: int | None = None
) -> Write:
    return Write(key, pull, COMMIT_STATE, asdict(state), installation_id)


@dataclass(frozen=True)
class OutboxRow:
    pk: int
    key: str
    host: str
    installation_id: int | None
    thread: ThreadRef
    kind: str
    payload: dict[str, Any]
    coalesce_key: str | None
    version: int | None
    status: str
    attempts: int
    maybe_sent: bool
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    result: dict[str, Any] | None
    last_error: str | None

    @property
    def pacing_key(self) -> str:
        return pacing_key(self.host, self.installation_id)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "key": self.key,
            "host": self.host,
            "installation_id": self.installation_id,
            "thread": self.thread.key,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "result": self.result,
            "last_error": self.last_error,
        }


# Hosts with no rate limit to respect: the playground writes to our own database.
UNPACED_HOSTS = frozenset({"local"})


def pacing_key(host: str, installation_id: int | None) -> str:
    return f"{host}:{installation_id if installation_id is not None else 'token'}"


def _row(item: Any) -> OutboxRow:
    """An outbox row from its database row (an entity or a Core row)."""
    return OutboxRow(
        pk=item.id,
        key=item.key,
        host=item.host,
        installation_id=item.installation_id,
        thread=ThreadRef(**item.thread),
        kind=item.kind,
        payload=dict(item.payload),
        coalesce_key=item.coalesce_key,
        version=item.version,
        status=item.status,
        attempts=item.attempts,
        maybe_sent=item.maybe_sent,
        next_attempt_at=item.next_attempt_at,
        created_at=item.created_at,
        sent_at=item.sent_at,
        result=item.result,
        last_error=item.last_error,
    )


# Prebuilt statements: every write to a host passes enqueue, claim and settle, and
# building a statement per call cost about as much as running it.
@dataclass(frozen=True)
class Claim:
    """What `Outbox.claim_to_send` found: a row to send (None: nothing now, look again at
    `next_at`), whether a newer version made it pointless, and for an edited-in-place
    comment what is known of it (`Outbox.posted`)."""

    row: OutboxRow | None
    superseded: bool = False
    posted: Any = None
    next_at: datetime | None = None
    # The claim wrote `Outbox.posting`'s record for this first post of the comment.
    marked: bool = False


def _next_slot(conn: Connection) -> datetime | None:
    """When the earliest unsent row could go out (for the sender's sleep)."""
    due: datetime | None = _NEXT_DUE.scalar(conn)
    if due is None:
        return None
    slot: datetime | None = _NEXT_SLOT.scalar(conn)
    return max(due, slot) if slot is not None else due


def _settle_call(
    row: OutboxRow, owner: str, status: str, refund: bool, values: dict[str, Any]
) -> LeanRun:
    """The UPDATE that settles `row` if `owner` still holds it, with its parameters."""
    values.update(status=status, lease_owner=None, lease_expires_at=None)
    params = {"pk": row.pk, "owner": owner, **bound_params(values)}
    return LeanRun(_settle(tuple(sorted(values)), refund), params)


def _posted_values(key: str, thread: ThreadRef, found: Mapping[str, Any]) -> dict[str, Any]:
    """A posted_comments row: what is known of an edited-in-place comment."""
    return {
        "coalesce_key": key,
        "host": thread.host,
        "thread_key": thread.key,
        "comment_id": found.get("id"),
        "url": found.get("url"),
    }


@dataclass
class Outbox:
    """Rows of intended writes in the shared database."""

    engine: Engine
    clock: Callable[[], datetime] = field(default=utcnow)

    def __post_init__(self) -> None:
        self._dialect = self.engine.dialect.name
        self._lapsed_look = Every(LAPSED_LOOK_SECONDS)

    def enqueue(self, write: Write, conn: Connection | None = None) -> int:
        """Store `write` unless its key is stored already; return the row's id either way.
        In `conn`'s transaction when given (the caller commits), else in its own."""
        if conn is None:
            with self.engine.begin() as own:
                return self.enqueue(write, own)
        now = self.clock()
        values = {
            "key": write.key,
            "host": write.thread.host,
            "installation_id": write.installation_id,
            "repo": write.thread.repo,
            "thread_key": write.thread.key,
            "thread": asdict(write.thread),
            "kind": write.kind,
            "payload": write.payload,
            "coalesce_key": write.coalesce_key,
            "version": write.version,
            "urgent": write.urgent,
            "status": PENDING,
            "attempts": 0,
            "maybe_sent": False,
            "next_attempt_at": now,
            "created_at": now,
        }
        statements = _statements(self._dialect)
        if write.coalesce_key is None:
            pk = statements.enqueue.scalar(conn, values)
        else:
            stored = statements.enqueue_version.first(conn, values)
            pk = None if stored is None else stored.id
            if stored is not None and stored.status == PENDING:
                self._coalesce(conn, stored.id, write, now)
        if pk is None:
            return int(_ID_OF_KEY.scalar(conn, {"key": write.key}))
        return int(pk)

    def _coalesce(self, conn: Connection, pk: int, write: Write, now: datetime) -> None:
        """A newer state of a comment makes older unsent ones pointless (an older one
        arriving late, a slower writer's, was stored superseded by the INSERT)."""
        same = {"coalesce": write.coalesce_key, "than": write.version or 0, "now": now}
        older = _SUPERSEDE_OLDER.rows(conn, same)
        # An older version whose last try ended unclearly (it may have posted the
        # comment, or the host may still post it) hands that on: this row looks for
        # the marker first, and not before that older try's own wait is over.
        unclear = [row.next_attempt_at for row in older if row.maybe_sent]
        if unclear:
            _INHERIT_UNCLEAR.count(conn, {"pk": pk, "at": max(*unclear, now)})

    # ------------------------------------------------------------------ sender side

    def claim(self, owner: str, *, min_interval: float, lease_seconds: float) -> OutboxRow | None:
        """Take the next sendable row whose installation has a free pacing slot."""
        with self.engine.begin() as conn:
            return self._claim_in(conn, owner, self.clock(), min_interval, lease_seconds)

    def _claim_in(
        self, conn: Connection, owner: str, now: datetime, min_interval: float, lease: float
    ) -> OutboxRow | None:
        # A sender that died mid-send may or may not have written: look before writing.
        # Looked for with a read first: the UPDATE takes the write lock, and almost
        # every claim finds no lapsed lease. Not at every claim: each sender looks at its
        # first claim, then at most once in LAPSED_LOOK_SECONDS (or one lease, if shorter).
        looks = self._lapsed_look.due(owner, now, lease)
        if looks and _LAPSED.first(conn, {"now": now}) is not None:
            _EXPIRE_LEASES.count(conn, {"now": now})
        # On PostgreSQL the candidates are locked (rows another sender is claiming
        # are skipped), so the UPDATE below cannot lose a row after its slot was
        # taken. A sender that lost one went on to the next installation's slot
        # still holding the first: two senders doing that waited for each other
        # (a deadlock, seen with three concurrent senders).
        candidates = _CANDIDATES.rows(conn, {"now": now})
        tried: set[str] = set()
        expires = now + timedelta(seconds=lease)
        for item in candidates:
            key = pacing_key(item.host, item.installation_id)
            if key in tried:
                continue
            tried.add(key)
            interval = 0.0 if item.host in UNPACED_HOSTS else min_interval
            if not slots.take(conn, key, now, interval):
                continue
            won = _TAKE_ROW.first(conn, {"pk": item.id, "owner": owner, "expires": expires})
            if won is not None:  # the row as taken (RETURNING), not read again
                return _row(won)
        return None

    def claim_to_send(self, owner: str, *, min_interval: float, lease_seconds: float) -> Claim:
        """`claim`, with what the sender reads next in the same transaction: for an
        edited-in-place comment whether a newer version made it pointless and what is
        known of the comment; with nothing to claim, when to look again (`next_slot`)."""
        with self.engine.begin() as conn:
            return self._claim_to_send_in(conn, owner, self.clock(), min_interval, lease_seconds)

    def _claim_to_send_in(
        self, conn: Connection, owner: str, now: datetime, min_interval: float, lease: float
    ) -> Claim:
        row = self._claim_in(conn, owner, now, min_interval, lease)
        if row is None:
            return Claim(None, next_at=_next_slot(conn))
        if row.kind != UPSERT or row.coalesce_key is None:
            return Claim(row)
        same = {"coalesce": row.coalesce_key, "than": row.version or 0}
        if _NEWER_VERSION.first(conn, same) is not None:
            return Claim(row, superseded=True)
        posted = _POSTED_ONE.first(conn, {"key": row.coalesce_key})
        if posted is None and not row.maybe_sent:
            # Nobody tried to post it: this version will. `posting`'s write-ahead record
            # commits with the claim, before the POST, where it took a commit of its own.
            values = _posted_values(row.coalesce_key, row.thread, {})
            _statements(self._dialect).save_posted.count(conn, values)
            return Claim(row, marked=True)
        return Claim(row, posted=posted)

    def sent_and_claim(
        self,
        row: OutboxRow,
        owner: str,
        result: dict[str, Any],
        *,
        hold: float,
        min_interval: float,
        lease_seconds: float,
    ) -> tuple[bool, Claim]:
        """`sent`, and the next `claim_to_send`, in one transaction (one commit where there
        were three or four): an edited-in-place comment's new id is remembered (whether or
        not the row was still ours: the comment exists), the installation's slot is held
        `hold` seconds from now (0: not), the row settled if `owner` still holds it, and
        the next row claimed with the slot as it now is. Returns (settled, the claim)."""
        now = self.clock()
        with self.engine.begin() as conn:
            key = row.coalesce_key if row.kind == UPSERT else None
            if key and result.get("id") is not None and not result.get("edited"):
                _statements(self._dialect).save_posted.count(
                    conn, _posted_values(key, row.thread, result)
                )
            if hold > 0:
                slots.hold(conn, row.pacing_key, now + timedelta(seconds=hold))
            values = {"sent_at": now, "result": result, "last_error": None}
            settled = _settle_call(row, owner, SENT, False, values)(conn) == 1
            return settled, self._claim_to_send_in(conn, owner, now, min_interval, lease_seconds)

    def hold_installation(self, key: str, seconds: float) -> None:
        """Push the installation's next write back (the host rate-limited us)."""
        with self.engine.begin() as conn:
            slots.hold(conn, key, self.clock() + timedelta(seconds=seconds))

    def next_slot(self) -> datetime | None:
        """When the earliest unsent row could go out (for the sender's sleep)."""
        with self.engine.connect() as conn:
            return _next_slot(conn)

    def renew(self, row: OutboxRow, owner: str, lease_seconds: float) -> bool:
        """Extend `owner`'s lease on `row`; False when it is no longer theirs."""
        expires = self.clock() + timedelta(seconds=lease_seconds)
        params = {"pk": row.pk, "owner": owner, **bound_params({"lease_expires_at": expires})}
        return _settle(("lease_expires_at",), False).alone(self.engine, params) == 1

    def settle(
        self, row: OutboxRow, owner: str, status: str, *, refund: bool = False, **values: Any
    ) -> bool:
        """One UPDATE, in a transaction of its own (see bot.db.execute_alone), if `owner`
        still holds the row; `refund` gives back the attempt its claim counted."""
        return _settle_call(row, owner, status, refund, values).alone(self.engine) == 1

    def sent(self, row: OutboxRow, owner: str, result: dict[str, Any]) -> bool:
        return self.settle(row, owner, SENT, sent_at=self.clock(), result=result, last_error=None)

    def retry_later(
        self,
        row: OutboxRow,
        owner: str,
        error: str,
        delay: float,
        maybe_sent: bool,
        *,
        charged: bool = True,
    ) -> bool:
        """Give the row back to be tried after `delay`; `charged=False` gives back the
        attempt its claim counted (the try was refused by a rate limit)."""
        return self.settle(
            row,
            owner,
            PENDING,
            refund=not charged,
            last_error=error,
            maybe_sent=row.maybe_sent or maybe_sent,
            next_attempt_at=self.clock() + timedelta(seconds=delay),
        )

    def give_back(self, row: OutboxRow, owner: str) -> bool:
        """Return a claimed row unsent, its attempt refunded, to be claimed again now."""
        return self.settle(row, owner, PENDING, refund=True)

    def fail(self, row: OutboxRow, owner: str, error: str) -> bool:
        return self.settle(row, owner, FAILED, last_error=error, sent_at=self.clock())

    # --------------------------------------------------------- edited-in-place comments

    def posted(self, coalesce_key: str) -> Any:
        """What is known of the comment (a row with `comment_id` and `url`): None when no
        version ever tried to post it; a record without `comment_id` when a post was
        attempted and its id is unknown (the comment may exist: look for its marker
        before posting)."""
        with self.engine.connect() as conn:
            return _POSTED_ONE.first(conn, {"key": coalesce_key})

    def posting(self, coalesce_key: str, thread: ThreadRef) -> None:
        """Write-ahead, committed before a version POSTs the comment: from here until
        its id is saved, every version of `coalesce_key` looks for it first."""
        self._save_posted(coalesce_key, thread, None, None)

    def remember_posted(self, coalesce_key: str, thread: ThreadRef, posted: Posted) -> None:
        self._save_posted(coalesce_key, thread, posted.id, posted.url)

    def _save_posted(
        self, coalesce_key: str, thread: ThreadRef, comment_id: str | None, url: str | None
    ) -> None:
        values = _posted_values(coalesce_key, thread, {"id": comment_id, "url": url})
        _statements(self._dialect).save_posted.alone(self.engine, values)

    # ------------------------------------------------------------------- operators

    def recent(self, *, status: str | None = None, limit: int = 50) -> list[OutboxRow]:
        with Session(self.engine) as session:
            query = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
            if status:
                query = query.where(OutboxItem.status == status)
            return [_row(i) for i in session.execute(query).scalars()]

    def get(self, pk: int) -> OutboxRow | None:
        with Session(self.engine) as session:
            item = session.get(OutboxItem, pk)
            return _row(item) if item else None

    def retry(self, pk: int) -> bool:
        """Queue a failed row again, now, with a fresh set of attempts."""
        statement = (
            update(OutboxItem)
            .where(and_(OutboxItem.id == pk, OutboxItem.status == FAILED))
            .values(status=PENDING, attempts=0, next_attempt_at=self.clock(), sent_at=None)
        )
        return execute_alone(self.engine, statement) == 1

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
            ).all()
        return {status: n for status, n in rows}
