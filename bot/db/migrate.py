"""Alembic migrations driven from code: no alembic.ini to find, one URL to pass."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number works; it only has to be the same for every Threadline process.
_PG_LOCK_KEY = 0x7468726C  # "thrl"
# Made by migrations in the database's own dialect, with no model: the FTS5 table (and
# the shadow tables SQLite makes for it), PostgreSQL's stored tsvector and its index.
UNMODELED_PREFIXES = ("transcript_fts", "ix_transcript_search", "search_vector")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """For comparing models with the database: leave out what has no model on purpose."""
    return not (name or "").startswith(UNMODELED_PREFIXES)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`. Safe when several processes start at once:
    on PostgreSQL they queue on an advisory lock; SQLite serializes writers itself."""
    before = current_revision(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            try:
                command.upgrade(alembic_config(engine), revision)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
    else:
        command.upgrade(alembic_config(engine), revision)
    after = current_revision(engine)
    if after != before:
        log.info("database schema upgraded from %s to %s", before or "empty", after)


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine)
