"""SQLite's in-process write turn (bot.db.writers): writers queue for it, and nobody
waits for it without end; a wait that cannot end fails with "database is locked"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from bot.db.writers import serialize_writers


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'turns.db'}", connect_args={"check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _wal(driver: object, _record: object) -> None:
        driver.execute("PRAGMA journal_mode=WAL")  # type: ignore[attr-defined]

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    yield engine
    engine.dispose()


def test_a_writer_waits_for_the_turn_and_gets_it_when_it_is_given_back(engine: Engine) -> None:
    serialize_writers(engine, wait_seconds=10)
    wrote = threading.Event()

    def other() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        wrote.set()

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        threading.Thread(target=other).start()
        assert not wrote.wait(0.3), "the other writer waits while this transaction is open"
    assert wrote.wait(10), "and writes as soon as it commits"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2


def test_a_writer_that_gets_no_turn_in_time_fails_as_sqlite_would(engine: Engine) -> None:
    serialize_writers(engine, wait_seconds=0.2)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:
            errors.append(exc)

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        late = threading.Thread(target=other)
        started = time.monotonic()
        late.start()
        late.join(10)
        waited = time.monotonic() - started
    assert not late.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], OperationalError)
    assert "database is locked: no write turn within 0.2 s" in str(errors[0])
    assert waited >= 0.2
    # The failed writer left nothing held: the next write goes through.
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t ORDER BY v")).scalars().all() == [1, 3]


def test_a_thread_that_holds_the_turn_cannot_wait_for_itself(engine: Engine) -> None:
    """Two write transactions open in one thread can never both go on: the second fails
    at once instead of waiting for the first, which is waiting for it."""
    serialize_writers(engine, wait_seconds=30)
    started = time.monotonic()
    with engine.begin() as first:
        first.execute(text("INSERT INTO t VALUES (1)"))
        held = "holds the write turn on another connection"
        with pytest.raises(OperationalError, match=held), engine.begin() as second:
            second.execute(text("INSERT INTO t VALUES (2)"))
    assert time.monotonic() - started < 20, "it did not wait out the 30 s"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t")).scalars().all() == [1]
