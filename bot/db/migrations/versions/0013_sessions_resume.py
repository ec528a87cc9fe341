"""A session may resume an earlier one of its thread (ended by the clock): `resumed_from`.

Revision 0013, after 0012. NULL for every session stored before, and for a session
that starts a new line of work.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("resumed_from", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("resumed_from")
