"""Writing the playground's conversation: comments, threads, reviews, reactions, resolving, commit states."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.db.models import (
    PlaygroundComment,
    PlaygroundCommitState,
    PlaygroundReaction,
    PlaygroundReview,
    PlaygroundReviewThread,
)
from bot.diffs import parse_diff
from bot.hosts.local_store.core import StoreCore
from bot.hosts.local_store.rows import (
    CommentInfo,
    PlaygroundError,
    ReviewInfo,
    ThreadInfo,
    _comment,
    _thread,
)
from bot.paths import path_problem


class Comments(StoreCore):
    """Writes on conversations and commits."""

    # -------------------------------------------------------------- writing

    def add_comment(
        self,
        repo: str,
        number: int,
        author: str,
        body: str,
        *,
        thread_id: int | None = None,
    ) -> CommentInfo:
        """A comment in the conversation, or a reply in review thread `thread_id`."""
        with Session(self.engine) as session, session.begin():
            if self._pull_row(session, repo, number) is None:
                raise PlaygroundError(f"no pull request {repo}#{number}", status=404)
            in_reply_to = None
            if thread_id is not None:
                thread = session.get(PlaygroundReviewThread, thread_id)
                if thread is None or (thread.repo, thread.number) != (repo, number):
                    raise PlaygroundError(
                        f"no review thread {thread_id} in {repo}#{number}", status=404
                    )
                in_reply_to = session.execute(
                    select(func.min(PlaygroundComment.id)).where(
                        PlaygroundComment.thread_id == thread_id
                    )
                ).scalar_one()
            row = PlaygroundComment(
                repo=repo,
                number=number,
                thread_id=thread_id,
                in_reply_to=in_reply_to,
                author=author,
                body=body,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            return _comment(row)

    def open_thread(
        self,
        repo: str,
        number: int,
        author: str,
        *,
        path: str,
        line: int,
        body: str,
        side: str = "RIGHT",
        commit_sha: str | None = None,
    ) -> tuple[ThreadInfo, CommentInfo]:
        """A new review thread on `line` of `path` in the diff, with its first comment."""
        with Session(self.engine) as session, session.begin():
            thread, comment = self._open_thread(
                session, repo, number, author, path, line, body, side, commit_sha
            )
            return _thread(thread), _comment(comment)

    def _open_thread(
        self,
        session: Session,
        repo: str,
        number: int,
        author: str,
        path: str,
        line: int,
        body: str,
        side: str,
        commit_sha: str | None,
    ) -> tuple[PlaygroundReviewThread, PlaygroundComment]:
        pull = self._pull_row(session, repo, number)
        if pull is None:
            raise PlaygroundError(f"no pull request {repo}#{number}", status=404)
        if side not in ("RIGHT", "LEFT"):
            raise PlaygroundError(f"side must be RIGHT or LEFT, got {side!r}")
        wrong = path_problem(path)
        if wrong is not None:
            raise PlaygroundError(f"{path!r} is not a plain relative file path ({wrong})")
        files = {f.path: f for f in parse_diff(pull.diff)}
        if path not in files:
            raise PlaygroundError(f"{path} is not part of the diff of {repo}#{number}")
        if not files[path].has_line(line, side):
            raise PlaygroundError(f"line {line} of {path} is not part of the diff")
        now = self.clock()
        thread = PlaygroundReviewThread(
            repo=repo,
            number=number,
            path=path,
            line=line,
            side=side,
            commit_sha=commit_sha or pull.head_sha,
            resolved=False,
            created_at=now,
        )
        session.add(thread)
        session.flush()
        comment = PlaygroundComment(
            repo=repo,
            number=number,
            thread_id=thread.id,
            in_reply_to=None,
            author=author,
            body=body,
            created_at=now,
        )
        session.add(comment)
        session.flush()
        return thread, comment

    def create_review(
        self,
        repo: str,
        number: int,
        author: str,
        *,
        state: str,
        body: str,
        commit_sha: str | None,
        comments: Sequence[tuple[str, int, str, str]] = (),
    ) -> tuple[ReviewInfo, list[tuple[ThreadInfo, CommentInfo]]]:
        """A review with a thread per (path, line, side, body), all in one transaction."""
        with Session(self.engine) as session, session.begin():
            pull = self._pull_row(session, repo, number)
            if pull is None:
                raise PlaygroundError(f"no pull request {repo}#{number}", status=404)
            opened = [
                self._open_thread(session, repo, number, author, path, line, text, side, commit_sha)
                for path, line, side, text in comments
            ]
            review = PlaygroundReview(
                repo=repo,
                number=number,
                author=author,
                state=state,
                body=body,
                commit_sha=commit_sha or pull.head_sha,
                created_at=self.clock(),
            )
            session.add(review)
            session.flush()
            info = ReviewInfo(
                review.id,
                review.author,
                review.state,
                review.body,
                review.commit_sha,
                review.created_at,
            )
            return info, [(_thread(t), _comment(c)) for t, c in opened]

    def edit_comment(self, comment_id: int, body: str, *, by: str) -> CommentInfo:
        """Replace a comment's body; only its author may, and not once it is deleted."""
        with Session(self.engine) as session, session.begin():
            row = session.get(PlaygroundComment, comment_id)
            if row is None or row.deleted_at is not None:
                raise PlaygroundError(f"no comment {comment_id}", status=404)
            if row.author != by:
                raise PlaygroundError(f"{by} may not edit {row.author}'s comment", status=403)
            row.body = body
            row.edited_at = self.clock()
            session.flush()
            return _comment(row)

    def delete_comment(self, comment_id: int, *, by: str) -> CommentInfo:
        """Mark a comment deleted (it stays, shown as deleted); only its author may."""
        with Session(self.engine) as session, session.begin():
            row = session.get(PlaygroundComment, comment_id)
            if row is None or row.deleted_at is not None:
                raise PlaygroundError(f"no comment {comment_id}", status=404)
            if row.author != by:
                raise PlaygroundError(f"{by} may not delete {row.author}'s comment", status=403)
            row.deleted_at = self.clock()
            session.flush()
            return _comment(row)

    def add_reaction(self, comment_id: int, login: str, content: str) -> bool:
        """React to a comment; False when that reaction was there already."""
        with Session(self.engine) as session, session.begin():
            row = session.get(PlaygroundComment, comment_id)
            if row is None or row.deleted_at is not None:
                raise PlaygroundError(f"no comment {comment_id}", status=404)
            added = session.execute(
                self._insert(PlaygroundReaction)
                .values(
                    comment_id=comment_id, login=login, content=content, created_at=self.clock()
                )
                .on_conflict_do_nothing(index_elements=["comment_id", "login", "content"])
                .returning(PlaygroundReaction.id)
            ).scalar_one_or_none()
            return added is not None

    def resolve(self, thread_id: int, *, resolved: bool = True) -> None:
        with Session(self.engine) as session, session.begin():
            done = session.execute(
                update(PlaygroundReviewThread)
                .where(PlaygroundReviewThread.id == thread_id)
                .values(resolved=resolved)
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise PlaygroundError(f"no review thread {thread_id}", status=404)

    def set_commit_state(
        self, repo: str, sha: str, name: str, state: str, summary: str, url: str | None
    ) -> None:
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            row = session.get(PlaygroundCommitState, (repo, sha, name))
            if row is None:
                session.add(
                    PlaygroundCommitState(
                        repo=repo,
                        sha=sha,
                        name=name,
                        state=state,
                        summary=summary,
                        url=url,
                        updated_at=now,
                    )
                )
            else:
                row.state, row.summary, row.url, row.updated_at = state, summary, url, now
