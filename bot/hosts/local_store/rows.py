"""What the playground store hands out: errors, info rows and URLs, made from database rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.db.models import (
    PlaygroundComment,
    PlaygroundPull,
    PlaygroundReviewThread,
)
from bot.hosts.local_seed import (
    DEMO_PULL,
)

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
