"""API tokens (kept hashed) and the audit trail of API actions.

Revision 0012, after 0011. `api_tokens` holds the tokens `threadline tokens create`
made: a name, a scope (operator or viewer), an optional list of repositories, the
SHA-256 of the token (never the token) and when it was made and revoked. `api_audit`
records each action taken through /api/v1 with the token's name.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("repos", sa.JSON(), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "api_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("token", sa.String(100), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(400), nullable=True),
    )
    op.create_index("ix_api_audit_at", "api_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_api_audit_at", table_name="api_audit")
    op.drop_table("api_audit")
    op.drop_table("api_tokens")
