"""Agent sessions, their input queue and their transcript.

Revision 0003, after 0002.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "state IN ('active', 'busy', 'idle')"


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("client_request_id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("thread_key", sa.String(400), nullable=False),
        sa.Column("thread", sa.JSON(), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("closed_by", sa.String(255), nullable=True),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("trigger_comment_id", sa.String(64), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("time_limit_at", UtcDateTime(), nullable=False),
        sa.Column("idle_deadline_at", UtcDateTime(), nullable=True),
        sa.Column("lifetime_at", UtcDateTime(), nullable=False),
        sa.Column("extended_minutes", sa.Float(), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("turn_owner", sa.String(128), nullable=True),
        sa.Column("turn_expires_at", UtcDateTime(), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("status_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_request_id", name="uq_sessions_client_request_id"),
    )
    op.create_index(
        "uq_sessions_live_thread",
        "sessions",
        ["thread_key"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_index("ix_sessions_state", "sessions", ["state"])
    op.create_index("ix_sessions_thread", "sessions", ["thread_key"])
    op.create_index("ix_sessions_time_limit", "sessions", ["state", "time_limit_at"])
    op.create_index("ix_sessions_lifetime", "sessions", ["state", "lifetime_at"])
    op.create_index("ix_sessions_idle_deadline", "sessions", ["state", "idle_deadline_at"])
    op.create_table(
        "session_inputs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("comment_id", sa.String(64), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("amended_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_inputs_queue", "session_inputs", ["session_id", "status", "id"])
    op.create_index("ix_session_inputs_comment", "session_inputs", ["comment_id"])
    op.create_index("ix_session_inputs_waiting", "session_inputs", ["status", "session_id"])
    op.create_table(
        "transcript_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transcript_session", "transcript_events", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_transcript_session", table_name="transcript_events")
    op.drop_table("transcript_events")
    op.drop_index("ix_session_inputs_waiting", table_name="session_inputs")
    op.drop_index("ix_session_inputs_comment", table_name="session_inputs")
    op.drop_index("ix_session_inputs_queue", table_name="session_inputs")
    op.drop_table("session_inputs")
    op.drop_index("ix_sessions_idle_deadline", table_name="sessions")
    op.drop_index("ix_sessions_lifetime", table_name="sessions")
    op.drop_index("ix_sessions_time_limit", table_name="sessions")
    op.drop_index("ix_sessions_thread", table_name="sessions")
    op.drop_index("ix_sessions_state", table_name="sessions")
    op.drop_index("uq_sessions_live_thread", table_name="sessions")
    op.drop_table("sessions")
