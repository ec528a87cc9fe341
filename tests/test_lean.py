"""Lean statements (bot.db.lean) store and read back exactly what Connection.execute does,
raise SQLAlchemy's errors, keep SQLite's write turn, and refuse what they cannot run."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.db import make_engine
from bot.db.lean import Lean, LeanRun, run_all
from bot.db.models import Base, OutboxItem
from bot.db.types import UtcDateTime, sqlite_text

OUTBOX = cast(Table, OutboxItem.__table__)
COLUMNS = ("key", "host", "installation_id", "repo", "thread_key", "thread", "kind", "payload")
COLUMNS += ("coalesce_key", "version", "urgent", "status", "attempts", "maybe_sent")
COLUMNS += ("next_attempt_at", "created_at")
INSERT = Lean(insert(OUTBOX).values({c: bindparam(c) for c in COLUMNS}).returning(OUTBOX.c.id))
TAKE = Lean(
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("pk"), OUTBOX.c.status.in_(("pending", "failed")))
    .values(status="sending", lease_expires_at=bindparam("expires"))
    .returning(*OUTBOX.c)
)
BY_KEY = Lean(select(OUTBOX).where(OUTBOX.c.key == bindparam("key")))
INSERT_PLAIN = Lean(insert(OUTBOX).values({c: bindparam(c) for c in COLUMNS}))
SET_SENDING = Lean(
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("pk"))
    .values(status="sending", lease_expires_at=bindparam("expires"))
)


def values(key: str, at: datetime) -> dict[str, Any]:
    thread = {"host": "github", "repo": "o/r", "target": "issue", "number": 7, "thread_id": None}
    return {
        "key": key,
        "host": "github",
        "installation_id": 42,
        "repo": "o/r",
        "thread_key": "github:o/r/issues/7",
        "thread": thread,
        "kind": "comment",
        "payload": {"body": "héllo ✓", "nested": [1, {"a": None}]},
        "coalesce_key": None,
        "version": None,
        "urgent": True,
        "status": "pending",
        "attempts": 0,
        "maybe_sent": False,
        "next_attempt_at": at,
        "created_at": at,
    }


def test_rows_read_back_as_core_reads_them(engine: Engine) -> None:
    at = datetime(2026, 12, 5, 3, 4, 5, 678901, tzinfo=UTC)
    with engine.begin() as conn:
        pk = INSERT.scalar(conn, values("w1", at))
        assert isinstance(pk, int)
        lean = BY_KEY.first(conn, {"key": "w1"})
        core = conn.execute(BY_KEY.statement, {"key": "w1"}).one()
    assert tuple(lean) == tuple(core)
    assert lean.payload == {"body": "héllo ✓", "nested": [1, {"a": None}]}
    assert lean.next_attempt_at == at
    assert lean.next_attempt_at.tzinfo is not None
    assert lean.urgent is True
    assert lean.maybe_sent is False

    expires = at + timedelta(minutes=5)
    with engine.begin() as conn:
        taken = TAKE.first(conn, {"pk": pk, "expires": expires})
        again = TAKE.first(conn, {"pk": pk, "expires": expires})  # no longer pending
    assert taken.status == "sending"
    assert taken.lease_expires_at == expires
    assert again is None
    with engine.connect() as conn:
        assert BY_KEY.rows(conn, {"key": "nothing"}) == []


def test_a_failed_statement_raises_sqlalchemy_s_error_and_rolls_back(engine: Engine) -> None:
    at = datetime.now(UTC)
    INSERT.alone(engine, values("dup", at))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        INSERT.scalar(conn, values("dup", at))
    with engine.connect() as conn:
        assert len(BY_KEY.rows(conn, {"key": "dup"})) == 1
    # The connection went back to the pool usable, and SQLite's write turn was given back:
    # another thread writes at once.
    done = threading.Event()

    def write() -> None:
        INSERT.alone(engine, values("after", at))
        done.set()

    threading.Thread(target=write).start()
    assert done.wait(10)


def test_what_a_lean_statement_cannot_run_is_refused(engine: Engine) -> None:
    per_call_list = Lean(
        select(OUTBOX.c.id).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    )
    values_per_call = Lean(insert(OUTBOX))
    with engine.connect() as conn:
        with pytest.raises(ValueError, match="ids"):
            per_call_list.rows(conn, {"ids": [1, 2]})
        with pytest.raises(ValueError, match="values"):
            values_per_call.count(conn, {"key": "x"})


def test_runs_of_one_statement_sent_together_report_each_run(engine: Engine) -> None:
    """`counts` (one round trip on PostgreSQL) says how many rows each run changed, in
    order, as one `count` a run would; a failing run raises SQLAlchemy's error and the
    transaction's earlier runs roll back with it."""
    at = datetime.now(UTC)
    assert [INSERT_PLAIN.alone(engine, values(f"c{n}", at)) for n in range(3)] == [1, 1, 1]
    with engine.connect() as conn:
        ids = [BY_KEY.first(conn, {"key": f"c{n}"}).id for n in range(3)]
    expires = at + timedelta(minutes=5)
    runs = [{"pk": ids[0], "expires": expires}, {"pk": -1, "expires": expires}]
    runs += [{"pk": ids[2], "expires": expires}, {"pk": ids[0], "expires": expires}]
    with engine.begin() as conn:
        assert SET_SENDING.counts(conn, runs) == [1, 0, 1, 1]
        assert SET_SENDING.counts(conn, []) == []
    with engine.connect() as conn:
        statuses = [BY_KEY.first(conn, {"key": f"c{n}"}).status for n in range(3)]
    assert statuses == ["sending", "pending", "sending"]

    dup = [values("c3", at), values("c1", at)]  # the second is a key stored already
    with pytest.raises(IntegrityError), engine.begin() as conn:
        INSERT_PLAIN.counts(conn, dup)
    with engine.connect() as conn:
        assert BY_KEY.rows(conn, {"key": "c3"}) == [], "rolled back with the failed run"


