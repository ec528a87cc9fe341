"""A status comment's record can say "a post is under way, id unknown".

Revision 0009, after 0008. `posted_comments.comment_id` may be NULL: the sender writes
that row before it POSTs an edited-in-place comment and fills in the id once the host
has named it, so a version that comes later (or a sender that takes over after a kill)
looks for the comment by its marker instead of posting a second one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posted_comments") as batch:
        batch.alter_column("comment_id", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM posted_comments WHERE comment_id IS NULL")
    with op.batch_alter_table("posted_comments") as batch:
        batch.alter_column("comment_id", existing_type=sa.String(64), nullable=False)
