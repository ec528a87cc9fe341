"""What Threadline asks of a code review host, and the errors a host call can end in.

A `HostClient` is bound to one installation (GitHub) or one token (GitLab); callers get
one from `Hosts.client(host, installation_id)`. It holds only what callers use. What a
host cannot do is said by `capabilities`, and calling it raises `Unsupported`; nothing
is silently skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.events import ThreadRef
from bot.hosts.thread import CommentWindow, IssueDetails, PullDetails, ReviewAnchor
from bot.paths import path_problem, repo_path

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


class Conflict(HostError):
    """The write would clash with what is there: the branch already exists with other
    changes, or what it was to build on moved. Trying again will not help."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message, status=status)


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
    # Whether the head lives in another repository (a fork); None: the host did not say.
    from_fork: bool | None = None


@dataclass(frozen=True)
class CommitState:
    """A check run (GitHub) or commit status (GitLab) for a session."""

    sha: str
    name: str
    state: Literal["pending", "running", "success", "failure", "cancelled"]
    summary: str = ""
    url: str | None = None


REGULAR, EXECUTABLE, SYMLINK = "100644", "100755", "120000"
FILE_MODES = (REGULAR, EXECUTABLE, SYMLINK)


@dataclass(frozen=True)
class FileChange:
    """One file of a change set: its whole new content (any bytes), or None to delete it.

    `mode` is git's: 100644 a file, 100755 an executable, 120000 a symbolic link whose
    content is its target. None keeps the mode the file has at the base (100644 for a
    new file): change sets proposed as text say nothing of modes.
    """

    path: str  # relative to the repository's root, with "/" between directories
    content: bytes | None
    mode: str | None = None


@dataclass(frozen=True)
class Opened:
    """A pull/merge request the bot opened (or found already open)."""

    number: int  # GitHub's number, GitLab's iid
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

    # Reads for a session's context (bot.sessions.context): each may fail on its own.

    async def pull_details(self, pull: ThreadRef) -> PullDetails: ...

    async def issue_details(self, issue: ThreadRef) -> IssueDetails: ...

    async def thread_comments(self, thread: ThreadRef, *, newest: int) -> CommentWindow:
        """The newest comments (at most about `newest`) of the conversation, or of one
        review thread when `thread.thread_id` is set; the host's system notes left out."""
        ...

    async def review_anchor(self, thread: ThreadRef) -> ReviewAnchor:
        """Where the review thread `thread` sits on the diff."""
        ...

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        """A file at `ref` (a commit, branch or tag); None: the default branch."""
        ...

    async def permission(self, repo: str, login: str) -> Permission:
        """The person's permission on the repository, in GitHub's vocabulary."""
        ...

    async def set_commit_state(self, repo: str, state: CommitState) -> None: ...

    async def whoami(self) -> Identity: ...

    async def default_branch(self, repo: str) -> tuple[str, str]:
        """(name, head commit sha) of the repository's default branch."""
        ...

    async def commit_files(
        self,
        repo: str,
        *,
        branch: str,
        base_sha: str,
        changes: Sequence[FileChange],
        message: str,
        existing: bool = False,
    ) -> str:
        """Create the new branch `branch` at a new commit and return that commit's sha.

        `existing`: `branch` is there already, at `base_sha` (a pull/merge request the
        bot opened earlier); the new commit goes on top of it and the branch moves
        forward to it. A branch that moved elsewhere meanwhile raises Conflict.

        The commit's parent is `base_sha` and its files are base_sha's with `changes`
        applied. Calling again with the same arguments is safe: when `branch` already
        points at such a commit (an earlier call whose answer was lost), that commit is
        returned. A branch that exists with anything else raises Conflict; an unknown
        `base_sha` raises NotFound; a change set that does not fit the base (deleting a
        file that is not there) raises HostError before anything is written.
        """
        ...

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """Open a pull/merge request from branch `head` into `base`, or return the one
        already open for that pair (so calling again is safe)."""
        ...

    async def create_issue(self, repo: str, *, title: str, body: str) -> Opened:
        """Open a new issue in `repo` (a scheduled turn's thread); its number and page."""
        ...


def change_problems(changes: Sequence[FileChange]) -> list[str]:
    """What is wrong with a change set, in words to show; empty when nothing is.

    Paths are relative and plain (`bot.paths.repo_path`: no "." or ".." parts, no
    leading or doubled "/", no backslash or control character), each named once, and
    there is at least one change.
    """
    if not changes:
        return ["the change set is empty"]
    problems: list[str] = []
    seen: set[str] = set()
    for change in changes:
        path = change.path
        wrong = path_problem(path)
        if wrong is not None:
            problems.append(f"{path!r} is not a plain relative file path ({wrong})")
        elif ".git" in path.split("/"):
            problems.append(f"{path!r} is inside .git")
        if path in seen:
            problems.append(f"{path!r} is changed more than once")
        if change.mode is not None and change.mode not in FILE_MODES:
            problems.append(f"{path!r} has mode {change.mode}, not one of {', '.join(FILE_MODES)}")
        if change.content is None and change.mode is not None:
            problems.append(f"{path!r} is deleted and cannot have a mode")
        seen.add(path)
    for path in sorted(seen):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in seen:
                problems.append(f"{path!r} is inside {'/'.join(parts[:depth])!r}, also a file")
                break
    return problems


def check_comment_paths(comments: Sequence[DiffComment]) -> None:
    """Raise UnsafePath for a diff comment whose path is not a plain relative path."""
    for comment in comments:
        repo_path(comment.path)


def check_change_set(branch: str, changes: Sequence[FileChange]) -> None:
    """Raise HostError naming every problem of the branch name and the change set."""
    problems = change_problems(changes)
    wrong_branch = branch_problem(branch)
    if wrong_branch is not None:
        problems.insert(0, wrong_branch)
    if problems:
        raise HostError("the change set cannot be committed: " + "; ".join(problems))


def branch_problem(name: str) -> str | None:
    """Why `name` cannot be a branch (git's ref name rules, `git check-ref-format`), or None."""
    if not name or name.startswith(("/", "-")) or name.endswith(("/", ".", ".lock")):
        return f"{name!r} cannot be a branch name"
    if "//" in name or ".." in name or "@{" in name or name == "@":
        return f"{name!r} cannot be a branch name"
    if any(ord(c) < 32 or ord(c) == 127 or c in " ~^:?*[\\" for c in name):
        return f"{name!r} holds a character a branch name cannot"
    if any(part.startswith(".") for part in name.split("/")):
        return f"{name!r} has a part starting with '.'"
    return None


def can_write(permission: str) -> bool:
    return permission in WRITE_PERMISSIONS
