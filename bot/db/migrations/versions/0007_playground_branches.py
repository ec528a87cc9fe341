"""The playground's commits (parent and message) and branches, so the `local` host can
commit a change set on a new branch and open a pull request from it.

Revision 0007, after 0006. Existing playgrounds get their branches and commits from
`PlaygroundStore.prepare` at the next start (it inserts whatever is missing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playground_commits",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("parent_sha", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "sha"),
    )
    op.create_table(
        "playground_branches",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("repo", "name"),
    )


def downgrade() -> None:
    op.drop_table("playground_branches")
    op.drop_table("playground_commits")
