"""The durable inbox: deliveries stored before they are acknowledged, then claimed and settled.

All methods are blocking SQL; async callers run them with `asyncio.to_thread`.
A claim is a lease: its holder renews it while it works, and when the holder dies
the lease runs out and another worker takes the delivery over.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.db.models import Delivery
from bot.webhooks import IncomingDelivery

PENDING, PROCESSING, DONE, IGNORED, FAILED = "pending", "processing", "done", "ignored", "failed"
STATUSES = (PENDING, PROCESSING, DONE, IGNORED, FAILED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """A name unique to this worker, readable in `deliveries show`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class StoreResult:
    pk: int
    duplicate: bool
    status: str


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
        }


def _row(d: Delivery) -> DeliveryRow:
    return DeliveryRow(
        pk=d.id,
        host=d.host,
        delivery_id=d.delivery_id,
        event=d.event,
        action=d.action,
        status=d.status,
        attempts=d.attempts,
        received_at=d.received_at,
        next_attempt_at=d.next_attempt_at,
        finished_at=d.finished_at,
        note=d.note,
        last_error=d.last_error,
        headers=dict(d.headers),
        body=d.body,
    )


def _driver_value(value: Any, sqlite_: bool) -> Any:
    """A value as the driver takes it, stored the way the column's type would store it."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        if sqlite_:
            return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return utc
    if isinstance(value, dict):
        return json.dumps(value) if sqlite_ else Json(value)
    return value


def rows_status(item: IncomingDelivery) -> str:
    return PENDING if item.handled else IGNORED


class Inbox:
    """Stores, claims and settles deliveries in the shared database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # ---------------------------------------------------------- ingress side

    def store_many(self, items: Sequence[IncomingDelivery]) -> list[StoreResult]:
        """Store deliveries in one transaction (one commit for the lot).

        A delivery whose (host, delivery id) is already stored is not stored again;
        its result says `duplicate` and carries the first copy's id and status. One
        INSERT for the whole batch: this is ingress's hot path.
        """
        now = self.clock()
        rows: list[dict[str, Any]] = []
        first_of: dict[tuple[str, str], int] = {}  # key -> index of its first item here
        for index, item in enumerate(items):
            key = (item.host, item.delivery_id)
            if key in first_of:
                continue
            first_of[key] = index
            rows.append(
                {
                    "host": item.host,
                    "delivery_id": item.delivery_id,
                    "event": item.event,
                    "action": item.action,
                    "headers": item.headers,
                    "body": item.body,
                    "received_at": now,
                    "status": rows_status(item),
                    "attempts": 0,
                    "next_attempt_at": now,
                    "finished_at": None if item.handled else now,
                    "note": None if item.handled else f"event {item.event!r} is not handled",
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "last_error": None,
                }
            )
        # The driver's own connection: SQLAlchemy's per-transaction machinery costs more
        # here than the batch's SQL does (bench/README.md).
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(*self._multirow_insert(rows))
            inserted = {(r[1], r[2]): r[0] for r in cursor.fetchall()}
            earlier = {}
            mark = "?" if self.engine.dialect.name == "sqlite" else "%s"
            for key in first_of.keys() - inserted.keys():
                cursor.execute(
                    "SELECT id, status FROM deliveries WHERE host = "  # noqa: S608 (fixed text)
                    f"{mark} AND delivery_id = {mark}",
                    key,
                )
                found = cursor.fetchone()
                if found is None:  # cannot be: the INSERT just met it
                    raise RuntimeError(f"delivery {key} neither inserted nor found")
                earlier[key] = StoreResult(found[0], True, found[1])
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
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

    def _multirow_insert(self, rows: list[dict[str, Any]]) -> tuple[str, tuple[Any, ...]]:
        """One INSERT ... VALUES (...), (...) ... RETURNING for the batch, in the driver's own
        SQL: on the ingress hot path SQLAlchemy's per-row statement machinery costs more
        than SQLite's own work (see bench/README.md)."""
        columns = list(rows[0])
        sqlite_ = self.engine.dialect.name == "sqlite"
        mark = "?" if sqlite_ else "%s"
        group = "(" + ", ".join([mark] * len(columns)) + ")"
        # Only our own column names and placeholders go into the text; values are bound.
        sql = (
            f"INSERT INTO deliveries ({', '.join(columns)}) VALUES "  # noqa: S608
            + ", ".join([group] * len(rows))
            + " ON CONFLICT (host, delivery_id) DO NOTHING RETURNING id, host, delivery_id"
        )
        # Plain values go as they are; the rest (the batch's one `now`, each row's headers)
        # are converted once per object: every row holds the same datetime.
        plain = (str, bytes, int, type(None))
        converted: dict[int, Any] = {}
        params: list[Any] = []
        for row in rows:
            for name in columns:
                value = row[name]
                if type(value) not in plain:
                    key = id(value)  # alive for the whole call: `rows` holds it
                    if key not in converted:
                        converted[key] = _driver_value(value, sqlite_)
                    value = converted[key]
                params.append(value)
        return sql, tuple(params)

    # ----------------------------------------------------------- worker side

    def _claimable(self, now: datetime) -> Any:
        return or_(
            and_(Delivery.status == PENDING, Delivery.next_attempt_at <= now),
            and_(Delivery.status == PROCESSING, Delivery.lease_expires_at < now),
        )

    def claim(self, owner: str, *, limit: int, lease_seconds: float) -> list[DeliveryRow]:
        """Lease up to `limit` due deliveries, oldest first, to `owner`.

        On PostgreSQL rows another worker is claiming are skipped (SKIP LOCKED); on
        both backends the UPDATE re-checks claimability, so only one worker wins a row.
        """
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            candidates = (
                select(Delivery.id)
                .where(self._claimable(now))
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(session.execute(candidates).scalars())
            if not ids:
                return []
            claimed = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), self._claimable(now))
                .values(
                    status=PROCESSING,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=Delivery.attempts + 1,
                )
                .returning(Delivery)
                .execution_options(synchronize_session=False)
            ).scalars()
            return sorted((_row(d) for d in claimed), key=lambda r: r.pk)

    def renew(self, pk: int, owner: str, lease_seconds: float) -> bool:
        """Extend `owner`'s lease; False when the lease was lost to another worker."""
        return self._settle(
            pk, owner, lease_expires_at=self.clock() + timedelta(seconds=lease_seconds)
        )

    def finish(self, pk: int, owner: str, status: str, note: str | None = None) -> bool:
        """Settle a claimed delivery as done or ignored."""
        assert status in (DONE, IGNORED)
        return self._settle(
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
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == pk,
                    Delivery.status == PROCESSING,
                    Delivery.lease_owner == owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # ------------------------------------------------------------- operators

    def get(self, ref: str) -> DeliveryRow | None:
        """Find a delivery by our numeric id, or by the host's delivery id."""
        with Session(self.engine) as session:
            query = select(Delivery)
            if ref.isdigit() and len(ref) < 19:
                query = query.where(or_(Delivery.id == int(ref), Delivery.delivery_id == ref))
            else:
                query = query.where(Delivery.delivery_id == ref)
            found = session.execute(query.order_by(Delivery.id).limit(1)).scalar_one_or_none()
            return _row(found) if found else None

    def list(self, *, status: str | None = None, limit: int = 50) -> list[DeliveryRow]:
        """The newest deliveries first, optionally of one status."""
        with Session(self.engine) as session:
            query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
            if status:
                query = query.where(Delivery.status == status)
            return [_row(d) for d in session.execute(query).scalars()]

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
        return {status: count for status, count in rows}

    def replay(self, pk: int) -> bool:
        """Queue a delivery to be processed again now; False if it is being processed."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            result = session.execute(
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
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]
