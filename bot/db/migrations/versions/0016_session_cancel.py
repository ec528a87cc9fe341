"""A request to stop a session's turn in flight: `cancel_requested_at` and `_by`.

Revision 0016, after 0013. Set by the API's cancel or `/stop` while the session is
busy; the process running the turn sees it, stops the turn and clears it when the turn
is settled. NULL for every session stored before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UtcDateTime

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("cancel_requested_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("cancel_requested_by")
        batch.drop_column("cancel_requested_at")
