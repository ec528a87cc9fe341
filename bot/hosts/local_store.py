"""The playground's data: one repository with a pull request, kept in Threadline's database.

`PlaygroundStore` is the SQL behind both sides of the `local` host: the playground pages
write what people say through it, and `LocalHost` (bot/hosts/local.py) writes what the
bot says. Every method is blocking; async callers use `asyncio.to_thread`.

`prepare` seeds the playground on first use (repository `playground/demo`, pull request
#1 with a small diff, the users `maintainer` (write) and `outsider` (read) and the bot)
and settles the webhook secret: the configured one, else one generated once and kept in
`playground_meta`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.models import (
    PlaygroundBranch,
    PlaygroundComment,
    PlaygroundCommit,
    PlaygroundCommitState,
    PlaygroundFile,
    PlaygroundMeta,
    PlaygroundPull,
    PlaygroundReaction,
    PlaygroundRepo,
    PlaygroundReview,
    PlaygroundReviewThread,
    PlaygroundUser,
)
from bot.diffs import parse_diff, unified_diff
from bot.hosts.local_seed import (
    BASE_FILES,
    DEMO_BODY,
    DEMO_PULL,
    DEMO_REPO,
    DEMO_TITLE,
    HEAD_FILES,
    OUTSIDER,
    PEOPLE,
    tree_sha,
)
from bot.paths import path_problem, repo_path

SECRET_META_KEY = "webhook_secret"  # noqa: S105 (the name of a row, not a secret)
HEAD_BRANCH = "retry-uploads"  # the seeded pull request's branch; it goes into main

# ---------------------------------------------------------------- what the store hands out


class PlaygroundError(Exception):
    """A request the playground cannot carry out; `status` is the HTTP-like reason."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UserInfo:
    login: str
    permission: str
    is_bot: bool


@dataclass(frozen=True)
class PullInfoRow:
    repo: str
    number: int
    title: str
    body: str
    author: str
    base_ref: str
    head_ref: str
    base_sha: str
    head_sha: str
    state: str
    diff: str
    created_at: datetime


@dataclass(frozen=True)
class CommentInfo:
    id: int
    repo: str
    number: int
    thread_id: int | None
    in_reply_to: int | None
    author: str
    body: str
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    reactions: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (content, logins)

    @property
    def url(self) -> str:
        return comment_url(self.id, self.number)


@dataclass(frozen=True)
class ThreadInfo:
    id: int
    repo: str
    number: int
    path: str
    line: int
    side: str
    commit_sha: str
    resolved: bool
    created_at: datetime
    comments: tuple[CommentInfo, ...] = ()


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    author: str
    state: str
    body: str
    commit_sha: str
    created_at: datetime


@dataclass(frozen=True)
class CommitStateInfo:
    sha: str
    name: str
    state: str
    summary: str
    url: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Conversation:
    """Everything the playground page shows of one pull request, read in one transaction."""

    pull: PullInfoRow
    comments: tuple[CommentInfo, ...]  # the conversation, oldest first
    threads: tuple[ThreadInfo, ...]  # review threads with their comments
    reviews: tuple[ReviewInfo, ...]
    commit_states: tuple[CommitStateInfo, ...]
    users: tuple[UserInfo, ...]


def pull_url(number: int) -> str:
    """The playground page of pull request `number` (the seeded one at /playground itself)."""
    return "/playground" if number == DEMO_PULL else f"/playground?pr={number}"


def comment_url(comment_id: int, number: int = DEMO_PULL) -> str:
    return f"{pull_url(number)}#comment-{comment_id}"


def _pull(row: PlaygroundPull) -> PullInfoRow:
    return PullInfoRow(
        repo=row.repo,
        number=row.number,
        title=row.title,
        body=row.body,
        author=row.author,
        base_ref=row.base_ref,
        head_ref=row.head_ref,
        base_sha=row.base_sha,
        head_sha=row.head_sha,
        state=row.state,
        diff=row.diff,
        created_at=row.created_at,
    )


def _comment(
    row: PlaygroundComment, reactions: dict[int, dict[str, list[str]]] | None = None
) -> CommentInfo:
    mine = (reactions or {}).get(row.id, {})
    return CommentInfo(
        id=row.id,
        repo=row.repo,
        number=row.number,
        thread_id=row.thread_id,
        in_reply_to=row.in_reply_to,
        author=row.author,
        body=row.body,
        created_at=row.created_at,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
        reactions=tuple((content, tuple(who)) for content, who in mine.items()),
    )


def _thread(row: PlaygroundReviewThread, comments: Iterable[CommentInfo] = ()) -> ThreadInfo:
    return ThreadInfo(
        id=row.id,
        repo=row.repo,
        number=row.number,
        path=row.path,
        line=row.line,
        side=row.side,
        commit_sha=row.commit_sha,
        resolved=row.resolved,
        created_at=row.created_at,
        comments=tuple(comments),
    )


class PlaygroundStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = insert_ignoring_conflicts(engine)

    # -------------------------------------------------------------- seeding

    def prepare(self, bot_login: str, secret: str | None = None) -> str:
        """Seed what is missing and return the webhook secret in force.

        Safe to run at every start and from several processes at once: each row is
        inserted only if absent. A configured `secret` wins; otherwise the one generated
        on the first start is kept.
        """
        now = self.clock()
        base_sha, head_sha = tree_sha("base", BASE_FILES), tree_sha("head", HEAD_FILES)
        with Session(self.engine) as session, session.begin():

            def add(model: type[Any], index: list[str], **values: Any) -> None:
                session.execute(
                    self._insert(model)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=index)
                )

            for login, permission in PEOPLE:
                add(PlaygroundUser, ["login"], login=login, permission=permission, is_bot=False)
            add(PlaygroundUser, ["login"], login=bot_login, permission="write", is_bot=True)
            add(
                PlaygroundRepo,
                ["name"],
                name=DEMO_REPO,
                description="A tiny repository to try Threadline on",
                default_branch="main",
            )
            for sha, files in ((base_sha, BASE_FILES), (head_sha, HEAD_FILES)):
                for path, content in files.items():
                    add(
                        PlaygroundFile,
                        ["repo", "sha", "path"],
                        repo=DEMO_REPO,
                        sha=sha,
                        path=path,
                        content=content,
                    )
            for sha, parent, message in (
                (base_sha, None, "Upload reports to the archive"),
                (head_sha, base_sha, DEMO_TITLE),
            ):
                add(
                    PlaygroundCommit,
                    ["repo", "sha"],
                    repo=DEMO_REPO,
                    sha=sha,
                    parent_sha=parent,
                    message=message,
                    author=OUTSIDER,
                    created_at=now,
                )
            for name, sha in (("main", base_sha), (HEAD_BRANCH, head_sha)):
                add(PlaygroundBranch, ["repo", "name"], repo=DEMO_REPO, name=name, sha=sha)
            add(
                PlaygroundPull,
                ["repo", "number"],
                repo=DEMO_REPO,
                number=DEMO_PULL,
                title=DEMO_TITLE,
                body=DEMO_BODY,
                author=OUTSIDER,
                base_ref="main",
                head_ref=HEAD_BRANCH,
                base_sha=base_sha,
                head_sha=head_sha,
                state="open",
                diff=unified_diff(BASE_FILES, HEAD_FILES),
                created_at=now,
            )
            if secret is None:
                add(PlaygroundMeta, ["key"], key=SECRET_META_KEY, value=secrets.token_urlsafe(32))
                secret = session.execute(
                    select(PlaygroundMeta.value).where(PlaygroundMeta.key == SECRET_META_KEY)
                ).scalar_one()
        return secret

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

    def _pull_row(self, session: Session, repo: str, number: int) -> PlaygroundPull | None:
        return session.scalars(
            select(PlaygroundPull).where(
                PlaygroundPull.repo == repo, PlaygroundPull.number == number
            )
        ).one_or_none()

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
    ) -> str:
        """A new branch at a new commit: `base_sha`'s files with `changes` (path, new text
        or None to delete) applied. Returns the commit's sha.

        The sha is a digest of the parent, the message and the files, so the same call
        twice names the same commit; a branch already at it counts as done (status 409
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
            sha = tree_sha(f"commit\0{base_sha}\0{message}", files)
            existing = self._branch_sha(session, repo, branch)
            if existing is None:
                self._add_commit(session, repo, sha, base_sha, message, author, files)
                created = session.execute(
                    self._insert(PlaygroundBranch)
                    .values(repo=repo, name=branch, sha=sha)
                    .on_conflict_do_nothing(index_elements=["repo", "name"])
                    .returning(PlaygroundBranch.sha)
                ).scalar_one_or_none()
                existing = created or self._branch_sha(session, repo, branch)
            if existing != sha and not self._built_alike(session, repo, existing, base_sha, files):
                raise PlaygroundError(
                    f"{repo} already has a branch {branch} that is not this change on this base",
                    status=409,
                )
            return existing or sha

    def _files(self, session: Session, repo: str, sha: str) -> dict[str, str]:
        rows = session.execute(
            select(PlaygroundFile.path, PlaygroundFile.content).where(
                PlaygroundFile.repo == repo, PlaygroundFile.sha == sha
            )
        )
        return {path: content for path, content in rows}

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
                number = 1 + (
                    session.execute(
                        select(func.max(PlaygroundPull.number)).where(PlaygroundPull.repo == repo)
                    ).scalar_one()
                    or 0
                )
                diff = unified_diff(
                    self._files(session, repo, base_sha), self._files(session, repo, head_sha)
                )
                made = session.execute(
                    self._insert(PlaygroundPull)
                    .values(
                        repo=repo,
                        number=number,
                        title=title,
                        body=body,
                        author=author,
                        base_ref=base,
                        head_ref=head,
                        base_sha=base_sha,
                        head_sha=head_sha,
                        state="open",
                        diff=diff,
                        created_at=self.clock(),
                    )
                    .on_conflict_do_nothing(index_elements=["repo", "number"])
                    .returning(PlaygroundPull.id)
                ).scalar_one_or_none()
                if made is not None:
                    row = session.get(PlaygroundPull, made)
                    assert row is not None
                    return _pull(row)
        raise PlaygroundError(
            "pull requests were being opened at the same moment; try again", status=503
        )
