"""Deliveries (the durable inbox) and normalized comment events.

Revision 0001, the first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "delivery_id", name="uq_deliveries_host_delivery_id"),
    )
    op.create_index("ix_deliveries_claimable", "deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "comment_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_pk", BigId, nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("thread_key", sa.String(400), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("comment_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_pk"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_pk", name="uq_comment_events_delivery"),
    )
    op.create_index("ix_comment_events_thread", "comment_events", ["thread_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_comment_events_thread", table_name="comment_events")
    op.drop_table("comment_events")
    op.drop_index("ix_deliveries_claimable", table_name="deliveries")
    op.drop_table("deliveries")
