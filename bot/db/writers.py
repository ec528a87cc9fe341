"""One SQLite write transaction at a time in this process, queued on a lock.

SQLite lets one connection write at a time. A connection that finds the write lock
taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, 50 and
then 100 ms between tries, whether or not the lock was let go meanwhile. With a
process's threads all writing to one file (turns, the outbox, the API, timers), those
sleeps set the tail of every latency (bench/README.md, `api.py`): a write that had to
wait once or twice waited 100 ms or more for a lock held for under a millisecond.

Threads of one process take turns on a lock instead: a connection takes it before
its first writing statement and gives it back when its transaction ends (commit,
rollback, a statement that committed itself, or the connection leaving the pool), so
the next writer starts as soon as the lock is free. Other processes (worker
processes, the CLI) still meet SQLite's own locking and busy handler, as before.
Reads never take the lock: WAL readers do not wait for writers.

A turn is never waited for without end: a writer that gets none within the wait that
SQLite's busy handler would give (`bot.db.make_engine`), or a thread asking for a turn
while another of its own connections holds it (it would wait for itself), gets SQLite's
"database is locked" error, which SQLAlchemy raises as `OperationalError`, as it would
have without the lock.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, event

# Statements that only read; anything else (DML, DDL, SAVEPOINT, WITH ...) takes the lock.
READS = ("SELECT", "PRAGMA")


def writes(statement: str) -> bool:
    """Whether `statement` needs the write turn (it is not one of the READS)."""
    return not statement.lstrip()[:6].upper().startswith(READS)


class WriteTurns:
    """Who in this process holds SQLite's write turn, by driver connection."""

    def __init__(self, wait_seconds: float = 30.0) -> None:
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._holder: Any = None
        self._thread: int | None = None  # the thread that took the turn, while held

    def take(self, driver: Any) -> None:
        if self._holder is driver:  # its transaction holds the turn already
            return
        me = threading.get_ident()
        # Only this thread sets `_thread` to itself, and `give` clears it before letting
        # go, so this reads true only while this thread holds the turn.
        if self._thread == me:
            raise sqlite3.OperationalError(
                "database is locked: this thread holds the write turn on another connection"
            )
        if not self._lock.acquire(timeout=self.wait_seconds):
            raise sqlite3.OperationalError(
                f"database is locked: no write turn within {self.wait_seconds:g} s"
            )
        self._holder = driver
        self._thread = me

    def give(self, driver: Any) -> None:
        """Let the turn go if `driver` holds it (any other connection: nothing)."""
        if self._holder is driver:
            self._thread = None
            self._holder = None
            self._lock.release()

    def after_statement(self, driver: Any) -> None:
        """A statement ran (or failed): with no transaction left open it was its own
        (autocommit) or its failure ended it, so the turn goes."""
        if not driver.in_transaction:
            self.give(driver)


def serialize_writers(engine: Engine, wait_seconds: float = 30.0) -> WriteTurns:
    """Queue the write transactions of `engine` (SQLite) on one in-process lock;
    `wait_seconds`: how long a writer waits for its turn before it fails."""
    turns = WriteTurns(wait_seconds)
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if writes(statement):
            turns.take(cursor.connection)

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, *args: Any) -> None:
        turns.after_statement(cursor.connection)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        cursor = getattr(context, "cursor", None)  # none when connecting failed
        if cursor is not None:
            turns.after_statement(cursor.connection)

    # The dialect's commit and rollback get the pool's proxy of the driver connection.
    def do_commit(proxy: Any) -> None:
        try:
            commit(proxy)
        finally:
            turns.give(getattr(proxy, "dbapi_connection", proxy))

    def do_rollback(proxy: Any) -> None:
        try:
            rollback(proxy)
        finally:
            turns.give(getattr(proxy, "dbapi_connection", proxy))

    dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]

    @event.listens_for(engine, "checkin")
    def _returned(driver: Any, record: Any) -> None:
        turns.give(driver)  # a connection back in the pool holds nothing

    @event.listens_for(engine, "close")
    def _closed(driver: Any, record: Any) -> None:
        turns.give(driver)

    return turns
