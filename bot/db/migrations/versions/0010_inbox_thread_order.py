"""Deliveries learn their thread and the event's own time, so one thread's deliveries
are handled in order across workers.

Revision 0010, after 0009. The worker fills `thread_key` and `event_time` once it has
normalized a delivery (ingress stays verify-store-answer); `started_at` is when its
handling last started and `out_of_order` says it started after a later delivery of
its thread had. Rows stored before this revision keep NULLs: finished ones never
need them, waiting ones are filled in by the next worker that looks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("thread_key", sa.String(400), nullable=True))
        batch.add_column(sa.Column("event_time", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("started_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("out_of_order", sa.Boolean(), nullable=True))
    op.create_index(
        "ix_deliveries_thread_order",
        "deliveries",
        ["thread_key", "status", "event_time", "received_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_thread_order", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("out_of_order")
        batch.drop_column("started_at")
        batch.drop_column("event_time")
        batch.drop_column("thread_key")
