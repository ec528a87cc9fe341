"""API tokens and the audit trail: the SQL behind `threadline tokens` and `audit`.

A token is `tl_` and 32 random bytes (URL-safe base64); only its SHA-256 is stored, so
the token is shown once, when it is made. A token has a name (how the audit trail and
transcripts call it), a scope (operator or viewer) and optionally the repositories it
may touch (None: all). Revoking keeps the row, so the name stays in the audit trail
and cannot be reused for a different token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import execute_alone
from bot.db.models import ApiAudit, ApiToken

SCOPES = ("operator", "viewer")
PREFIX = "tl_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$")
REPO = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
_INSERT_AUDIT = insert(cast(Table, ApiAudit.__table__))


class TokenError(ValueError):
    """A token that cannot be made or revoked as asked."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: str
    repos: tuple[str, ...] | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class AuditLine:
    id: int
    at: datetime
    token: str
    action: str
    target: str | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: ApiToken) -> TokenInfo:
    repos = tuple(row.repos) if row.repos is not None else None
    return TokenInfo(row.name, row.scope, repos, row.created_at, row.revoked_at)


class TokenStore:
    """Tokens and the audit trail in the shared database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def create(self, name: str, scope: str, repos: Sequence[str] = ()) -> tuple[str, TokenInfo]:
        """A new token (returned once, never stored) and what was stored of it."""
        if not NAME.match(name):
            raise TokenError(f"bad token name {name!r}: letters, digits and _.@- only, at most 40")
        if scope not in SCOPES:
            raise TokenError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        for repo in repos:
            if not REPO.match(repo):
                raise TokenError(f"bad repository {repo!r}: expected OWNER/REPO")
        token = PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(
            name=name,
            scope=scope,
            repos=sorted(set(repos)) if repos else None,
            token_hash=token_hash(token),
            created_at=self.clock(),
            revoked_at=None,
        )
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                info = _info(row)
        except IntegrityError:
            raise TokenError(f"a token named {name!r} exists already") from None
        return token, info

    def all(self) -> list[TokenInfo]:
        with Session(self.engine) as session:
            rows = session.execute(select(ApiToken).order_by(ApiToken.created_at)).scalars()
            return [_info(row) for row in rows]

    def revoke(self, name: str) -> TokenInfo:
        with Session(self.engine) as session, session.begin():
            row = session.get(ApiToken, name)
            if row is None:
                raise TokenError(f"no token named {name!r}")
            if row.revoked_at is None:
                row.revoked_at = self.clock()
            return _info(row)

    def lookup(self, token: str) -> TokenInfo | None:
        """The live token `token` is, or None (unknown or revoked). The lookup is by the
        token's hash, so timing reveals nothing about stored tokens."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        with Session(self.engine) as session:
            row = session.execute(
                select(ApiToken).where(ApiToken.token_hash == token_hash(token))
            ).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                return None
            return _info(row)

    # ------------------------------------------------------------------ audit

    def audit(self, token: str, action: str, target: str | None) -> None:
        line = {
            "at": self.clock(),
            "token": token,
            "action": action,
            "target": target[:400] if target else None,
        }
        execute_alone(self.engine, _INSERT_AUDIT, line)  # one statement, no ORM entity

    def audit_lines(self, *, limit: int = 100, token: str | None = None) -> list[AuditLine]:
        """The newest `limit` audit lines, newest first (of one token if given)."""
        query = select(ApiAudit).order_by(ApiAudit.id.desc()).limit(limit)
        if token is not None:
            query = query.where(ApiAudit.token == token)
        with Session(self.engine) as session:
            return [
                AuditLine(row.id, row.at, row.token, row.action, row.target)
                for row in session.execute(query).scalars()
            ]
