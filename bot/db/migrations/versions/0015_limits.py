"""Spending limits per day and paused repositories.

Revision 0015, after 0013. `daily_usage` adds up each repository's model calls per UTC
day (tokens in and out, cost in micro-dollars), counted with each call; the
installation's day is the sum of its rows. `repo_pauses` holds the repositories an
operator paused (`threadline repos pause`); host `*` pauses the name on every host.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UtcDateTime

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_usage",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("host", sa.String(16), primary_key=True),
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "repo_pauses",
        sa.Column("host", sa.String(16), primary_key=True),
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("paused_by", sa.String(255), nullable=False),
        sa.Column("paused_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("repo_pauses")
    op.drop_table("daily_usage")
