"""What Threadline asks of a code review host, and the errors a host call can end in.

A `HostClient` is bound to one installation (GitHub) or one token (GitLab); callers get
one from `Hosts.client(host, installation_id)`. It holds only what callers use. What a
host cannot do is said by `capabilities`, and calling it raises `Unsupported`; nothing
is silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.events import ThreadRef

# Capability names.
RESOLVE_THREADS = "resolve_threads"
CHECK_RUNS = "check_runs"  # GitHub check runs (Apps only)
COMMIT_STATUSES = "commit_statuses"  # GitLab, and GitHub with a plain token
REACTIONS = "reactions"

Permission = Literal["none", "read", "triage", "write", "maintain", "admin"]
WRITE_PERMISSIONS: frozenset[str] = frozenset({"write", "maintain", "admin"})


class HostError(Exception):
    """A host call failed.

    `retryable`: trying again later may succeed (timeouts, 5xx, rate limits).
    `ambiguous`: the write may have happened although no answer came back, so a
    retry must first look for it (by its marker) before writing again.
    `retry_after`: seconds the host asked us to wait, when it said so.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class RateLimited(HostError):
    """429, or GitHub's 403 for a primary or secondary rate limit."""

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message, status=status, retryable=True, retry_after=retry_after)


class Unauthorized(HostError):
    """The credentials were refused even after one refresh (revoked, uninstalled, expired)."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message, status=status)


class NotFound(HostError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


class NoCredentials(HostError):
    """Threadline has no credentials for this host (webhooks only): it cannot ask or write."""


class Unsupported(HostError):
    """This host has no such feature (see `capabilities`)."""


@dataclass(frozen=True)
class Posted:
    """A comment (or note) the bot wrote."""

    id: str
    url: str | None = None
    thread_id: str | None = None  # the review thread / discussion it opened, if any


@dataclass(frozen=True)
class DiffComment:
    """A comment for one line (or a range of lines) of a pull/merge request's diff."""

    path: str
    line: int
    body: str
    side: Literal["RIGHT", "LEFT"] = "RIGHT"  # RIGHT: the new file; LEFT: the old one
    start_line: int | None = None  # for a range: its first line; `line` is its last


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str  # added | modified | removed | renamed
    additions: int = 0
    deletions: int = 0
    previous_path: str | None = None
    patch: str | None = None


@dataclass(frozen=True)
class PullInfo:
    head_sha: str
    base_sha: str
    start_sha: str | None = None  # GitLab's diff_refs.start_sha
    title: str = ""
    state: str = "open"


@dataclass(frozen=True)
class CommitState:
    """A check run (GitHub) or commit status (GitLab) for a session."""

    sha: str
    name: str
    state: Literal["pending", "running", "success", "failure", "cancelled"]
    summary: str = ""
    url: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who the client acts as (for `threadline doctor`)."""

    login: str
    kind: str  # "app installation", "token", ...
    scopes: tuple[str, ...] = field(default=())


class HostClient(Protocol):
    """One host, one installation or token. Every method may raise HostError."""

    host: str
    capabilities: frozenset[str]

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        """Write a comment in `thread`: the conversation, or a reply in a review thread."""
        ...

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        """Replace the body of one of the bot's comments in `thread`."""
        ...

    async def find_comment(self, thread: ThreadRef, marker: str) -> Posted | None:
        """The newest comment in `thread` whose body contains `marker`, if any.

        For a pull/merge request's conversation (no thread_id) the search also covers its
        review threads when the conversation has no match, so a review whose response was
        lost can be found again; such a match carries its `thread_id`.
        """
        ...

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        """React to a comment (`eyes`, `+1`, `rocket`, ...); adding one twice is harmless."""
        ...

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """Open one review thread per comment on the pull/merge request's diff at `commit_sha`."""
        ...

    async def resolve_thread(self, thread: ThreadRef) -> None:
        """Mark a review thread / discussion resolved."""
        ...

    async def pull_info(self, pull: ThreadRef) -> PullInfo: ...

    async def changed_files(self, pull: ThreadRef) -> list[ChangedFile]: ...

    async def pull_diff(self, pull: ThreadRef) -> str:
        """The unified diff of the pull/merge request."""
        ...

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        """A file at `ref` (a commit, branch or tag); None: the default branch."""
        ...

    async def permission(self, repo: str, login: str) -> Permission:
        """The person's permission on the repository, in GitHub's vocabulary."""
        ...

    async def set_commit_state(self, repo: str, state: CommitState) -> None: ...

    async def whoami(self) -> Identity: ...


def can_write(permission: str) -> bool:
    return permission in WRITE_PERMISSIONS
