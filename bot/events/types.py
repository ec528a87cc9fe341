"""Host-neutral events, and the pure functions that turn GitHub, GitLab and playground
payloads into them.

A thread is where a conversation lives: the conversation of an issue or a pull/merge
request, or one review thread on its diff (GitHub: the replies under one review
comment; GitLab: one discussion). `ThreadRef.key` names it the same way on both hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# local: the playground (bot/hosts/local.py); headless: a session launched through the API
# with no host thread (bot/api), whose replies and status live only in its transcript.
Host = Literal["github", "gitlab", "local", "headless"]
HEADLESS: Host = "headless"
Target = Literal["issue", "pull"]  # "pull" is a GitHub pull request or a GitLab merge request


@dataclass(frozen=True)
class Actor:
    login: str
    id: int | None = None
    is_bot: bool = False


@dataclass(frozen=True)
class ThreadRef:
    host: Host
    repo: str  # owner/name on GitHub, the project's full path on GitLab
    target: Target
    number: int  # issue or PR number; the iid on GitLab
    thread_id: str | None = None  # review thread root comment id / GitLab discussion id

    @property
    def conversation(self) -> ThreadRef:
        """The issue or PR/MR conversation this thread belongs to."""
        return ThreadRef(self.host, self.repo, self.target, self.number)

    @property
    def key(self) -> str:
        kind = "issues" if self.target == "issue" else "pulls"
        base = f"{self.host}:{self.repo}/{kind}/{self.number}"
        return f"{base}/threads/{self.thread_id}" if self.thread_id else base


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event has. `installation_id` is GitHub's; GitLab's is None."""

    host: Host
    repo: str
    actor: Actor
    action: str
    installation_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class CommentEvent(Event):
    """A comment created, edited or deleted in a thread."""

    thread: ThreadRef
    comment_id: str
    body: str
    url: str | None = None
    in_reply_to: str | None = None
    path: str | None = None  # file, for comments on a diff line
    line: int | None = None
    # Which file `line` counts in, as GitHub's review comments say it: RIGHT the new one
    # (added and unchanged lines), LEFT the old one (a deleted line). None: no diff line.
    side: str | None = None
    system: bool = False  # GitLab system notes ("added 1 commit", ...)


@dataclass(frozen=True, kw_only=True)
class ReviewEvent(Event):
    """A review submitted or dismissed on a PR, or an approval given or taken back on an MR."""

    thread: ThreadRef
    review_id: str | None
    state: str  # approved | changes_requested | commented | dismissed | unapproved
    body: str = ""
    commit_id: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReviewThreadEvent(Event):
    """A review thread resolved or unresolved (GitHub only)."""

    thread: ThreadRef


@dataclass(frozen=True, kw_only=True)
class IssueEvent(Event):
    """An issue opened, edited, closed, reopened, labeled or assigned."""

    thread: ThreadRef
    title: str
    body: str
    labels: tuple[str, ...] = ()
    label: str | None = None  # the label added or removed, for labeled/unlabeled
    assignees: tuple[str, ...] = ()
    assignee: str | None = None  # the person (un)assigned, for assigned/unassigned
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class PullRequestEvent(Event):
    """A pull or merge request opened, updated (new head), closed, merged or reopened."""

    thread: ThreadRef
    title: str
    body: str
    head_sha: str | None = None
    base_sha: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class InstallationEvent(Event):
    """A GitHub App installed, removed, suspended or given repositories."""

    account: str
    repositories_added: tuple[str, ...] = field(default=())
    repositories_removed: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Ignored:
    """A delivery that carries nothing for Threadline, and why."""

    reason: str


class PayloadError(ValueError):
    """A payload that claims to be an event we handle but lacks what that event has."""


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise PayloadError(f"payload has no {'.'.join(path)}")
        value = value[key]
    return value


def _opt(data: Mapping[str, Any], *path: str) -> Any:
    try:
        return _get(data, *path)
    except PayloadError:
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)
