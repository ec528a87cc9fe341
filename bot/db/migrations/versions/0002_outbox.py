"""The outbox (host writes stored before they are sent), time slots and installations.

Revision 0002, after 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("thread_key", sa.String(400), nullable=False),
        sa.Column("thread", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("coalesce_key", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("maybe_sent", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_sendable", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_thread", "outbox", ["thread_key", "id"])
    op.create_index("ix_outbox_coalesce", "outbox", ["coalesce_key", "status"])
    op.create_table(
        "posted_comments",
        sa.Column("coalesce_key", sa.String(200), nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("thread_key", sa.String(400), nullable=False),
        sa.Column("comment_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("coalesce_key"),
    )
    op.create_table(
        "time_slots",
        sa.Column("slot_key", sa.String(64), nullable=False),
        sa.Column("next_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("slot_key"),
    )
    op.create_table(
        "installations",
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("repositories", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("host", "installation_id"),
    )


def downgrade() -> None:
    op.drop_table("installations")
    op.drop_table("time_slots")
    op.drop_table("posted_comments")
    op.drop_index("ix_outbox_coalesce", table_name="outbox")
    op.drop_index("ix_outbox_thread", table_name="outbox")
    op.drop_index("ix_outbox_sendable", table_name="outbox")
    op.drop_table("outbox")
