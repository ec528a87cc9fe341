"""Retention on SQLite and PostgreSQL: old rows go, recent and live ones stay, ids that
make a redelivery a duplicate outlive any redelivery, and a SQLite file shrinks."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, make_url, select, text, update
from sqlalchemy.orm import Session

from bot.cli import main
from bot.clock import utcnow
from bot.config import ConfigError, load_settings
from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.db.models import (
    CommentRecord,
    DailyUsage,
    Delivery,
    OutboxItem,
    SessionInput,
    SessionRow,
    TranscriptEvent,
)
from bot.events import ThreadRef
from bot.retention import Policy, Retention, RetentionJob
from bot.sessions.store import Launch, SessionOptions, SessionStore
from bot.slots import Slots
from tests.conftest import POSTGRES_URL, postgres_reachable

NOW = utcnow()
BODY = b'{"action": "created", "comment": {"body": "' + b"x" * 2000 + b'"}}'


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def add_delivery(
    engine: Engine, name: str, days: float, status: str = "done", *, comment: bool = False
) -> int:
    with Session(engine) as session, session.begin():
        row = Delivery(
            host="github",
            delivery_id=name,
            event="issue_comment",
            action="created",
            headers={"X-GitHub-Delivery": name},
            body=BODY,
            received_at=ago(days),
            status=status,
            attempts=1,
            next_attempt_at=ago(days),
            finished_at=None if status == "pending" else ago(days),
        )
        session.add(row)
        session.flush()
        if comment:
            session.add(
                CommentRecord(
                    delivery_pk=row.id,
                    host="github",
                    repo="octo-org/hello-world",
                    thread_key="github:octo-org/hello-world/issues/7",
                    action="created",
                    comment_id=name,
                    author="maintainer",
                    body="hello",
                    url=None,
                    recorded_at=ago(days),
                )
            )
        return row.id


def add_write(engine: Engine, key: str, days: float, status: str) -> None:
    thread = ThreadRef("github", "octo-org/hello-world", "issue", 7)
    with Session(engine) as session, session.begin():
        session.add(
            OutboxItem(
                key=key,
                host="github",
                installation_id=42,
                repo=thread.repo,
                thread_key=thread.key,
                thread={"host": "github", "repo": thread.repo, "target": "issue", "number": 7},
                kind="comment",
                payload={"body": "hello"},
                status=status,
                attempts=1,
                maybe_sent=False,
                urgent=False,
                next_attempt_at=ago(days),
                created_at=ago(days),
                sent_at=ago(days) if status == "sent" else None,
            )
        )


def add_session(
    engine: Engine, name: str, number: int, days: float, reason: str | None, *, created: float
) -> str:
    """A session with a transcript and an input, created `created` days ago and, unless
    `reason` is None (live), closed `days` ago for `reason`."""
    store = SessionStore(engine)
    thread = ThreadRef("github", "octo-org/hello-world", "issue", number)
    launch = Launch(name, thread, 42, "echo", "look", "maintainer", name, None, SessionOptions())
    session_id = store.launch(launch, max_live=100).session.id
    store.record(session_id, "agent_message", {"text": "y" * 2000})
    if reason is not None:
        assert store.close(session_id, reason) is not None
    with engine.begin() as conn:
        conn.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id)
            .values(
                created_at=ago(created),
                closed_at=None if reason is None else ago(days),
            )
        )
    return session_id


def count(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def body_of(engine: Engine, pk: int) -> bytes | None:
    with engine.connect() as conn:
        return conn.execute(select(Delivery.body).where(Delivery.id == pk)).scalar_one_or_none()


def transcript(engine: Engine, session_id: str) -> int:
    return count(engine, TranscriptEvent, TranscriptEvent.session_id == session_id) + count(
        engine, SessionInput, SessionInput.session_id == session_id
    )


def test_old_rows_go_recent_and_live_ones_stay(engine: Engine) -> None:
    fresh = add_delivery(engine, "fresh", 3)
    week_old = add_delivery(engine, "week-old", 10)
    old = add_delivery(engine, "old", 40)
    old_with_comment = add_delivery(engine, "old-comment", 40, comment=True)
    old_pending = add_delivery(engine, "old-pending", 40, status="pending")
    add_write(engine, "sent-old", 40, "sent")
    add_write(engine, "superseded-old", 40, "superseded")
    add_write(engine, "sent-new", 5, "sent")
    add_write(engine, "failed-old", 40, "failed")
    add_write(engine, "pending-old", 40, "pending")
    done_old = add_session(engine, "d1", 1, 100, "user_signal", created=101)
    done_recent = add_session(engine, "d2", 2, 10, "user_signal", created=11)
    expired_newest = add_session(engine, "d3", 3, 100, "idle_expiry", created=101)
    expired_superseded = add_session(engine, "d4", 4, 100, "idle_expiry", created=102)
    later_in_thread_4 = add_session(engine, "d5", 4, 95, "user_signal", created=96)
    live_old = add_session(engine, "d6", 6, 0, None, created=100)
    sessions_before = count(engine, SessionRow)

    retention = Retention(engine, Policy(batch=2), clock=lambda: NOW)
    dry = retention.run(dry_run=True)
    assert (dry.delivery_bodies, dry.deliveries, dry.outbox) == (3, 1, 2)
    assert dry.transcript_sessions == 3
    assert body_of(engine, old) == BODY  # a dry run changes nothing
    assert count(engine, OutboxItem) == 5

    report = retention.run()
    assert (report.delivery_bodies, report.deliveries, report.outbox) == (3, 1, 2)
    assert report.transcript_sessions == 3
    assert report.transcript_events == dry.transcript_events > 0

    # Deliveries: bodies past 7 days cleared, rows past 30 days gone unless a comment hangs on
    # them; the id stays in between, so a late redelivery is still a duplicate.
    assert body_of(engine, fresh) == BODY
    assert body_of(engine, week_old) == b""
    assert body_of(engine, old) is None
    assert body_of(engine, old_with_comment) == b""
    assert count(engine, CommentRecord) == 1
    assert body_of(engine, old_pending) == BODY  # not settled: never touched
    # Outbox: old sent and superseded rows gone; recent, failed and pending ones stay.
    with engine.connect() as conn:
        keys = set(conn.execute(select(OutboxItem.key)).scalars())
    assert keys == {"sent-new", "failed-old", "pending-old"}
    # Transcripts: of long-closed sessions, except one that may still be resumed.
    assert transcript(engine, done_old) == 0
    assert transcript(engine, expired_superseded) == 0
    assert transcript(engine, later_in_thread_4) == 0
    assert transcript(engine, done_recent) > 0
    assert transcript(engine, expired_newest) > 0
    assert transcript(engine, live_old) > 0
    assert count(engine, SessionRow) == sessions_before  # the sessions' summaries stay

    again = retention.run()
    assert (again.delivery_bodies, again.deliveries, again.outbox, again.transcript_sessions) == (
        0,
        0,
        0,
        0,
    )


def test_zero_keeps_a_kind_forever(engine: Engine) -> None:
    old = add_delivery(engine, "old", 400)
    add_write(engine, "sent-old", 400, "sent")
    closed = add_session(engine, "d1", 1, 400, "user_signal", created=401)
    policy = Policy(delivery_body_days=0, delivery_days=0, outbox_days=0, transcript_days=0)
    report = Retention(engine, policy, clock=lambda: NOW).run()
    removed = (report.delivery_bodies, report.deliveries, report.outbox, report.transcript_sessions)
    assert removed == (0, 0, 0, 0)
    assert body_of(engine, old) == BODY
    assert count(engine, OutboxItem) == 1
    assert transcript(engine, closed) > 0


def test_daily_usage_goes_with_the_transcripts(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for days in (200, 91, 89, 0):
            for repo in ("octo-org/a", "octo-org/b"):
                day = ago(days).strftime("%Y-%m-%d")
                session.add(DailyUsage(day=day, host="github", repo=repo, tokens=10, cost_micros=5))
    retention = Retention(engine, Policy(), clock=lambda: NOW)
    assert retention.run(dry_run=True).usage_days == 4
    assert count(engine, DailyUsage) == 8
    report = retention.run()
    assert report.usage_days == 4
    assert "daily usage:     removed 4 rows" in report.summary()
    with engine.connect() as conn:
        kept = sorted(set(conn.execute(select(DailyUsage.day)).scalars()))
    assert kept == sorted({ago(89).strftime("%Y-%m-%d"), ago(0).strftime("%Y-%m-%d")})
    forever = Retention(engine, Policy(transcript_days=0), clock=lambda: NOW + timedelta(days=900))
    assert forever.run().usage_days == 0
    assert count(engine, DailyUsage) == 4


def test_the_daily_job_runs_in_one_process_a_day(engine: Engine) -> None:
    add_delivery(engine, "old", 40)
    first = RetentionJob(Retention(engine, Policy()), Slots(engine).take)
    second = RetentionJob(Retention(engine, Policy()), Slots(engine).take)
    report = first.tick()
    assert report is not None
    assert report.deliveries == 1
    assert second.tick() is None  # the day's slot is taken


def test_retention_run_command(
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("THREADLINE_RETENTION_OUTBOX_DAYS", "60")
    old = add_delivery(engine, "old", 10)
    add_write(engine, "sent-old", 40, "sent")  # within the 60 days set above
    assert main(["retention", "run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "delivery bodies: would remove 1" in out
    assert "outbox rows:     would remove 0" in out
    assert body_of(engine, old) == BODY
    assert main(["retention", "run"]) == 0
    assert "delivery bodies: removed 1" in capsys.readouterr().out
    assert body_of(engine, old) == b""
    assert count(engine, OutboxItem) == 1


@pytest.mark.parametrize("days", ["1", "7.5"])
def test_delivery_ids_must_outlive_redeliveries(days: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"THREADLINE_RETENTION_DELIVERY_DAYS": days})
    assert "at least 8" in str(refused.value)
    assert load_settings({"THREADLINE_RETENTION_DELIVERY_DAYS": "0"}).retention_delivery_days == 0


def test_a_new_sqlite_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA auto_vacuum")).scalar_one() == 2  # incremental
        closed = add_session(engine, "d1", 1, 100, "user_signal", created=101)
        store = SessionStore(engine)
        for _ in range(400):
            store.record(closed, "agent_message", {"text": "z" * 4000})
        for pk in range(30):
            add_delivery(engine, f"old-{pk}", 40)

        def size() -> int:
            with engine.connect() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).fetchall()
            return path.stat().st_size

        before = size()
        report = Retention(engine, Policy(), clock=lambda: NOW).run()
        assert report.transcript_events > 400
        assert report.freed_pages > 300  # 4 KB pages: the 1.6 MB of events and more
        after = size()
        assert after < before - 1_000_000, (before, after)
    finally:
        engine.dispose()


@contextlib.contextmanager
def private_postgres_database() -> Iterator[Engine]:
    """A database of its own on the test server, migrated, dropped afterwards. VACUUM
    removes a deleted row only once no transaction in the same database may still see
    it: on the shared test database, other tests' open transactions would hold it back."""
    problem = postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"tl_retention_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine = make_engine(make_url(POSTGRES_URL).set(database=name).render_as_string(False))
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_postgresql_gets_the_space_back() -> None:
    """PostgreSQL: what retention deletes, VACUUM (autovacuum's work, run here at once)
    gives back; the emptied pages at a table's end go back to the file system."""
    with private_postgres_database() as engine:
        live = add_session(engine, "live", 7, 0, None, created=1)
        closed = add_session(engine, "d1", 1, 100, "user_signal", created=101)
        store = SessionStore(engine)
        for _ in range(600):
            # Text that does not compress, so it takes its room (in the table or its TOAST).
            store.record(closed, "agent_message", {"text": os.urandom(1500).hex()})
        auto = engine.execution_options(isolation_level="AUTOCOMMIT")

        def size() -> int:
            with auto.connect() as conn:
                conn.execute(text("VACUUM transcript_events"))
                found: int = conn.execute(
                    text("SELECT pg_total_relation_size('transcript_events')")
                ).scalar_one()
                return found

        before = size()
        report = Retention(engine, Policy(), clock=lambda: NOW).run()
        assert report.transcript_events >= 600
        after = size()
        assert after < before - 1_000_000, (before, after)
        assert transcript(engine, closed) == 0
        assert transcript(engine, live) > 0, "a live session's transcript stays"
