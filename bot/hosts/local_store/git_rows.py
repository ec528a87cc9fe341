"""What the playground's git export reads: refs, commits and the webhook secret."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import PlaygroundBranch, PlaygroundCommit, PlaygroundMeta, PlaygroundPull
from bot.hosts.local_store.core import StoreCore
from bot.hosts.local_store.rows import SECRET_META_KEY


@dataclass(frozen=True)
class CommitRow:
    """One playground commit: its parent, message, author and every file's text."""

    sha: str
    parent: str | None
    message: str
    author: str
    files: dict[str, str]


class GitRows(StoreCore):
    """Reads for the git export (bot/hosts/local_git.py)."""

    def git_refs(self, repo: str) -> dict[str, str]:
        """Every branch (`refs/heads/NAME`) and pull request head (`refs/pull/N/head`)."""
        with Session(self.engine) as session:
            refs = {
                f"refs/heads/{name}": sha
                for name, sha in session.execute(
                    select(PlaygroundBranch.name, PlaygroundBranch.sha).where(
                        PlaygroundBranch.repo == repo
                    )
                )
            }
            for number, sha in session.execute(
                select(PlaygroundPull.number, PlaygroundPull.head_sha).where(
                    PlaygroundPull.repo == repo
                )
            ):
                refs[f"refs/pull/{number}/head"] = sha
            return refs

    def commit_row(self, repo: str, sha: str) -> CommitRow | None:
        with Session(self.engine) as session:
            row = session.get(PlaygroundCommit, (repo, sha))
            if row is None:
                return None
            files = self._files(session, repo, sha)
            return CommitRow(sha, row.parent_sha, row.message, row.author, files)

    def webhook_secret(self) -> str | None:
        """The secret settled by `prepare` (None before the first start)."""
        with Session(self.engine) as session:
            row = session.get(PlaygroundMeta, SECRET_META_KEY)
            return None if row is None else row.value
