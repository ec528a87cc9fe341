"""Agents: child sessions and what a session used, searchable transcripts, agent memory,
and the last valid repository configuration.

Revision 0004, after 0003.

- sessions: `parent_id` (a coordinator's delegation, or a chain step), `spec` (the agent
  as launched: engine, provider, model, runtimeParams, tools), token and delegation
  counters (for budgets and the delegation limit).
- transcript_events: `search_text`, the words of an event worth finding, indexed by
  SQLite FTS5 (an external-content table kept by triggers) or PostgreSQL full-text
  search (a stored `search_vector` tsvector column, generated from it, with a GIN index).
- agent_memory: notes an agent keeps per repository, across sessions.
- repo_configs: the last valid repository configuration file, per repository.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE transcript_fts USING fts5("
    "search_text, content='transcript_events', content_rowid='id')",
    "CREATE TRIGGER transcript_fts_insert AFTER INSERT ON transcript_events "
    "WHEN new.search_text IS NOT NULL BEGIN "
    "INSERT INTO transcript_fts(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER transcript_fts_delete AFTER DELETE ON transcript_events "
    "WHEN old.search_text IS NOT NULL BEGIN "
    "INSERT INTO transcript_fts(transcript_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER transcript_fts_update AFTER UPDATE OF search_text ON transcript_events "
    "BEGIN "
    "INSERT INTO transcript_fts(transcript_fts, rowid, search_text) "
    "SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL; "
    "INSERT INTO transcript_fts(rowid, search_text) "
    "SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL; END",
)
SQLITE_FTS_DROP = (
    "DROP TRIGGER IF EXISTS transcript_fts_update",
    "DROP TRIGGER IF EXISTS transcript_fts_delete",
    "DROP TRIGGER IF EXISTS transcript_fts_insert",
    "DROP TABLE IF EXISTS transcript_fts",
)
PG_SEARCH = (
    # Stored, so a search neither rebuilds vectors to recheck matches nor to rank them.
    "ALTER TABLE transcript_events ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', coalesce(search_text, ''))) STORED",
    "CREATE INDEX ix_transcript_search ON transcript_events USING GIN (search_vector)",
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("tokens_in", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("tokens_out", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("delegations", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_sessions_parent", "sessions", ["parent_id"])
    op.create_index("ix_sessions_created", "sessions", ["created_at"])
    with op.batch_alter_table("transcript_events") as batch:
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in PG_SEARCH:
            op.execute(statement)
    op.create_table(
        "agent_memory",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("session_id", sa.String(16), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "repo", "agent_id", "key", name="uq_agent_memory_key"),
    )
    op.create_table(
        "repo_configs",
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("loaded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("host", "repo"),
    )


def downgrade() -> None:
    op.drop_table("repo_configs")
    op.drop_table("agent_memory")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS_DROP:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_transcript_search")
        op.execute("ALTER TABLE transcript_events DROP COLUMN IF EXISTS search_vector")
    with op.batch_alter_table("transcript_events") as batch:
        batch.drop_column("search_text")
    op.drop_index("ix_sessions_created", table_name="sessions")
    op.drop_index("ix_sessions_parent", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("delegations")
        batch.drop_column("tokens_out")
        batch.drop_column("tokens_in")
        batch.drop_column("spec")
        batch.drop_column("parent_id")
