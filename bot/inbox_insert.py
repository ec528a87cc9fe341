"""How ingress's writer stores a batch of deliveries: one statement per batch, on SQLite
without RETURNING (ids from lastrowid, redeliveries looked up), and what a store answers."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class StoreResult:
    pk: int
    duplicate: bool
    status: str


def _driver_time(value: datetime, sqlite_: bool) -> Any:
    """A time as the driver takes it, stored the way the column's type would store it."""
    utc = value.astimezone(UTC)
    if sqlite_:
        return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return utc


# What store_many writes; the lease columns and last_error start out NULL.
_STORED_COLUMNS = (
    "host",
    "delivery_id",
    "event",
    "action",
    "headers",
    "body",
    "received_at",
    "status",
    "attempts",
    "next_attempt_at",
    "finished_at",
    "note",
)


@functools.lru_cache(maxsize=512)
def _insert_sql(rows: int, sqlite_: bool, returning: bool) -> str:
    """INSERT ... VALUES (...), (...) for `rows` rows in the driver's style, skipping rows
    already stored; with `returning`, the answer names the rows it did insert."""
    mark = "?" if sqlite_ else "%s"
    group = "(" + ", ".join([mark] * len(_STORED_COLUMNS)) + ")"
    # Only our own column names and placeholders go into the text; values are bound.
    return (
        f"INSERT INTO deliveries ({', '.join(_STORED_COLUMNS)}) VALUES "  # noqa: S608
        + ", ".join([group] * rows)
        + " ON CONFLICT (host, delivery_id) DO NOTHING"
        + (" RETURNING id, host, delivery_id" if returning else "")
    )


_Key = tuple[str, str]
_Inserted = tuple[dict[_Key, int], dict[_Key, StoreResult]]  # new ids; earlier copies


def _earlier_copies(cursor: Any, keys: Any, mark: str) -> dict[_Key, StoreResult]:
    """The stored copy of each of `keys`, as a duplicate's result."""
    earlier = {}
    for key in keys:
        cursor.execute(
            f"SELECT id, status FROM deliveries WHERE host = {mark} AND delivery_id = {mark}",  # noqa: S608 (fixed text)
            key,
        )
        found = cursor.fetchone()
        if found is None:  # cannot be: the INSERT just met it
            raise RuntimeError(f"delivery {key} neither inserted nor found")
        earlier[key] = StoreResult(found[0], True, found[1])
    return earlier


# How ingress's writer waits for SQLite's write lock (see Inbox.ingress_connection).
BUSY_STEP_SECONDS = 0.0002
BUSY_WAIT_SECONDS = 30.0  # as long as the engine's busy_timeout


def _execute_when_free(cursor: Any, sql: str, params: list[Any]) -> None:
    """Execute, trying again in short steps while another connection holds the write lock.

    On a connection with busy_timeout 0 SQLite answers SQLITE_BUSY at once, and a
    statement that got it changed nothing (in autocommit mode it is its own
    transaction), so it can simply be run again. On other connections SQLite's own
    busy handler has already waited, and a busy answer ends here too once the time
    is up.
    """
    deadline = None
    while True:
        try:
            cursor.execute(sql, params)
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            deadline = deadline or now + BUSY_WAIT_SECONDS
            if now >= deadline:
                raise
        time.sleep(BUSY_STEP_SECONDS)


def _insert_sqlite(raw: Any, keys: list[_Key], params: list[Any]) -> _Inserted:
    """SQLite: the whole batch in one statement that is its own transaction.

    The sqlite3 module lets go of the GIL around each call into SQLite and has to take
    it back after; under load each take-back waits for the event loop's thread, so the
    number of calls, not their work, set how long a batch took (bench/README.md).
    With the connection in autocommit mode for the call, one step of one INSERT
    inserts every row and commits (synchronous=FULL: the WAL is on disk when it
    returns), and no RETURNING rows have to be stepped through.

    The ids follow without asking: a table without AUTOINCREMENT gives each new row
    the next rowid, in the order of VALUES, and no other writer can run inside the
    statement, so the `rowcount` new rows hold the ids ending at `lastrowid`. Only when
    some row was already stored (a redelivery) is each key looked up.
    """
    driver = getattr(raw, "dbapi_connection", raw)  # the sqlite3 connection itself
    previous = driver.isolation_level
    driver.isolation_level = None  # no implicit BEGIN: the statement commits itself
    try:
        cursor = driver.cursor()
        _execute_when_free(cursor, _insert_sql(len(keys), True, returning=False), params)
        new, last = cursor.rowcount, cursor.lastrowid
        if new == len(keys):
            first = last - new + 1
            return {key: first + offset for offset, key in enumerate(keys)}, {}
        # Every key is stored now; the `new` largest ids are this statement's (with no
        # new row, lastrowid is from an earlier statement and names none of them).
        stored = _earlier_copies(cursor, keys, "?")
        inserted = {key: r.pk for key, r in stored.items() if new and r.pk > last - new}
        return inserted, {key: r for key, r in stored.items() if key not in inserted}
    finally:
        driver.isolation_level = previous


def _insert_returning(raw: Any, keys: list[_Key], params: list[Any]) -> _Inserted:
    """PostgreSQL: INSERT ... RETURNING in a transaction, then the copies it skipped."""
    try:
        cursor = raw.cursor()
        cursor.execute(_insert_sql(len(keys), False, returning=True), params)
        inserted = {(r[1], r[2]): r[0] for r in cursor.fetchall()}
        earlier = _earlier_copies(cursor, [k for k in keys if k not in inserted], "%s")
        raw.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection cannot roll back
            raw.rollback()
        raise
    return inserted, earlier


def _json_text(value: dict[str, str]) -> str:
    """JSON text for a JSON column on SQLite; orjson, as this runs for every delivery."""
    return orjson.dumps(value).decode()
