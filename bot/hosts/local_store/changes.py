"""The playground's branches and pull requests: commit_files and open_pull."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.db.models import (
    PlaygroundBranch,
    PlaygroundCommit,
    PlaygroundFile,
    PlaygroundPull,
)
from bot.diffs import unified_diff
from bot.hosts.local_objects import commit_id
from bot.hosts.local_store.core import StoreCore
from bot.hosts.local_store.rows import PlaygroundError, PullInfoRow, _pull
from bot.paths import path_problem


class Changes(StoreCore):
    """Commits, branches and pull requests made from a change set."""

    # -------------------------------------------------------------- branches and pull requests

    def commit_files(
        self,
        repo: str,
        *,
        branch: str,
        base_sha: str,
        changes: Sequence[tuple[str, str | None]],
        message: str,
        author: str,
        existing: bool = False,
    ) -> str:
        """A new branch at a new commit: `base_sha`'s files with `changes` (path, new text
        or None to delete) applied. Returns the commit's sha. `existing`: the commit goes
        on top of `branch`, which must be at `base_sha` (409 when it moved), and the open
        pull requests from that branch show it.

        The sha is the git id of the commit of the files on the parent with the message
        and author (bot/hosts/local_objects.py), so the same call twice names the same commit; a branch already at it counts as done (status 409
        when the branch holds anything else).
        """
        with Session(self.engine) as session, session.begin():
            self._default_branch_name(session, repo)  # the repository exists
            known = session.get(PlaygroundCommit, (repo, base_sha)) is not None
            files = self._files(session, repo, base_sha)
            if not known and not files:
                raise PlaygroundError(f"{repo} has no commit {base_sha} to build on", status=404)
            for path, text in changes:
                wrong = path_problem(path)
                if wrong is not None:
                    raise PlaygroundError(f"{path!r} is not a plain relative file path ({wrong})")
                if text is None:
                    if path not in files:
                        raise PlaygroundError(
                            f"cannot delete {path}: {repo} has no such file at {base_sha[:12]}"
                        )
                    del files[path]
                else:
                    files[path] = text
            sha = commit_id(files, parent=base_sha, message=message, author=author)
            if existing:
                return self._push(session, repo, branch, base_sha, sha, message, author, files)
            existing_sha = self._branch_sha(session, repo, branch)
            if existing_sha is None:
                self._add_commit(session, repo, sha, base_sha, message, author, files)
                created = session.execute(
                    self._insert(PlaygroundBranch)
                    .values(repo=repo, name=branch, sha=sha)
                    .on_conflict_do_nothing(index_elements=["repo", "name"])
                    .returning(PlaygroundBranch.sha)
                ).scalar_one_or_none()
                existing_sha = created or self._branch_sha(session, repo, branch)
            if existing_sha != sha and not self._built_alike(
                session, repo, existing_sha, base_sha, files
            ):
                raise PlaygroundError(
                    f"{repo} already has a branch {branch} that is not this change on this base",
                    status=409,
                )
            return existing_sha or sha

    def _push(
        self,
        session: Session,
        repo: str,
        branch: str,
        base_sha: str,
        sha: str,
        message: str,
        author: str,
        files: dict[str, str],
    ) -> str:
        """Move `branch` from `base_sha` to the new commit `sha` (already there: done)."""
        found = self._branch_sha(session, repo, branch)
        if found is None:
            raise PlaygroundError(f"{repo} has no branch {branch} to push to", status=404)
        if found == sha:
            return sha
        if found != base_sha:
            raise PlaygroundError(
                f"branch {branch} of {repo} moved to {found[:12]} (expected {base_sha[:12]})",
                status=409,
            )
        self._add_commit(session, repo, sha, base_sha, message, author, files)
        moved = session.execute(
            update(PlaygroundBranch)
            .where(
                PlaygroundBranch.repo == repo,
                PlaygroundBranch.name == branch,
                PlaygroundBranch.sha == base_sha,
            )
            .values(sha=sha)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise PlaygroundError(f"branch {branch} of {repo} moved meanwhile", status=409)
        for pull in session.scalars(
            select(PlaygroundPull).where(
                PlaygroundPull.repo == repo,
                PlaygroundPull.head_ref == branch,
                PlaygroundPull.state == "open",
            )
        ):
            pull.head_sha = sha
            pull.diff = unified_diff(self._files(session, repo, pull.base_sha), files)
        return sha

    def _built_alike(
        self, session: Session, repo: str, sha: str | None, parent: str, files: dict[str, str]
    ) -> bool:
        if sha is None:
            return False
        commit = session.get(PlaygroundCommit, (repo, sha))
        return (
            commit is not None
            and commit.parent_sha == parent
            and self._files(session, repo, sha) == files
        )

    def _add_commit(
        self,
        session: Session,
        repo: str,
        sha: str,
        parent: str,
        message: str,
        author: str,
        files: dict[str, str],
    ) -> None:
        session.execute(
            self._insert(PlaygroundCommit)
            .values(
                repo=repo,
                sha=sha,
                parent_sha=parent,
                message=message,
                author=author,
                created_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["repo", "sha"])
        )
        if files:
            session.execute(
                self._insert(PlaygroundFile)
                .values(
                    [
                        {"repo": repo, "sha": sha, "path": path, "content": content}
                        for path, content in files.items()
                    ]
                )
                .on_conflict_do_nothing(index_elements=["repo", "sha", "path"])
            )

    def open_issue(self, repo: str, *, title: str, body: str, author: str) -> PullInfoRow:
        """A new conversation (a scheduled turn's issue): a row like a pull request's
        whose head is its base, so it has no diff."""
        for _ in range(3):  # numbers are taken max + 1: a concurrent opening takes another turn
            with Session(self.engine) as session, session.begin():
                branch = self._default_branch_name(session, repo)
                sha = self._branch_sha(session, repo, branch)
                if sha is None:
                    raise PlaygroundError(f"{repo} has no branch {branch}", status=404)
                made = self._new_pull(
                    session,
                    repo,
                    title=title,
                    body=body,
                    author=author,
                    refs=(branch, branch),
                    shas=(sha, sha),
                    diff="",
                )
                if made is not None:
                    return made
        raise PlaygroundError("issues were being opened at the same moment; try again", status=503)

    def open_pull(
        self, repo: str, *, head: str, base: str, title: str, body: str, author: str
    ) -> PullInfoRow:
        """A pull request from branch `head` into `base`, or the one already open for them."""
        for _ in range(3):  # numbers are taken max + 1: a concurrent opening takes another turn
            with Session(self.engine) as session, session.begin():
                found = session.scalars(
                    select(PlaygroundPull).where(
                        PlaygroundPull.repo == repo,
                        PlaygroundPull.head_ref == head,
                        PlaygroundPull.base_ref == base,
                        PlaygroundPull.state == "open",
                    )
                ).first()
                if found is not None:
                    return _pull(found)
                head_sha = self._branch_sha(session, repo, head)
                base_sha = self._branch_sha(session, repo, base)
                if head_sha is None or base_sha is None:
                    missing = head if head_sha is None else base
                    raise PlaygroundError(f"{repo} has no branch {missing}", status=422)
                diff = unified_diff(
                    self._files(session, repo, base_sha), self._files(session, repo, head_sha)
                )
                made = self._new_pull(
                    session,
                    repo,
                    title=title,
                    body=body,
                    author=author,
                    refs=(base, head),
                    shas=(base_sha, head_sha),
                    diff=diff,
                )
                if made is not None:
                    return made
        raise PlaygroundError(
            "pull requests were being opened at the same moment; try again", status=503
        )

    def _new_pull(
        self,
        session: Session,
        repo: str,
        *,
        title: str,
        body: str,
        author: str,
        refs: tuple[str, str],
        shas: tuple[str, str],
        diff: str,
    ) -> PullInfoRow | None:
        """Insert an open pull request (or issue) numbered max + 1 in `repo`; None when a
        concurrent opening took that number (the caller tries again). `refs` and `shas`
        are (base, head)."""
        number = 1 + (
            session.execute(
                select(func.max(PlaygroundPull.number)).where(PlaygroundPull.repo == repo)
            ).scalar_one()
            or 0
        )
        made = session.execute(
            self._insert(PlaygroundPull)
            .values(
                repo=repo,
                number=number,
                title=title,
                body=body,
                author=author,
                base_ref=refs[0],
                head_ref=refs[1],
                base_sha=shas[0],
                head_sha=shas[1],
                state="open",
                diff=diff,
                created_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["repo", "number"])
            .returning(PlaygroundPull.id)
        ).scalar_one_or_none()
        if made is None:
            return None
        row = session.get(PlaygroundPull, made)
        assert row is not None
        return _pull(row)
