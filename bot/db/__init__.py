"""Database engine and schema management (SQLite file by default, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from bot.db.writers import serialize_writers


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None for PostgreSQL and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def describe_error(url: str, exc: BaseException) -> str:
    """A database error for people: SQLite's "unable to open database file" never says
    which file, so name it (and what usually causes it)."""
    text = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"
    path = sqlite_path(url)
    if path is not None and "unable to open database file" in str(exc):
        where = path.resolve().parent
        text += f" ({path}: the folder {where} must exist and be writable)"
    return text


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create the process's one engine for `url`, tuned for its backend.

    SQLite runs in WAL mode so readers never block the writer, new files with
    auto_vacuum=incremental so deleted rows can give their space back, and
    synchronous=FULL so a committed delivery survives power loss, not only a crash.
    """
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=10,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        serialize_writers(engine)  # threads queue for the write lock, not sleep for it
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Freed pages can go back to the file system (retention's incremental_vacuum).
        # It takes effect only in a file that has no tables yet: existing files need one
        # VACUUM after it (README, "Retention").
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def insert_ignoring_conflicts(engine: Engine) -> Callable[..., Any]:
    """The dialect's `insert` construct, which has `on_conflict_do_nothing` on both backends."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def execute_alone(
    engine: Engine, statement: Executable, params: dict[str, Any] | None = None
) -> int:
    """Run one writing statement as its own transaction (autocommit); returns how many
    rows it changed. (Leave RETURNING out: its rows are not read.)

    On SQLite the whole write, commit included, then happens inside one call into
    SQLite, with the GIL let go. In an explicit transaction the write lock is held
    from the statement to the COMMIT, across the thread's return to Python between
    the two; a thread that has to wait for the GIL there keeps every other writer
    (ingress's among them) waiting with it.
    """
    # preserve_rowcount: on PostgreSQL an INSERT gets an implicit RETURNING for its new
    # key, and without the option its row count would be lost (-1) with those rows.
    options = {"isolation_level": "AUTOCOMMIT", "preserve_rowcount": True}
    with engine.connect().execution_options(**options) as conn:
        return int(conn.execute(statement, params).rowcount)


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
