"""The playground store's core: engine, clock and the lookups its mixins share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.models import (
    PlaygroundBranch,
    PlaygroundFile,
    PlaygroundPull,
    PlaygroundReaction,
    PlaygroundRepo,
)
from bot.hosts.local_store.rows import PlaygroundError


class StoreCore:
    """Engine, clock and shared lookups."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = insert_ignoring_conflicts(engine)

    def _pull_row(self, session: Session, repo: str, number: int) -> PlaygroundPull | None:
        return session.scalars(
            select(PlaygroundPull).where(
                PlaygroundPull.repo == repo, PlaygroundPull.number == number
            )
        ).one_or_none()

    def _reactions(self, session: Session, ids: list[int]) -> dict[int, dict[str, list[str]]]:
        if not ids:
            return {}
        found: dict[int, dict[str, list[str]]] = {}
        rows = session.execute(
            select(
                PlaygroundReaction.comment_id, PlaygroundReaction.content, PlaygroundReaction.login
            )
            .where(PlaygroundReaction.comment_id.in_(ids))
            .order_by(PlaygroundReaction.id)
        )
        for comment_id, content, login in rows:
            found.setdefault(comment_id, {}).setdefault(content, []).append(login)
        return found

    def _default_branch_name(self, session: Session, repo: str) -> str:
        row = session.get(PlaygroundRepo, repo)
        if row is None:
            raise PlaygroundError(f"no repository {repo}", status=404)
        return row.default_branch

    def _branch_sha(self, session: Session, repo: str, name: str) -> str | None:
        """The commit a branch points at; also a pull request's branch from before
        branches were kept (they are seeded since)."""
        row = session.get(PlaygroundBranch, (repo, name))
        if row is not None:
            return row.sha
        pull = session.scalars(
            select(PlaygroundPull).where(
                PlaygroundPull.repo == repo,
                (PlaygroundPull.base_ref == name) | (PlaygroundPull.head_ref == name),
            )
        ).first()
        if pull is None:
            return None
        return pull.base_sha if pull.base_ref == name else pull.head_sha

    def _files(self, session: Session, repo: str, sha: str) -> dict[str, str]:
        rows = session.execute(
            select(PlaygroundFile.path, PlaygroundFile.content).where(
                PlaygroundFile.repo == repo, PlaygroundFile.sha == sha
            )
        )
        return {path: content for path, content in rows}