def test_later_runs_are_done_in_their_order_the_same_statement_s_together(
    engine: Engine,
) -> None:
    at = datetime.now(UTC)
    seen: list[int] = []

    def touch(conn: Connection) -> None:
        # Runs between the two groups: sees the first two rows, not the third.
        seen.append(len(BY_KEY.rows(conn, {"key": "r1"}) + BY_KEY.rows(conn, {"key": "r2"})))
        seen.append(len(BY_KEY.rows(conn, {"key": "r3"})))

    writes = [
        LeanRun(INSERT_PLAIN, values("r1", at)),
        LeanRun(INSERT_PLAIN, values("r2", at)),
        touch,
        LeanRun(INSERT_PLAIN, values("r3", at)),
    ]
    with engine.begin() as conn:
        run_all(conn, writes)
    assert seen == [2, 0]
    with engine.connect() as conn:
        assert [len(BY_KEY.rows(conn, {"key": f"r{n}"})) for n in (1, 2, 3)] == [1, 1, 1]


def test_a_write_alone_leaves_sqlite_s_prepared_statements_in_place(tmp_path: Path) -> None:
    """Going back from autocommit ran `PRAGMA read_uncommitted = 0`, which makes SQLite
    throw away every statement prepared on the connection: each was parsed again on its
    next run. SQLite asks the authorizer about a statement only while it prepares it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'prepared.db'}")
    Base.metadata.create_all(engine)
    prepared: list[tuple[Any, ...]] = []
    with engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.set_authorizer(lambda *asked: prepared.append(asked) or sqlite3.SQLITE_OK)
        # Every statement below runs on this one connection.
        at = datetime.now(UTC)
        INSERT.first(conn, values("p1", at))
        conn.commit()
        BY_KEY.rows(conn, {"key": "p1"})
        prepared.clear()
        BY_KEY.rows(conn, {"key": "p1"})
        assert prepared == [], "a statement run again is not prepared again"
        conn.execution_options(isolation_level="AUTOCOMMIT")
        SET_SENDING.count(conn, {"pk": 1, "expires": at})
        conn.execution_options(isolation_level=engine.dialect.default_isolation_level)
        prepared.clear()
        assert len(BY_KEY.rows(conn, {"key": "p1"})) == 1
        assert prepared == [], "leaving autocommit expired the prepared statements"
        INSERT.first(conn, values("p2", at))
        assert driver.in_transaction, "a write begins a transaction again after it"
        driver.rollback()
        assert BY_KEY.rows(conn, {"key": "p2"}) == []


def test_timestamps_are_bound_as_sqlalchemy_binds_them_on_sqlite() -> None:
    """`sqlite_text` (Lean's one-step timestamp on SQLite) writes exactly what
    UtcDateTime and SQLAlchemy's DATETIME write, and refuses what they refuse."""
    dialect = sqlite.dialect()
    theirs = UtcDateTime()._cached_bind_processor(dialect)
    assert theirs is not None
    paris = timezone(timedelta(hours=1))
    moments = [
        datetime(2026, 12, 5, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 12, 5, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year of three digits
        datetime(2026, 3, 29, 1, 30, tzinfo=paris),  # another zone: its UTC time
        datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("UTC")),
    ]
    for moment in moments:
        assert sqlite_text(moment) == theirs(moment)
    for bad in (datetime(2026, 12, 5), "2026-12-05 03:04:05"):
        with pytest.raises(ValueError, match="timezone-aware"):
            sqlite_text(bad)
        with pytest.raises(ValueError, match="timezone-aware"):
            theirs(bad)
