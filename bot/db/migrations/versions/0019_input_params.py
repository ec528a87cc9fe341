"""A queued input's own runtimeParams: `session_inputs.params`.

Revision 0019, after 0018. An operator's prompt through the API (or MCP) may carry
runtimeParams for the one turn that reads it; they travel with the input row, so the
process that claims the turn (any of them) lays them over the session's own. NULL for
every input stored before, and for inputs that carry none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session_inputs") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("session_inputs") as batch:
        batch.drop_column("params")
