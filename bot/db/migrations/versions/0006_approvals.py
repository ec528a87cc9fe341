"""Approvals: change sets an agent proposes, the gates a session waits on, and the
`awaiting_approval` state counted as live (one live session per thread still holds).

Revision 0006, after 0005.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_LIVE = "state IN ('active', 'busy', 'idle')"
LIVE = "state IN ('active', 'busy', 'idle', 'awaiting_approval')"


def _live_index(where: str) -> None:
    op.drop_index("uq_sessions_live_thread", table_name="sessions")
    op.create_index(
        "uq_sessions_live_thread",
        "sessions",
        ["thread_key"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:  # "awaiting_approval" is 17 characters
        batch.alter_column("state", type_=sa.String(24), existing_nullable=False)
    _live_index(LIVE)
    op.create_table(
        "change_sets",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(16), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("base_branch", sa.String(255), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("pull_number", sa.Integer(), nullable=True),
        sa.Column("pull_url", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_change_sets_session", "change_sets", ["session_id", "id"])
    op.create_table(
        "approval_gates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(16), nullable=False),
        sa.Column("change_set_id", BigId, nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("pinned_sha", sa.String(64), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_sha", sa.String(64), nullable=True),
        sa.Column("decision_text", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approval_gates_session", "approval_gates", ["session_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_approval_gates_session", table_name="approval_gates")
    op.drop_table("approval_gates")
    op.drop_index("ix_change_sets_session", table_name="change_sets")
    op.drop_table("change_sets")
    _live_index(OLD_LIVE)
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("state", type_=sa.String(16), existing_nullable=False)
