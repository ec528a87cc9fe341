"""Retention: old data goes, in small batches, so the database stops growing forever.

Three kinds, each with its own age (a setting; 0 keeps that kind forever):

- settled deliveries (done, ignored, failed) lose their headers and body after
  `delivery_body_days`; the row itself, which is what makes a late redelivery a
  duplicate, stays until `delivery_days`, which is never under 8 days (GitHub
  redelivers for 3 days, GHES for 7). A delivery that recorded a comment keeps its row:
  the thread's comment history hangs on it.
- sent (and superseded) outbox rows go after `outbox_days`.
- the transcript and inputs of a session closed more than `transcript_days` ago go;
  the session's row (its summary) stays. A session ended by a time limit, idle expiry
  or lifetime may still be resumed by the next mention, so its transcript stays while
  it is the newest session of its thread.
- a repository's daily usage rows (spending limits, `daily_usage`) go after
  `transcript_days` too: the limits read only today's row, and the cost of older work
  lives on in the sessions' rows.

Each batch is one short transaction of at most `batch` rows; nothing holds the
database for long. On SQLite the freed pages go back to the file system afterwards
(`PRAGMA incremental_vacuum`; new files are made with auto_vacuum=incremental, see
bot/db/__init__.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, delete, exists, func, select, text, update
from sqlalchemy.orm import aliased

from bot.clock import utcnow
from bot.config import Settings
from bot.db import is_sqlite
from bot.db.models import (
    CommentRecord,
    DailyUsage,
    Delivery,
    OutboxItem,
    SessionInput,
    SessionRow,
    TranscriptEvent,
)
from bot.inbox import DONE, FAILED, IGNORED
from bot.sessions.store import CLOSED, IDLE_EXPIRY, LIFETIME, TIME_LIMIT
from bot.sessions.store import FAILED as SESSION_FAILED

log = logging.getLogger(__name__)

SETTLED_DELIVERIES = (DONE, IGNORED, FAILED)
SENT_WRITES = ("sent", "superseded")
ENDED_SESSIONS = (CLOSED, SESSION_FAILED)
RESUMABLE_REASONS = (TIME_LIMIT, IDLE_EXPIRY, LIFETIME)
# Hosts redeliver for up to 7 days (GHES; GitHub.com 3): a delivery's row, which makes a
# redelivery a duplicate, must outlive that.
# https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
MIN_DELIVERY_DAYS = 8
DEFAULT_BATCH = 500
VACUUM_PAGES = 2000  # pages one round of incremental_vacuum gives back (8 MB of 4 KB pages)
SESSIONS_PER_CHUNK = 50  # sessions named in one IN (...) while their rows go in batches
JOB_SLOT = "retention"
DAY = 24 * 3600.0


@dataclass(frozen=True)
class Policy:
    """How long each kind is kept, in days (0: forever)."""

    delivery_body_days: float = 7.0
    delivery_days: float = 30.0
    outbox_days: float = 30.0
    transcript_days: float = 90.0
    batch: int = DEFAULT_BATCH

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            delivery_body_days=settings.retention_delivery_body_days,
            delivery_days=settings.retention_delivery_days,
            outbox_days=settings.retention_outbox_days,
            transcript_days=settings.retention_transcript_days,
        )


@dataclass
class Report:
    """What a run removed (or, dry, would remove), by kind."""

    delivery_bodies: int = 0
    deliveries: int = 0
    outbox: int = 0
    transcript_sessions: int = 0
    transcript_events: int = 0
    session_inputs: int = 0
    usage_days: int = 0
    freed_pages: int = 0
    dry_run: bool = False
    lines: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        return [
            f"delivery bodies: {verb} {self.delivery_bodies}",
            f"delivery rows:   {verb} {self.deliveries}",
            f"outbox rows:     {verb} {self.outbox}",
            f"transcripts:     {verb} {self.transcript_events} events and "
            f"{self.session_inputs} inputs of {self.transcript_sessions} sessions",
            f"daily usage:     {verb} {self.usage_days} rows",
        ]


def _before(now: datetime, days: float) -> datetime | None:
    return None if days <= 0 else now - timedelta(days=days)


def _ids(engine: Engine, query: Select[Any]) -> list[int]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _in_batches(
    engine: Engine,
    pick: Callable[[int | None], Select[Any]],
    act: Callable[[list[int]], None],
    batch: int,
) -> int:
    """Pick up to `batch` ids after the last one, act on them, until none are left."""
    done, last = 0, None
    while True:
        ids = _ids(engine, pick(last).limit(batch))
        if not ids:
            return done
        act(ids)
        done += len(ids)
        last = ids[-1]
        if len(ids) < batch:
            return done


class Retention:
    def __init__(
        self, engine: Engine, policy: Policy, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock

    def run(self, *, dry_run: bool = False) -> Report:
        now = self.clock()
        report = Report(dry_run=dry_run)
        report.delivery_bodies = self._delivery_bodies(now, dry_run)
        report.deliveries = self._deliveries(now, dry_run)
        report.outbox = self._outbox(now, dry_run)
        self._transcripts(now, dry_run, report)
        report.usage_days = self._daily_usage(now, dry_run)
        if not dry_run:
            report.freed_pages = self._give_back_space()
        return report

    # ------------------------------------------------------------ each kind

    def _run(
        self,
        pick: Callable[[int | None], Select[Any]],
        act: Callable[[list[int]], None],
        dry_run: bool,
    ) -> int:
        if dry_run:
            with self.engine.connect() as conn:
                counted = select(func.count()).select_from(pick(None).subquery())
                return int(conn.execute(counted).scalar_one())
        return _in_batches(self.engine, pick, act, self.policy.batch)

    def _delivery_bodies(self, now: datetime, dry_run: bool) -> int:
        before = _before(now, self.policy.delivery_body_days)
        if before is None:
            return 0

        def pick(after: int | None) -> Select[Any]:
            query = (
                select(Delivery.id)
                .where(
                    Delivery.status.in_(SETTLED_DELIVERIES),
                    Delivery.received_at < before,
                    Delivery.body != b"",
                )
                .order_by(Delivery.id)
            )
            return query if after is None else query.where(Delivery.id > after)

        def act(ids: list[int]) -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Delivery).where(Delivery.id.in_(ids)).values(body=b"", headers={})
                )

        return self._run(pick, act, dry_run)

    def _deliveries(self, now: datetime, dry_run: bool) -> int:
        days = self.policy.delivery_days
        before = _before(now, max(days, MIN_DELIVERY_DAYS) if days > 0 else 0)
        if before is None:
            return 0
        recorded = exists().where(CommentRecord.delivery_pk == Delivery.id)

        def pick(after: int | None) -> Select[Any]:
            query = (
                select(Delivery.id)
                .where(
                    Delivery.status.in_(SETTLED_DELIVERIES),
                    Delivery.received_at < before,
                    ~recorded,
                )
                .order_by(Delivery.id)
            )
            return query if after is None else query.where(Delivery.id > after)

        def act(ids: list[int]) -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(Delivery).where(Delivery.id.in_(ids)))

        return self._run(pick, act, dry_run)

    def _outbox(self, now: datetime, dry_run: bool) -> int:
        before = _before(now, self.policy.outbox_days)
        if before is None:
            return 0

        def pick(after: int | None) -> Select[Any]:
            query = (
                select(OutboxItem.id)
                .where(OutboxItem.status.in_(SENT_WRITES), OutboxItem.created_at < before)
                .order_by(OutboxItem.id)
            )
            return query if after is None else query.where(OutboxItem.id > after)

        def act(ids: list[int]) -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(OutboxItem).where(OutboxItem.id.in_(ids)))

        return self._run(pick, act, dry_run)

    def _daily_usage(self, now: datetime, dry_run: bool) -> int:
        before = _before(now, self.policy.transcript_days)
        if before is None:
            return 0
        # A row's key is its UTC day as YYYY-MM-DD, which sorts as the days do; the
        # table's key has no integer id, so the rows go by day, one day a transaction.
        cutoff = before.strftime("%Y-%m-%d")
        with self.engine.connect() as conn:
            days = list(
                conn.execute(
                    select(DailyUsage.day, func.count())
                    .where(DailyUsage.day < cutoff)
                    .group_by(DailyUsage.day)
                    .order_by(DailyUsage.day)
                )
            )
        if not dry_run:
            for day, _ in days:
                with self.engine.begin() as conn:
                    conn.execute(delete(DailyUsage).where(DailyUsage.day == day))
        return sum(int(rows) for _, rows in days)

    def expired_sessions(self, now: datetime) -> list[str]:
        """Ended sessions whose transcripts are past keeping and cannot be resumed."""
        before = _before(now, self.policy.transcript_days)
        if before is None:
            return []
        newer = aliased(SessionRow)
        # Resumable: ended by a limit, and no later session of the same thread yet.
        resumable = SessionRow.close_reason.in_(RESUMABLE_REASONS) & ~exists().where(
            newer.thread_key == SessionRow.thread_key, newer.created_at > SessionRow.created_at
        )
        has_transcript = exists().where(
            TranscriptEvent.session_id == SessionRow.id
        ) | exists().where(SessionInput.session_id == SessionRow.id)
        query = (
            select(SessionRow.id)
            .where(
                SessionRow.state.in_(ENDED_SESSIONS),
                SessionRow.closed_at < before,
                ~resumable,
                has_transcript,
            )
            .order_by(SessionRow.id)
        )
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def _transcripts(self, now: datetime, dry_run: bool, report: Report) -> None:
        sessions = self.expired_sessions(now)
        report.transcript_sessions = len(sessions)
        per_chunk = SESSIONS_PER_CHUNK
        for start in range(0, len(sessions), per_chunk):
            chunk = sessions[start : start + per_chunk]
            report.transcript_events += self._run(
                self._pick_rows(TranscriptEvent, chunk), self._drop_rows(TranscriptEvent), dry_run
            )
            report.session_inputs += self._run(
                self._pick_rows(SessionInput, chunk), self._drop_rows(SessionInput), dry_run
            )

    def _pick_rows(
        self, model: type[TranscriptEvent] | type[SessionInput], sessions: list[str]
    ) -> Callable[[int | None], Select[Any]]:
        def pick(after: int | None) -> Select[Any]:
            query = select(model.id).where(model.session_id.in_(sessions)).order_by(model.id)
            return query if after is None else query.where(model.id > after)

        return pick

    def _drop_rows(
        self, model: type[TranscriptEvent] | type[SessionInput]
    ) -> Callable[[list[int]], None]:
        def act(ids: list[int]) -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(model).where(model.id.in_(ids)))

        return act

    # ------------------------------------------------------------ space

    def _give_back_space(self) -> int:
        """SQLite: return free pages to the file system (files made with
        auto_vacuum=incremental; an older file needs one VACUUM first, see the README)."""
        if not is_sqlite(str(self.engine.url)):
            return 0  # PostgreSQL's autovacuum reuses the space
        options = {"isolation_level": "AUTOCOMMIT"}
        with self.engine.connect().execution_options(**options) as conn:
            free = int(conn.execute(text("PRAGMA freelist_count")).scalar_one())
            # Each step of the statement frees one page, and Python's sqlite3 steps a
            # statement without rows only once; executescript steps it to the end. In
            # rounds of VACUUM_PAGES, so other writers get the lock in between.
            raw = conn.connection.driver_connection
            assert raw is not None
            left = free
            while left > 0:
                raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                now_free = int(conn.execute(text("PRAGMA freelist_count")).scalar_one())
                if now_free >= left:
                    break  # nothing more to give back
                left = now_free
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).fetchall()
        return free - left


class RetentionJob:
    """The daily automatic run, in whichever process takes the day's slot first."""

    def __init__(self, retention: Retention, slots_take: Callable[[str, float], bool]) -> None:
        self.retention = retention
        self.take = slots_take

    def tick(self) -> Report | None:
        if not self.take(JOB_SLOT, DAY * 0.9):
            return None
        report = self.retention.run()
        log.info("retention: %s", "; ".join(report.summary()))
        return report
