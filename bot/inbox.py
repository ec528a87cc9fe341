"""The durable inbox: deliveries stored before they are acknowledged, then claimed and settled.

All methods are blocking SQL; async callers run them with `asyncio.to_thread`.
A claim is a lease: its holder renews it while it works, and when the holder dies
the lease runs out and another worker takes the delivery over.

A claim charges nothing: an attempt is counted when a delivery's handling starts
(`start`), so deliveries of a batch whose worker died before their turn keep theirs.
`start` is also where one thread's deliveries keep their order: a delivery starts only
when no earlier delivery of its thread (by the event's own time, then the time
received, then id) is still waiting or being handled; otherwise its worker parks it
(`park`) and it is claimed again a moment later.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import (
    Connection,
    Engine,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from bot.clock import Every, utcnow
from bot.db import execute_alone, reading
from bot.db.lean import LeanRun, run_all, run_each
from bot.db.models import Delivery
from bot.delivery import IncomingDelivery
from bot.inbox_insert import StoreResult as StoreResult
from bot.inbox_insert import (
    _driver_time,
    _insert_returning,
    _insert_sqlite,
    _json_text,
)
from bot.inbox_queries import (
    _COLUMNS,
    _abandoned_query,
    _claim_update,
    _heads_query,
    _held_by,
    _late_lean,
    _order_statement,
    _settle_statement,
    _start_statement,
    _unordered_query,
    followers,
    ids_params,
)
from bot.inbox_queries import DONE as DONE
from bot.inbox_queries import FAILED as FAILED
from bot.inbox_queries import IGNORED as IGNORED
from bot.inbox_queries import NO_THREAD as NO_THREAD
from bot.inbox_queries import PENDING as PENDING
from bot.inbox_queries import PROCESSING as PROCESSING
from bot.inbox_queries import STATUSES as STATUSES
from bot.inbox_queries import WAITING as WAITING


@dataclass(frozen=True)
class DeliveryRow:
    """A stored delivery as the CLI and the worker see it."""

    pk: int
    host: str
    delivery_id: str
    event: str
    action: str | None
    status: str
    attempts: int
    received_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None
    note: str | None
    last_error: str | None
    headers: dict[str, str]
    body: bytes
    thread_key: str | None = None  # None until a worker has normalized it
    event_time: datetime | None = None
    started_at: datetime | None = None
    out_of_order: bool = False

    @property
    def order(self) -> tuple[datetime, datetime, int]:
        """Where it stands among its thread's deliveries."""
        return (self.event_time or self.received_at, self.received_at, self.pk)

    def summary(self) -> dict[str, Any]:
        """Everything but the body, JSON-ready."""
        return {
            "id": self.pk,
            "host": self.host,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "status": self.status,
            "attempts": self.attempts,
            "received_at": self.received_at.isoformat(),
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "note": self.note,
            "last_error": self.last_error,
            "thread_key": self.thread_key,
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "out_of_order": self.out_of_order,
        }


# DeliveryRow's fields as columns, in its order (pk is the id).


def _row_of(r: Any) -> DeliveryRow:
    """A row of `_COLUMNS` as a DeliveryRow: for the worker's reads, without the ORM
    (loading entities cost more than the rows' own reading)."""
    (pk, host, delivery_id, event, action, status, attempts, received, next_at) = r[:9]
    (finished, note, error, headers, body, key, event_time, started, late) = r[9:]
    return DeliveryRow(
        pk, host, delivery_id, event, action, status, attempts, received, next_at,
        finished, note, error, dict(headers), body, key, event_time, started, bool(late),
    )  # fmt: skip


@dataclass(frozen=True)
class Order:
    """A delivery's place in its thread, as the worker worked it out."""

    pk: int
    thread_key: str  # NO_THREAD for a delivery ordered with nothing
    event_time: datetime


def rows_status(item: IncomingDelivery) -> str:
    return PENDING if item.handled else IGNORED


