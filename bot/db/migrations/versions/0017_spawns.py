"""Spawned sub-agents (`spawn_agent`): one row per spawn, with its child and result.

Revision 0017, after 0015. A non-blocking spawn's result is queued as its parent's
input in the transaction that settles its row, so no crash loses it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spawns",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "parent_id",
            sa.String(16),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("nonblocking", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("active_tools", sa.JSON(), nullable=True),
        sa.Column("tool_choice", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("parent_id", "number", name="uq_spawns_parent_number"),
    )
    op.create_index("ix_spawns_state", "spawns", ["state", "nonblocking"])
    op.create_index("ix_spawns_child", "spawns", ["child_id"])


def downgrade() -> None:
    op.drop_index("ix_spawns_child", table_name="spawns")
    op.drop_index("ix_spawns_state", table_name="spawns")
    op.drop_table("spawns")
