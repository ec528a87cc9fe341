"""What a host says about a thread for a session's context: the pull/merge request or the
issue, the thread's newest comments, and where a review thread sits on the diff.

Plain values, made by each host adapter (bot/hosts/github, gitlab, local) and read by
bot.sessions.context, which decides what of it an agent sees. `hunk_at` is the one pure
helper: the diff hunk a line sits on, for hosts that do not hand it out (GitLab, the
playground); GitHub's review comments carry theirs as `diff_hunk`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# How many of a thread's comments an adapter reads at most, newest first: the context
# shows fewer (a token budget decides), so a thread of thousands costs a few pages.
NEWEST_COMMENTS = 300
HUNK_LIMIT = 6_000  # characters of a hunk kept (its end: the commented line is last)

_HUNK_HEAD = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class PullDetails:
    """A pull request (GitHub) or merge request (GitLab) as its page shows it."""

    title: str
    body: str
    author: str
    state: str  # open | closed | merged
    draft: bool
    labels: tuple[str, ...]
    base_ref: str
    head_ref: str
    base_sha: str
    head_sha: str
    url: str | None = None


@dataclass(frozen=True)
class IssueDetails:
    title: str
    body: str
    author: str
    state: str
    labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    url: str | None = None


@dataclass(frozen=True)
class ThreadComment:
    """One comment of a thread. `ours`: written by the login Threadline acts as."""

    id: str
    author: str
    created_at: str  # as the host wrote it (ISO 8601)
    body: str
    ours: bool = False


@dataclass(frozen=True)
class CommentWindow:
    """A thread's newest comments (oldest first) and how many the thread holds in all
    (None when the host did not say)."""

    comments: tuple[ThreadComment, ...]
    total: int | None = None

    @property
    def left_out(self) -> int:
        """Older comments the host holds that were not read."""
        return max(0, (self.total or 0) - len(self.comments))


@dataclass(frozen=True)
class ReviewAnchor:
    """Where a review thread sits: the file, its line (or lines) and the hunk."""

    path: str
    line: int | None
    start_line: int | None = None
    side: str = "RIGHT"  # RIGHT: the new file; LEFT: the old one
    hunk: str = ""
    outdated: bool = False  # the line is no longer in the current diff


def hunk_at(patch: str, line: int | None, side: str = "RIGHT") -> str:
    """The hunk of one file's `patch` holding `line` (of the new file, or of the old one
    for side LEFT), cut after that line as GitHub's `diff_hunk` is; "" when none does."""
    if line is None:
        return ""
    kept: list[str] = []
    old = new = 0
    found = False
    for text in patch.splitlines():
        head = _HUNK_HEAD.match(text)
        if head is not None:
            old, new = int(head.group(1)), int(head.group(2))
            kept = [text]
            continue
        if not kept or text.startswith("\\"):
            continue
        kept.append(text)
        mark = text[:1]
        if mark == "-":
            found = side == "LEFT" and old == line
            old += 1
        elif mark == "+":
            found = side != "LEFT" and new == line
            new += 1
        else:  # a line both sides have
            found = (old if side == "LEFT" else new) == line
            old, new = old + 1, new + 1
        if found:
            break
    if not found:
        return ""
    hunk = "\n".join(kept)
    return hunk if len(hunk) <= HUNK_LIMIT else kept[0] + "\n" + hunk[-HUNK_LIMIT:]
