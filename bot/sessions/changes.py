"""Applying an approved change set through the host's API, without a local clone.

The change set was proposed against the default branch at `base_sha`. If the branch has
moved since, every file the change set touches is compared at both commits: one that
changed meanwhile is a conflict, reported and not forced; otherwise the change is
applied on top of the branch as it is now. The result is a new branch (named by the
template) and a pull/merge request into the default branch that links the thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.agents.config import DEFAULT_BRANCH_TEMPLATE
from bot.events import ThreadRef
from bot.hosts.base import REGULAR, FileChange, HostClient, HostError, NotFound
from bot.paths import path_problem
from bot.sessions.approvals import ChangeSetInfo, FileContent
from bot.sessions.protected import listing, refused

ISSUE_LINK = {"github": "Closes #{number}", "gitlab": "Closes #{number}"}
PULL_LINK = "From the discussion in !{number}"
BODY = (
    "{description}\n\n{link}\n\n"
    "Proposed by Threadline session `{session}` (agent `{agent}`), approved by @{approver}."
)


@dataclass(frozen=True)
class Applied:
    status: str  # applied | conflict | failed
    branch: str | None = None
    commit_sha: str | None = None
    pull_number: int | None = None
    pull_url: str | None = None
    error: str | None = None
    pushed: bool = False  # a new commit on the pull/merge request an earlier approval opened


def branch_name(template: str, thread: ThreadRef, session_id: str, change_id: int) -> str:
    kind = "issue" if thread.target == "issue" else "pr"
    return template.format(number=thread.number, session=session_id, change=change_id, kind=kind)


async def read_or_none(host: HostClient, repo: str, path: str, ref: str) -> bytes | None:
    """A file at `ref`, or None when it does not exist there."""
    try:
        return await host.read_file(repo, path, ref)
    except NotFound:
        return None


async def conflicts(host: HostClient, repo: str, change: ChangeSetInfo, head: str) -> list[str]:
    """The change set's files that changed on the branch between its base and `head`."""
    if head == change.base_sha:
        return []
    moved = []
    for item in change.files:
        if await read_or_none(host, repo, item.path, change.base_sha) != await read_or_none(
            host, repo, item.path, head
        ):
            moved.append(item.path)
    return moved


async def apply_change_set(
    host: HostClient,
    change: ChangeSetInfo,
    thread: ThreadRef,
    *,
    agent: str,
    approver: str,
    template: str = DEFAULT_BRANCH_TEMPLATE,
    allow_protected: frozenset[str] = frozenset(),
    earlier: ChangeSetInfo | None = None,
) -> Applied:
    """Apply `change` for `agent` (the one that proposed it), which may touch the kinds of
    protected paths in `allow_protected`. The paths are checked again here, before any
    request: the change set was stored earlier, and the configuration may have changed.

    `earlier`: the change set an earlier approval in the same line of work applied. While
    the pull/merge request it opened is open, this change is pushed to its branch as a
    new commit instead of opening another one."""
    repo = thread.repo
    paths = [item.path for item in change.files]
    for path in paths:
        wrong = path_problem(path)
        if wrong is not None:
            return Applied("failed", error=f"the change set names {path!r}: {wrong}")
    barred = refused(paths, allow_protected)
    if barred:
        return Applied(
            "failed",
            error=f"the change set touches protected paths ({listing(barred)}) that agent "
            f"`{agent}` may not change (allowProtectedPaths in the server's configuration)",
        )
    changes = [FileChange(item.path, item.data(), item.mode) for item in change.files]
    message = change.title + (f"\n\n{change.description}" if change.description else "")
    try:
        if earlier is not None:
            pushed = await push_to_earlier(
                host, thread, earlier, changes, message, base_sha=change.base_sha
            )
            if pushed is not None:
                return pushed
        default, head = await host.default_branch(repo)
        moved = await conflicts(host, repo, change, head)
        if moved:
            listed = ", ".join(f"`{path}`" for path in moved)
            return Applied(
                "conflict",
                error=f"{default} moved from {change.base_sha[:12]} to {head[:12]} and changed "
                f"{listed} meanwhile; the change set no longer applies",
            )
        branch = branch_name(template, thread, change.session_id, change.id)
        sha = await host.commit_files(
            repo, branch=branch, base_sha=head, changes=changes, message=message
        )
        link = (
            ISSUE_LINK.get(thread.host, "Closes #{number}")
            if thread.target == "issue"
            else PULL_LINK.replace("!", "#" if thread.host == "github" else "!")
        ).format(number=thread.number)
        body = BODY.format(
            description=change.description or change.title,
            link=link,
            session=change.session_id,
            agent=agent,
            approver=approver,
        )
        opened = await host.open_pull(
            repo, head=branch, base=default, title=change.title, body=body
        )
    except HostError as exc:
        return Applied("failed", error=f"the host refused: {exc}")
    return Applied("applied", branch, sha, opened.number, opened.url)


async def restorations(
    host: HostClient,
    repo: str,
    earlier: ChangeSetInfo,
    changes: list[FileChange],
    base_sha: str,
) -> list[FileChange]:
    """Changes that take each file of `earlier` that `changes` does not name back to
    `base_sha`: its content and mode there, or a deletion when it was not there."""
    named = {change.path for change in changes}
    back = []
    for item in earlier.files:
        if item.path in named:
            continue
        content = await read_or_none(host, repo, item.path, base_sha)
        back.append(
            FileChange(item.path, content, None if content is None else _mode_at_base(item))
        )
    return back


def _mode_at_base(item: FileContent) -> str | None:
    """The mode a file of an earlier change set had at the base: recorded when it was not
    a plain file; a plain file otherwise, which None keeps when the earlier change left
    the mode alone."""
    if item.base_mode is not None:
        return item.base_mode
    return None if item.mode is None else REGULAR


async def push_to_earlier(
    host: HostClient,
    thread: ThreadRef,
    earlier: ChangeSetInfo,
    changes: list[FileChange],
    message: str,
    *,
    base_sha: str,
) -> Applied | None:
    """A new commit on the branch of the pull/merge request `earlier` opened; None when
    that one is no longer open (a new one is opened instead).

    The branch ends as the base plus `changes`: a file of `earlier` that `changes` no
    longer names (the worktree took it back to the base) goes back to what it is at
    `base_sha`, or away if it was not there.

    The commit goes on the branch's head. If someone pushed to it after our commit, a
    file this change touches that they changed too is a conflict, reported, not forced.
    """
    assert earlier.pull_number is not None
    assert earlier.branch is not None
    repo = thread.repo
    pull = ThreadRef(thread.host, repo, "pull", earlier.pull_number)
    info = await host.pull_info(pull)
    if info.state != "open":
        return None
    head = info.head_sha
    changes = changes + await restorations(host, repo, earlier, changes, base_sha)
    if earlier.commit_sha and head != earlier.commit_sha:
        moved = []
        for item in changes:
            was = await read_or_none(host, repo, item.path, earlier.commit_sha)
            if was != await read_or_none(host, repo, item.path, head):
                moved.append(item.path)
        if moved:
            listed = ", ".join(f"`{path}`" for path in moved)
            return Applied(
                "conflict",
                error=f"branch {earlier.branch} of #{earlier.pull_number} moved to {head[:12]} "
                f"and changed {listed} meanwhile; the change set no longer applies",
            )
    sha = await host.commit_files(
        repo,
        branch=earlier.branch,
        base_sha=head,
        changes=changes,
        message=message,
        existing=True,
    )
    return Applied(
        "applied", earlier.branch, sha, earlier.pull_number, earlier.pull_url, pushed=True
    )
