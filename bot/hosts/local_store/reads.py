"""Reading the playground: users, pull requests, comments, threads, files and commit states."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db.models import (
    PlaygroundComment,
    PlaygroundCommitState,
    PlaygroundFile,
    PlaygroundPull,
    PlaygroundReaction,
    PlaygroundReview,
    PlaygroundReviewThread,
    PlaygroundUser,
)
from bot.hosts.local_store.core import StoreCore
from bot.hosts.local_store.rows import (
    CommentInfo,
    CommitStateInfo,
    Conversation,
    PlaygroundError,
    PullInfoRow,
    ReviewInfo,
    ThreadInfo,
    UserInfo,
    _comment,
    _pull,
    _thread,
)
from bot.paths import repo_path


class Reads(StoreCore):
    """What the playground pages and LocalHost read."""

    # -------------------------------------------------------------- reading

    def users(self) -> list[UserInfo]:
        with Session(self.engine) as session:
            rows = session.scalars(select(PlaygroundUser).order_by(PlaygroundUser.login))
            return [UserInfo(u.login, u.permission, u.is_bot) for u in rows]

    def user(self, login: str) -> UserInfo | None:
        with Session(self.engine) as session:
            row = session.get(PlaygroundUser, login)
            return None if row is None else UserInfo(row.login, row.permission, row.is_bot)

    def pull(self, repo: str, number: int) -> PullInfoRow | None:
        with Session(self.engine) as session:
            row = self._pull_row(session, repo, number)
            return None if row is None else _pull(row)

    def pulls(self) -> list[PullInfoRow]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(PlaygroundPull).order_by(PlaygroundPull.repo, PlaygroundPull.number)
            )
            return [_pull(r) for r in rows]

    def comment(self, comment_id: int) -> CommentInfo | None:
        with Session(self.engine) as session:
            row = session.get(PlaygroundComment, comment_id)
            return None if row is None else _comment(row, self._reactions(session, [row.id]))

    def thread(self, thread_id: int) -> ThreadInfo | None:
        with Session(self.engine) as session:
            row = session.get(PlaygroundReviewThread, thread_id)
            return None if row is None else _thread(row)

    def thread_comments(self, repo: str, number: int, thread_id: int | None) -> list[CommentInfo]:
        """The comments of one thread (None: the conversation), oldest first, deleted ones too."""
        with Session(self.engine) as session:
            query = select(PlaygroundComment).where(
                PlaygroundComment.repo == repo, PlaygroundComment.number == number
            )
            query = query.where(
                PlaygroundComment.thread_id.is_(None)
                if thread_id is None
                else PlaygroundComment.thread_id == thread_id
            )
            rows = list(session.scalars(query.order_by(PlaygroundComment.id)))
            reactions = self._reactions(session, [r.id for r in rows])
            return [_comment(r, reactions) for r in rows]

    def review_comments(self, repo: str, number: int) -> list[CommentInfo]:
        """Every comment in the pull request's review threads, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(PlaygroundComment)
                .where(
                    PlaygroundComment.repo == repo,
                    PlaygroundComment.number == number,
                    PlaygroundComment.thread_id.is_not(None),
                )
                .order_by(PlaygroundComment.id)
            )
            return [_comment(r) for r in rows]

    def conversation(self, repo: str, number: int) -> Conversation | None:
        """The pull request with its conversation, review threads, reviews and statuses."""
        with Session(self.engine) as session, session.begin():
            pull = self._pull_row(session, repo, number)
            if pull is None:
                return None
            rows = list(
                session.scalars(
                    select(PlaygroundComment)
                    .where(PlaygroundComment.repo == repo, PlaygroundComment.number == number)
                    .order_by(PlaygroundComment.id)
                )
            )
            reactions = self._reactions(session, [r.id for r in rows])
            by_thread: dict[int | None, list[CommentInfo]] = {}
            for row in rows:
                by_thread.setdefault(row.thread_id, []).append(_comment(row, reactions))
            threads = session.scalars(
                select(PlaygroundReviewThread)
                .where(PlaygroundReviewThread.repo == repo, PlaygroundReviewThread.number == number)
                .order_by(PlaygroundReviewThread.id)
            )
            reviews = session.scalars(
                select(PlaygroundReview)
                .where(PlaygroundReview.repo == repo, PlaygroundReview.number == number)
                .order_by(PlaygroundReview.id)
            )
            states = session.scalars(
                select(PlaygroundCommitState)
                .where(PlaygroundCommitState.repo == repo)
                .where(PlaygroundCommitState.sha == pull.head_sha)
                .order_by(PlaygroundCommitState.name)
            )
            users = session.scalars(select(PlaygroundUser).order_by(PlaygroundUser.login))
            return Conversation(
                pull=_pull(pull),
                comments=tuple(by_thread.get(None, [])),
                threads=tuple(_thread(t, by_thread.get(t.id, [])) for t in threads),
                reviews=tuple(
                    ReviewInfo(r.id, r.author, r.state, r.body, r.commit_sha, r.created_at)
                    for r in reviews
                ),
                commit_states=tuple(
                    CommitStateInfo(s.sha, s.name, s.state, s.summary, s.url, s.updated_at)
                    for s in states
                ),
                users=tuple(UserInfo(u.login, u.permission, u.is_bot) for u in users),
            )

    def version(self, repo: str, number: int) -> str:
        """A short fingerprint that changes whenever anything shown of the pull request does.

        Cheap (a few aggregates), so a page can poll it and fetch the whole view only when
        it moved.
        """
        with Session(self.engine) as session, session.begin():
            comments = session.execute(
                select(
                    func.count(PlaygroundComment.id),
                    func.max(PlaygroundComment.id),
                    func.max(PlaygroundComment.edited_at),
                    func.count(PlaygroundComment.deleted_at),
                ).where(PlaygroundComment.repo == repo, PlaygroundComment.number == number)
            ).one()
            reactions = session.execute(
                select(func.count(PlaygroundReaction.id), func.max(PlaygroundReaction.id))
                .join(PlaygroundComment, PlaygroundComment.id == PlaygroundReaction.comment_id)
                .where(PlaygroundComment.repo == repo, PlaygroundComment.number == number)
            ).one()
            threads = session.execute(
                select(
                    func.count(PlaygroundReviewThread.id),
                    func.count(PlaygroundReviewThread.id).filter(PlaygroundReviewThread.resolved),
                ).where(
                    PlaygroundReviewThread.repo == repo, PlaygroundReviewThread.number == number
                )
            ).one()
            reviews = session.execute(
                select(func.max(PlaygroundReview.id)).where(
                    PlaygroundReview.repo == repo, PlaygroundReview.number == number
                )
            ).one()
            states = session.execute(
                select(func.max(PlaygroundCommitState.updated_at)).where(
                    PlaygroundCommitState.repo == repo
                )
            ).one()
        text = repr((tuple(comments), tuple(reactions), tuple(threads), reviews[0], states[0]))
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]

    def read_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """A file at a branch or a commit sha; None (the ref): the default branch."""
        with Session(self.engine) as session:
            if ref is None:
                ref = self._default_branch_name(session, repo)
            sha = self._branch_sha(session, repo, ref) or ref
            return session.scalars(
                select(PlaygroundFile.content).where(
                    PlaygroundFile.repo == repo,
                    PlaygroundFile.sha == sha,
                    PlaygroundFile.path == str(repo_path(path)),
                )
            ).one_or_none()

    def default_branch(self, repo: str) -> tuple[str, str]:
        """(name, commit sha) of the repository's default branch."""
        with Session(self.engine) as session:
            name = self._default_branch_name(session, repo)
            sha = self._branch_sha(session, repo, name)
            if sha is None:
                raise PlaygroundError(f"{repo} has no branch {name}, its default", status=404)
            return name, sha

    def files(self, repo: str, sha: str) -> dict[str, str]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(PlaygroundFile.path, PlaygroundFile.content).where(
                    PlaygroundFile.repo == repo, PlaygroundFile.sha == sha
                )
            )
            return {path: content for path, content in rows}

    def commit_states(self, repo: str, sha: str) -> list[CommitStateInfo]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(PlaygroundCommitState)
                .where(PlaygroundCommitState.repo == repo, PlaygroundCommitState.sha == sha)
                .order_by(PlaygroundCommitState.name)
            )
            return [
                CommitStateInfo(s.sha, s.name, s.state, s.summary, s.url, s.updated_at)
                for s in rows
            ]
