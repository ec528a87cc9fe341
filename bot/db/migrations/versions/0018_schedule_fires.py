"""Scheduled agent turns: one row per fired occurrence of a schedule.

Revision 0018, after 0017. The unique (schedule, due_at) pair is what makes a cron
occurrence fire once across every process: whoever inserts the row fires it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_fires",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("schedule", sa.String(100), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("fired_at", UtcDateTime(), nullable=False),
        sa.Column("runner", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("schedule", "due_at", name="uq_schedule_fires_occurrence"),
    )
    op.create_index("ix_schedule_fires_schedule", "schedule_fires", ["schedule", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_schedule_fires_schedule", table_name="schedule_fires")
    op.drop_table("schedule_fires")
