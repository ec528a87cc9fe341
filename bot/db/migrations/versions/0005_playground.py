"""The playground host's tables: a repository, its pull request and what people write on it.

Revision 0005, after 0004.

The `local` host keeps its threads here instead of on GitHub or GitLab: users and their
permission, repositories and their files at each commit, pull requests with their
unified diff, review threads on diff lines, comments (conversation and review thread
replies; edited and deleted ones are kept and marked), reactions, reviews, the commit
statuses the bot sets, and a small key/value table for the generated webhook secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playground_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "playground_users",
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("permission", sa.String(16), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("login"),
    )
    op.create_table(
        "playground_repos",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_branch", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "playground_files",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("path", sa.String(400), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "sha", "path"),
    )
    op.create_table(
        "playground_pulls",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("base_ref", sa.String(255), nullable=False),
        sa.Column("head_ref", sa.String(255), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo", "number", name="uq_playground_pulls_number"),
    )
    op.create_table(
        "playground_review_threads",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(400), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_playground_review_threads_pull", "playground_review_threads", ["repo", "number"]
    )
    op.create_table(
        "playground_comments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("thread_id", BigId, nullable=True),
        sa.Column("in_reply_to", sa.BigInteger(), nullable=True),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("edited_at", UtcDateTime(), nullable=True),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["playground_review_threads.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_playground_comments_pull", "playground_comments", ["repo", "number", "id"])
    op.create_index("ix_playground_comments_thread", "playground_comments", ["thread_id", "id"])
    op.create_table(
        "playground_reactions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("comment_id", BigId, nullable=False),
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("content", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["playground_comments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("comment_id", "login", "content", name="uq_playground_reactions"),
    )
    op.create_table(
        "playground_reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_playground_reviews_pull", "playground_reviews", ["repo", "number"])
    op.create_table(
        "playground_commit_states",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "sha", "name"),
    )


def downgrade() -> None:
    op.drop_table("playground_commit_states")
    op.drop_index("ix_playground_reviews_pull", table_name="playground_reviews")
    op.drop_table("playground_reviews")
    op.drop_table("playground_reactions")
    op.drop_index("ix_playground_comments_thread", table_name="playground_comments")
    op.drop_index("ix_playground_comments_pull", table_name="playground_comments")
    op.drop_table("playground_comments")
    op.drop_index("ix_playground_review_threads_pull", table_name="playground_review_threads")
    op.drop_table("playground_review_threads")
    op.drop_table("playground_pulls")
    op.drop_table("playground_files")
    op.drop_table("playground_repos")
    op.drop_table("playground_users")
    op.drop_table("playground_meta")
