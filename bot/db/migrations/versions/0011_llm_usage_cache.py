"""A session counts its prompt-cache reads and writes, and what its model calls cost.

Revision 0011, after 0010. `sessions.cache_read_tokens` and `cache_write_tokens` are the
parts of `tokens_in` read from or written to a provider's prompt cache; `cost_micros`
is the price-table cost of every call so far, in micro-dollars (an integer, so a cost
budget never rounds differently twice).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = ("cache_read_tokens", "cache_write_tokens", "cost_micros")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
