"""Database engine and schema management (SQLite file by default, PostgreSQL in production)."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Executable, bindparam, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from bot.db import lean
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
        _keep_prepared_statements(engine)
        # threads queue for the write lock, not sleep for it
        lean.register_turns(engine, serialize_writers(engine))
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=10)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _check_alive)
    return engine


# A PostgreSQL connection idle in the pool longer than this is pinged (a round trip)
# before it is handed out; a fresher one only if its socket says something happened.
_PING_AFTER_IDLE_SECONDS = 30.0


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_alive(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Hand out only a live PostgreSQL connection, without a round trip for most.

    pool_pre_ping sent `SELECT 1` at every checkout: on a worker, three or four per
    delivery, each costing about as much CPU as the statements it guarded (bench/README.md,
    session 10). An idle connection (no query outstanding, transaction ended at checkin)
    has nothing to read: when the server ends it (a restart, pg_terminate_backend) it
    sends an error and closes, so its socket turns readable. Readable, or idle long
    enough that a silent network drop is possible, it gets the real ping; one that fails
    is thrown away and the pool hands out a new one (DisconnectionError), as
    pool_pre_ping did.
    """
    idle_since = record.info.get("checked_in_at")
    if idle_since is None:
        return  # just connected
    fresh = time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS
    if fresh and not _has_input(dbapi_connection):
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as err:  # whatever the driver raises for a dead connection
        raise exc.DisconnectionError(str(err)) from err


def _keep_prepared_statements(engine: Engine) -> None:
    """Leave autocommit (`execute_alone`, `Lean.alone`) without expiring the connection's
    prepared statements.

    SQLAlchemy puts a pysqlite connection back to its default level with `PRAGMA
    read_uncommitted = 0`, and setting any flag pragma makes SQLite expire every
    statement prepared on that connection: the next run of each is parsed and planned
    again. With a write or two of that kind a trigger, about a third of the SQLite
    time of a session trigger went into preparing statements again (bench/README.md,
    session 14). The flag means something only with a shared cache, which Threadline
    never opens, and it is never set to 1 here; so going back to the default level is
    only the driver's own setting: it begins its transactions again.
    """
    dialect = engine.dialect
    change_level = dialect.set_isolation_level

    def set_isolation_level(dbapi_connection: Any, level: Any) -> None:
        if level == "SERIALIZABLE":  # the default: the only level reset to
            dbapi_connection.isolation_level = ""  # pysqlite's own: BEGIN before DML
            return
        change_level(dbapi_connection, level)

    dialect.set_isolation_level = set_isolation_level  # type: ignore[method-assign]


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
    return dialect_insert(engine.dialect.name)


def dialect_insert(dialect: str) -> Callable[..., Any]:
    """`insert_ignoring_conflicts` by dialect name (for statements built once per dialect)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def bound_values(names: tuple[str, ...]) -> dict[str, Any]:
    """SET values for a statement built once per set of columns: each column `name` takes
    the parameter `v_<name>` (so it cannot clash with a WHERE's parameters); pass them
    with `bound_params`."""
    return {name: bindparam(f"v_{name}") for name in names}


def bound_params(values: dict[str, Any]) -> dict[str, Any]:
    """The parameters `bound_values` names, for these column values."""
    return {f"v_{name}": value for name, value in values.items()}


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


def _has_input(dbapi_connection: Any) -> bool:
    """Whether the connection's socket has something to read (or is closed), without
    waiting. poll, not select: select fails on descriptors past 1023. Where poll is
    missing (Windows), say yes, so the caller pings."""
    if not hasattr(select, "poll"):
        return True
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # a closed connection has no socket
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def reading(engine: Engine) -> Connection:
    """A connection for one read that needs no transaction around it (a single SELECT
    sees one snapshot on its own): in autocommit, so on PostgreSQL the read is one
    round trip where a transaction made three (BEGIN, the SELECT, and the pool's
    ROLLBACK at checkin). Use it as a context manager. On SQLite a plain connection:
    the driver starts no transaction for a SELECT, so autocommit would save nothing."""
    if engine.dialect.name == "sqlite":
        return engine.connect()
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