# How often claims look for deliveries whose worker died mid-handling: a lease is tens
# of seconds, so a second more before the takeover costs nothing, and the look was one
# more query in every claim.
ABANDONED_LOOK_SECONDS = 1.0


class Inbox:
    """Stores, claims and settles deliveries in the shared database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._abandoned_look = Every(ABANDONED_LOOK_SECONDS)

    # ---------------------------------------------------------- ingress side

    def ingress_connection(self) -> Any:
        """A driver connection of this inbox's engine for ingress's writer to keep.

        It is its own, not the pool's (closing it closes it). On SQLite it does not
        use SQLite's busy handler, which waits for a held write lock in steps of 1,
        2, 5, 10 ms and more: while a worker commits, a delivery would wait several
        milliseconds for an answer. store_many tries again every 0.2 ms instead.
        """
        raw: Any = self.engine.raw_connection()
        if self.engine.dialect.name == "sqlite":
            raw.dbapi_connection.execute("PRAGMA busy_timeout=0")
        raw.detach()
        return raw

    def store_many(
        self, items: Sequence[IncomingDelivery], *, connection: Any = None
    ) -> list[StoreResult]:
        """Store deliveries in one transaction (one commit for the lot).

        A delivery whose (host, delivery id) is already stored is not stored again;
        its result says `duplicate` and carries the first copy's id and status. One
        INSERT for the whole batch, in the driver's own SQL and parameters: this is
        ingress's hot path, where SQLAlchemy's per-statement machinery would cost more
        than SQLite's own work (bench/README.md).

        `connection` is a driver connection from this inbox's engine that the caller
        keeps between calls (ingress's writer keeps one from `ingress_connection`);
        without it one is taken from the pool for the call.
        """
        sqlite_ = self.engine.dialect.name == "sqlite"
        stamp = _driver_time(self.clock(), sqlite_)
        encode: Callable[[dict[str, str]], Any] = _json_text if sqlite_ else Json
        params: list[Any] = []
        first_of: dict[tuple[str, str], int] = {}  # key -> index of its first item here
        for index, item in enumerate(items):
            key = (item.host, item.delivery_id)
            if key in first_of:
                continue
            first_of[key] = index
            # In the order of _STORED_COLUMNS.
            params += (item.host, item.delivery_id, item.event, item.action)
            params += (encode(item.headers), item.body, stamp)
            if item.handled:
                params += (PENDING, 0, stamp, None, None)
            else:
                params += (IGNORED, 0, stamp, stamp, f"event {item.event!r} is not handled")
        raw = self.engine.raw_connection() if connection is None else connection
        try:
            insert = _insert_sqlite if sqlite_ else _insert_returning
            inserted, earlier = insert(raw, list(first_of), params)
        finally:
            if connection is None:
                raw.close()  # back to the pool
        results = []
        for index, item in enumerate(items):
            key = (item.host, item.delivery_id)
            if key in earlier:
                results.append(earlier[key])
            elif first_of[key] == index:
                results.append(StoreResult(inserted[key], False, rows_status(item)))
            else:  # the same delivery twice in one batch: the second is a duplicate
                results.append(StoreResult(inserted[key], True, rows_status(item)))
        return results

    # ----------------------------------------------------------- worker side

    def claim(
        self, owner: str, *, limit: int, lease_seconds: float, hold_seconds: float = 0.0
    ) -> list[DeliveryRow]:
        """Lease up to `limit` due deliveries to `owner`: deliveries whose lease ran out
        first, then pending ones in the order they fell due. Of a thread, only its
        first waiting delivery (its head) is claimed that way, and with the heads the
        due deliveries that follow them in their threads, in order, as far as the
        batch has room: the claimer handles each run one after another, and no other worker
        claims a delivery of the thread meanwhile (it would only have to wait; see
        bench/README.md for what parking each cost). A pending delivery falls
        due `hold_seconds` after its next_attempt_at (a new one: after it was
        received), so that an earlier event of its thread that arrives a little later
        can still go first. The claim charges no attempt (see `start`).

        Each kind is found by its own query, in the claim index's order, so a claim
        reads about `limit` index entries however long the queue is. (One query with
        both conditions and ORDER BY id read and sorted every pending row: on SQLite a
        claim took 20 ms with 20,000 waiting and 50 ms with 100,000, against 7 ms now;
        bench/claim.py.) On PostgreSQL rows another worker
        is claiming are skipped (SKIP LOCKED); on both backends the UPDATE re-checks
        claimability, so only one worker wins a row.
        """
        with self.engine.begin() as conn:  # Core: the ORM's session cost more than the claim
            return self.claim_in(
                conn, owner, limit=limit, lease_seconds=lease_seconds, hold_seconds=hold_seconds
            )

    def claim_in(
        self,
        conn: Connection,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        hold_seconds: float = 0.0,
    ) -> list[DeliveryRow]:
        """`claim` in the caller's transaction on `conn` (its commit is the caller's)."""
        now = self.clock()
        due_by = now - timedelta(seconds=hold_seconds)
        # One statement per LIMIT (batch sizes are few): see bot.db.lean. Deliveries
        # whose worker died (a lapsed lease) are looked for at each worker's first claim,
        # then at most once in ABANDONED_LOOK_SECONDS (or one lease, if shorter).
        ids: list[int] = []
        if self._abandoned_look.due(owner, now, lease_seconds):
            ids = [r.id for r in _abandoned_query(limit).rows(conn, {"now": now})]
        if len(ids) < limit:
            # The heads, then the runs behind them as far as there is room, all
            # found by one query (one per head cost more than the rest of a claim).
            found = _heads_query(limit - len(ids)).rows(conn, {"due_by": due_by})
            ids += [head.id for head in found]
            keyed = [head for head in found if head.thread_key]
            if keyed and len(ids) < limit:
                query, params = followers(keyed, due_by, limit - len(ids))
                ids += [r.id for r in query.rows(conn, params)]
        if not ids:
            return []
        params = {
            **ids_params(ids),
            "now": now,
            "due_by": due_by,
            "owner": owner,
            "expires": now + timedelta(seconds=lease_seconds),
        }
        claimed = _claim_update(len(ids)).rows(conn, params)
        return sorted((_row_of(r) for r in claimed), key=lambda r: r.pk)

    # ------------------------------------------------------ order in a thread

    def unordered(self, *, limit: int, received_by: datetime | None = None) -> list[DeliveryRow]:
        """Waiting deliveries whose thread nobody has worked out yet, oldest first
        (optionally only those received by `received_by`).

        Any worker may work them out (`set_order`), whoever holds them: a thread key
        is a pure function of the stored payload.
        """
        query = _unordered_query(received_by is not None, limit)
        params = {"received_by": received_by}
        with reading(self.engine) as conn:
            return [_row_of(r) for r in query.rows(conn, params)]

    def set_order(self, orders: Sequence[Order]) -> int:
        """Write each delivery's thread and event time, in one transaction (one prebuilt
        UPDATE run for each, sent together on PostgreSQL: a CASE of them all, built and
        compiled per call, cost more than the writes); a delivery whose order is
        written already keeps it (every worker works out the same)."""
        if not orders:
            return 0
        with self.engine.begin() as conn:
            return self.set_order_in(conn, orders)

    def set_order_in(self, conn: Connection, orders: Sequence[Order]) -> int:
        """`set_order` in the caller's transaction on `conn`."""
        params = [{"pk": o.pk, "key": o.thread_key, "at": o.event_time} for o in orders]
        return sum(_order_statement().counts(conn, params)) if params else 0

    def start(
        self, row: DeliveryRow, owner: str, *, hold_seconds: float = 0.0, late: bool = False
    ) -> bool:
        """Charge an attempt and mark the handling of `owner`'s claimed `row` begun, if
        its turn in its thread has come; one statement, built once (its Python side
        cost more than SQLite's own work when it was built per call).

        Its turn has come when no earlier delivery of its thread, in (event_time,
        received_at, id) order, is waiting or being handled, and no delivery whose
        thread is not known yet, received by the end of `row`'s hold window, is either
        (it might be an earlier event of the same thread). False when it must wait, or
        when the lease is lost (`park` tells which). `late` (see `late`) is recorded.
        """
        return self._start_call(row, owner, hold_seconds, late).alone(self.engine) == 1

    def start_many_in(
        self,
        conn: Connection,
        rows: Sequence[DeliveryRow],
        owner: str,
        *,
        hold_seconds: float = 0.0,
        late: Collection[int] = (),
    ) -> set[int]:
        """`start` each of `rows` (claimed by `owner`, none behind another of them in
        its thread) in the caller's transaction on `conn`; returns those that started.
        A worker starts a claim's thread heads this way together, instead of each with
        a commit of its own (bench/README.md, session 12)."""
        calls = [self._start_call(row, owner, hold_seconds, row.pk in late) for row in rows]
        started = run_each(conn, calls)
        return {row.pk for row, count in zip(rows, started, strict=True) if count == 1}

    def finish_and_start(
        self,
        finished: Sequence[tuple[int, str, str | None]],
        row: DeliveryRow | None,
        owner: str,
        *,
        writes: Sequence[Callable[[Connection], Any]] = (),
        hold_seconds: float = 0.0,
        late: bool = False,
    ) -> tuple[list[bool], bool]:
        """Run `writes` (the handlers' writes that wait for their delivery's settle),
        settle `finished` ((pk, status, note) each, as `finish`), then `start` `row`
        (if any), in one transaction: the settles are committed with the start, or
        (the process dies first) not at all, as if it had died before settling them,
        and they are seen by the start's check of earlier deliveries. One connection
        and one commit where there were one per statement (each cost more than a
        settle's UPDATE). Returns which were settled, and whether `row` started."""
        with self.engine.begin() as conn:
            settled = self.finish_in(conn, finished, owner, writes=writes)
            if row is None:
                return settled, False
            started = self._start_call(row, owner, hold_seconds, late)(conn)
        return settled, started == 1

    def finish_in(
        self,
        conn: Connection,
        finished: Sequence[tuple[int, str, str | None]],
        owner: str,
        *,
        writes: Sequence[Callable[[Connection], Any]] = (),
    ) -> list[bool]:
        """Run `writes` and settle `finished` in the caller's transaction on `conn`
        (see `finish_and_start`); which were settled."""
        run_all(conn, writes)
        calls = [self._finish_call(pk, owner, status, note) for pk, status, note in finished]
        return [count == 1 for count in run_each(conn, calls)]

    def _start_call(self, row: DeliveryRow, owner: str, hold_seconds: float, late: bool) -> LeanRun:
        ordered = bool(row.thread_key)  # "" (no thread) and None wait for nothing
        params: dict[str, Any] = {
            "pk": row.pk,
            "owner": owner,
            "now": self.clock(),
            "late": late,
        }
        if ordered:
            params |= {
                "key": row.thread_key,
                "at": row.order[0],
                "received": row.received_at,
                "window": row.received_at + timedelta(seconds=hold_seconds),
            }
        return LeanRun(_start_statement(ordered), params)

    def late(self, rows: Sequence[DeliveryRow]) -> set[int]:
        """Those of `rows` (claimed, their thread known) that a later delivery of their
        thread has already started before: they arrived out of order. One query for a
        batch; the answer cannot change while they wait, since a delivery waiting in a
        thread holds every later one back."""
        if not any(r.thread_key for r in rows):
            return set()
        with reading(self.engine) as conn:
            return self.late_in(conn, rows)

    def late_in(self, conn: Connection, rows: Sequence[DeliveryRow]) -> set[int]:
        """`late` in the caller's transaction on `conn`."""
        pks = [r.pk for r in rows if r.thread_key]
        if not pks:
            return set()
        return {row.id for row in _late_lean(len(pks)).rows(conn, ids_params(pks))}

    def park(self, pk: int, owner: str, why: str, delay_seconds: float) -> bool:
        """Give a claimed delivery back to wait its turn in its thread, charging
        nothing; False when the lease was lost."""
        return self._settle(
            pk,
            owner,
            status=PENDING,
            note=why,
            next_attempt_at=self.clock() + timedelta(seconds=delay_seconds),
            lease_owner=None,
            lease_expires_at=None,
        )

    def renew(self, pks: Sequence[int], owner: str, lease_seconds: float) -> set[int]:
        """Extend `owner`'s leases on `pks` in one statement; returns those still held
        (a lease another worker took over is not extended)."""
        if not pks:
            return set()
        with Session(self.engine) as session, session.begin():
            renewed = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(pks), *_held_by(owner))
                .values(lease_expires_at=self.clock() + timedelta(seconds=lease_seconds))
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
            return set(renewed.scalars())

    def finish(self, pk: int, owner: str, status: str, note: str | None = None) -> bool:
        """Settle a claimed delivery as done or ignored."""
        return self._finish_call(pk, owner, status, note).alone(self.engine) == 1

    def _finish_call(self, pk: int, owner: str, status: str, note: str | None) -> LeanRun:
        assert status in (DONE, IGNORED)
        return self._settle_call(
            pk,
            owner,
            status=status,
            note=note,
            finished_at=self.clock(),
            lease_owner=None,
            lease_expires_at=None,
        )

    def retry_later(self, pk: int, owner: str, error: str, delay_seconds: float) -> bool:
        """Give a claimed delivery back, to be tried again after `delay_seconds`."""
        return self._settle(
            pk,
            owner,
            status=PENDING,
            last_error=error,
            next_attempt_at=self.clock() + timedelta(seconds=delay_seconds),
            lease_owner=None,
            lease_expires_at=None,
        )

    def fail(self, pk: int, owner: str, error: str) -> bool:
        """Give up on a claimed delivery; it stays visible and replayable."""
        return self._settle(
            pk,
            owner,
            status=FAILED,
            last_error=error,
            finished_at=self.clock(),
            lease_owner=None,
            lease_expires_at=None,
        )

    def _settle(self, pk: int, owner: str, **values: Any) -> bool:
        """One UPDATE, in a transaction of its own (see execute_alone), built once per
        set of columns: built per call, its Python side cost more than the database's."""
        return self._settle_call(pk, owner, **values).alone(self.engine) == 1

    def _settle_call(self, pk: int, owner: str, **values: Any) -> LeanRun:
        params = {"pk": pk, "owner": owner} | {f"new_{k}": v for k, v in values.items()}
        return LeanRun(_settle_statement(tuple(values)), params)

    # ------------------------------------------------------------- operators

    def get(self, ref: str) -> DeliveryRow | None:
        """Find a delivery by our numeric id, or by the host's delivery id."""
        with self.engine.connect() as conn:
            query = select(*_COLUMNS)
            if ref.isdigit() and len(ref) < 19:
                query = query.where(or_(Delivery.id == int(ref), Delivery.delivery_id == ref))
            else:
                query = query.where(Delivery.delivery_id == ref)
            found = conn.execute(query.order_by(Delivery.id).limit(1)).first()
            return _row_of(found) if found else None

    def list(self, *, status: str | None = None, limit: int = 50) -> list[DeliveryRow]:
        """The newest deliveries first, optionally of one status."""
        with self.engine.connect() as conn:
            query = select(*_COLUMNS).order_by(Delivery.id.desc()).limit(limit)
            if status:
                query = query.where(Delivery.status == status)
            return [_row_of(r) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
        return {status: count for status, count in rows}

    def replay(self, pk: int) -> bool:
        """Queue a delivery to be processed again now; False if it is being processed."""
        now = self.clock()
        statement = (
            update(Delivery)
            .where(Delivery.id == pk, Delivery.status != PROCESSING)
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                finished_at=None,
                last_error=None,
                note=f"replayed at {now.isoformat(timespec='seconds')}",
            )
        )
        return execute_alone(self.engine, statement) == 1
