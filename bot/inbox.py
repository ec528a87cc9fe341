"""The durable inbox: deliveries stored before they are acknowledged, then claimed and settled.

All methods are blocking SQL; async callers run them with `asyncio.to_thread`.
A claim is a lease: its holder renews it while it works, and when the holder dies
the lease runs out and another worker takes the delivery over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.db import insert_ignoring_conflicts
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


class Inbox:
    """Stores, claims and settles deliveries in the shared database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = insert_ignoring_conflicts(engine)

    # ---------------------------------------------------------- ingress side

    def store_many(self, items: Sequence[IncomingDelivery]) -> list[StoreResult]:
        """Store deliveries in one transaction (one commit for the lot).

        A delivery whose (host, delivery id) is already stored is not stored again;
        its result says `duplicate` and carries the first copy's id and status.
        """
        now = self.clock()
        results: list[StoreResult] = []
        with Session(self.engine) as session, session.begin():
            for item in items:
                status = PENDING if item.handled else IGNORED
                stmt = (
                    self._insert(Delivery)
                    .values(
                        host=item.host,
                        delivery_id=item.delivery_id,
                        event=item.event,
                        action=item.action,
                        headers=item.headers,
                        body=item.body,
                        received_at=now,
                        status=status,
                        attempts=0,
                        next_attempt_at=now,
                        finished_at=None if item.handled else now,
                        note=None if item.handled else f"event {item.event!r} is not handled",
                    )
                    .on_conflict_do_nothing(index_elements=["host", "delivery_id"])
                    .returning(Delivery.id)
                )
                pk = session.execute(stmt).scalar_one_or_none()
                if pk is not None:
                    results.append(StoreResult(pk, False, status))
                    continue
                first = session.execute(
                    select(Delivery.id, Delivery.status).where(
                        Delivery.host == item.host, Delivery.delivery_id == item.delivery_id
                    )
                ).one()
                results.append(StoreResult(first.id, True, first.status))
        return results

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

    def next_due(self) -> datetime | None:
        """When the earliest pending delivery or running lease falls due."""
        with Session(self.engine) as session:
            pending = session.execute(
                select(func.min(Delivery.next_attempt_at)).where(Delivery.status == PENDING)
            ).scalar()
            leases = session.execute(
                select(func.min(Delivery.lease_expires_at)).where(Delivery.status == PROCESSING)
            ).scalar()
        times = [t for t in (pending, leases) if t is not None]
        return min(times) if times else None

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
