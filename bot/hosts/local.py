"""The `local` host: the playground, whose threads live in Threadline's own database.

`LocalHost` is a HostClient like the GitHub and GitLab adapters, but its "API" is the
playground tables (bot/hosts/local_store.py). The outbox sends the bot's writes here;
people write through the playground pages, which also send a signed webhook to
`/webhooks/local`, so their comments take the same path as any host's.

The bot's own writes send no webhook: on GitHub they would come back and be dropped as
the bot's own (`bot.events.drop_reason`), which is all a delivery of them could do.

Commit states are recorded (`playground_commit_states`) and shown on the page. Commit
ids are git's (bot/hosts/local_objects.py), and the web server serves the repositories
over git (bot/hosts/local_git.py), so workspaces clone playground threads like any host's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import Engine

from bot.diffs import file_patch, parse_diff
from bot.events import ThreadRef
from bot.hosts.base import (
    COMMIT_STATUSES,
    EXECUTABLE,
    REACTIONS,
    REGULAR,
    RESOLVE_THREADS,
    ChangedFile,
    CommitState,
    Conflict,
    DiffComment,
    FileChange,
    HostError,
    Identity,
    NotFound,
    Opened,
    Permission,
    Posted,
    PullInfo,
    check_change_set,
    check_comment_paths,
)
from bot.hosts.local_store import (
    CommentInfo,
    PlaygroundError,
    PlaygroundStore,
    comment_url,
    pull_url,
)
from bot.hosts.thread import (
    CommentWindow,
    IssueDetails,
    PullDetails,
    ReviewAnchor,
    ThreadComment,
    hunk_at,
)
from bot.paths import repo_path

T = TypeVar("T")

# The reactions the playground shows (GitHub's set).
REACTION_CONTENTS = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)
_PERMISSIONS: dict[str, Permission] = {
    "none": "none",
    "read": "read",
    "triage": "triage",
    "write": "write",
    "maintain": "maintain",
    "admin": "admin",
}


def _id(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NotFound(f"the playground has no {what} {value!r}") from None


def _thread_id(thread: ThreadRef) -> int | None:
    return None if thread.thread_id is None else _id(thread.thread_id, "review thread")


def _posted(comment: CommentInfo) -> Posted:
    thread = None if comment.thread_id is None else str(comment.thread_id)
    return Posted(id=str(comment.id), url=comment_url(comment.id, comment.number), thread_id=thread)


class LocalHost:
    """The HostClient of the playground, acting as the bot user `bot_login`."""

    host = "local"
    capabilities = frozenset({REACTIONS, RESOLVE_THREADS, COMMIT_STATUSES})

    def __init__(self, store: PlaygroundStore, bot_login: str) -> None:
        self.store = store
        self.bot_login = bot_login

    @classmethod
    def over(cls, engine: Engine, bot_login: str) -> LocalHost:
        return cls(PlaygroundStore(engine), bot_login)

    async def _run(self, call: Callable[[], T]) -> T:
        """Run one store call off the event loop, its errors turned into host errors."""
        try:
            return await asyncio.to_thread(call)
        except PlaygroundError as exc:
            if exc.status == 404:
                raise NotFound(str(exc)) from exc
            if exc.status == 409:
                raise Conflict(str(exc)) from exc
            raise HostError(str(exc), status=exc.status, retryable=exc.status >= 500) from exc

    def _check(self, thread: ThreadRef) -> None:
        if thread.host != "local":
            raise HostError(f"{thread.key} is not a playground thread")

    # -------------------------------------------------------------- comments

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        self._check(thread)
        made = await self._run(
            lambda: self.store.add_comment(
                thread.repo, thread.number, self.bot_login, body, thread_id=_thread_id(thread)
            )
        )
        return _posted(made)

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        self._check(thread)
        cid = _id(comment_id, "comment")
        await self._run(lambda: self.store.edit_comment(cid, body, by=self.bot_login))

    async def find_comment(self, thread: ThreadRef, marker: str) -> Posted | None:
        self._check(thread)
        tid = _thread_id(thread)
        comments = await self._run(
            lambda: self.store.thread_comments(thread.repo, thread.number, tid)
        )
        match = _newest(c for c in comments if marker in c.body)
        if match is not None or tid is not None or thread.target != "pull":
            return None if match is None else _posted(match)
        # A review whose answer was lost: its first comment carries the marker.
        reviewed = await self._run(lambda: self.store.review_comments(thread.repo, thread.number))
        match = _newest(c for c in reviewed if marker in c.body)
        return None if match is None else _posted(match)

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        self._check(thread)
        if reaction not in REACTION_CONTENTS:
            raise HostError(f"the playground has no reaction {reaction!r}")
        cid = _id(comment_id, "comment")
        await self._run(lambda: self.store.add_reaction(cid, self.bot_login, reaction))

    # -------------------------------------------------------------- reviews

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """One review holding a new review thread per comment (refused whole if one line
        is not in the diff, as GitHub does)."""
        self._check(pull)
        check_comment_paths(comments)
        if not comments and not body.strip():
            return []
        wanted = [(c.path, c.line, c.side, c.body) for c in comments]
        _, opened = await self._run(
            lambda: self.store.create_review(
                pull.repo,
                pull.number,
                self.bot_login,
                state="commented",
                body=body,
                commit_sha=commit_sha,
                comments=wanted,
            )
        )
        return [_posted(comment) for _, comment in opened]

    async def resolve_thread(self, thread: ThreadRef) -> None:
        self._check(thread)
        tid = _thread_id(thread)
        if tid is None:
            raise HostError(f"{thread.key} is not a review thread")
        await self._run(lambda: self.store.resolve(tid))

    # -------------------------------------------------------------- pull requests

    async def pull_info(self, pull: ThreadRef) -> PullInfo:
        self._check(pull)
        row = await self._run(lambda: self.store.pull(pull.repo, pull.number))
        if row is None:
            raise NotFound(f"the playground has no pull request {pull.repo}#{pull.number}")
        return PullInfo(
            head_sha=row.head_sha,
            base_sha=row.base_sha,
            title=row.title,
            state=row.state,
            from_fork=False,  # the playground's pull requests are branches of its one repository
        )

    async def changed_files(self, pull: ThreadRef) -> list[ChangedFile]:
        info = await self.pull_info(pull)
        base, head = await asyncio.gather(
            self._run(lambda: self.store.files(pull.repo, info.base_sha)),
            self._run(lambda: self.store.files(pull.repo, info.head_sha)),
        )
        changed = []
        for path in sorted(set(base) | set(head)):
            before, after = base.get(path), head.get(path)
            if before == after:
                continue
            patch = file_patch(path, before, after)
            [parsed] = parse_diff(f"diff --git a/{path} b/{path}\n{patch}")
            status = "added" if before is None else "removed" if after is None else "modified"
            changed.append(
                ChangedFile(
                    path=path,
                    status=status,
                    additions=parsed.additions,
                    deletions=parsed.deletions,
                    patch=patch.split("\n", 2)[2] if patch.count("\n") >= 2 else patch,
                )
            )
        return changed

    async def pull_diff(self, pull: ThreadRef) -> str:
        self._check(pull)
        row = await self._run(lambda: self.store.pull(pull.repo, pull.number))
        if row is None:
            raise NotFound(f"the playground has no pull request {pull.repo}#{pull.number}")
        return row.diff

    # -------------------------------------------------------------- context reads

    async def pull_details(self, pull: ThreadRef) -> PullDetails:
        self._check(pull)
        row = await self._run(lambda: self.store.pull(pull.repo, pull.number))
        if row is None:
            raise NotFound(f"the playground has no pull request {pull.repo}#{pull.number}")
        return PullDetails(
            title=row.title,
            body=row.body,
            author=row.author,
            state=row.state,
            draft=False,  # the playground has no drafts nor labels
            labels=(),
            base_ref=row.base_ref,
            head_ref=row.head_ref,
            base_sha=row.base_sha,
            head_sha=row.head_sha,
            url=pull_url(row.number),
        )

    async def issue_details(self, issue: ThreadRef) -> IssueDetails:
        raise NotFound(f"the playground has pull requests only, not issue {issue.key}")

    async def thread_comments(self, thread: ThreadRef, *, newest: int) -> CommentWindow:
        self._check(thread)
        tid = _thread_id(thread)
        rows = await self._run(lambda: self.store.thread_comments(thread.repo, thread.number, tid))
        kept = [c for c in rows if c.deleted_at is None]
        comments = tuple(
            ThreadComment(
                id=str(c.id),
                author=c.author,
                created_at=c.created_at.isoformat(),
                body=c.body,
                ours=c.author == self.bot_login,
            )
            for c in kept[-newest:]
        )
        return CommentWindow(comments, len(kept))

    async def review_anchor(self, thread: ThreadRef) -> ReviewAnchor:
        self._check(thread)
        tid = _thread_id(thread)
        if tid is None:
            raise HostError(f"{thread.key} is not a review thread")
        found = await self._run(lambda: self.store.thread(tid))
        if found is None:
            raise NotFound(f"the playground has no review thread {tid}")
        patch = next(
            (f.patch or "" for f in await self.changed_files(thread) if f.path == found.path), ""
        )
        hunk = hunk_at(patch, found.line, found.side)
        return ReviewAnchor(found.path, found.line, None, found.side, hunk, outdated=not hunk)

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        repo_path(path)  # before the store is asked: no path climbs out of the repository
        text = await self._run(lambda: self.store.read_file(repo, path, ref))
        if text is None:
            where = ref or "the default branch"
            raise NotFound(f"the playground has no file {repo}:{path} at {where}")
        return text.encode("utf-8")

    async def permission(self, repo: str, login: str) -> Permission:
        """The user's permission from the playground's users; unknown people have none."""
        user = await self._run(lambda: self.store.user(login))
        return "none" if user is None else _PERMISSIONS.get(user.permission, "none")

    async def set_commit_state(self, repo: str, state: CommitState) -> None:
        await self._run(
            lambda: self.store.set_commit_state(
                repo, state.sha, state.name, state.state, state.summary, state.url
            )
        )

    async def whoami(self) -> Identity:
        return Identity(login=self.bot_login, kind="playground")

    # -------------------------------------------------------------- branches and changes

    async def default_branch(self, repo: str) -> tuple[str, str]:
        return await self._run(lambda: self.store.default_branch(repo))

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
        """A commit on a new playground branch (`existing`: on top of that branch); the
        playground keeps plain text files only, no executables or symbolic links."""
        check_change_set(branch, changes)
        texts: list[tuple[str, str | None]] = []
        for change in changes:
            if change.mode not in (None, REGULAR):
                kind = "an executable" if change.mode == EXECUTABLE else "a symbolic link"
                raise HostError(
                    f"the playground keeps plain files only; the change set makes "
                    f"{change.path} {kind}"
                )
            if change.content is None:
                texts.append((change.path, None))
                continue
            try:
                texts.append((change.path, change.content.decode("utf-8")))
            except UnicodeDecodeError:
                raise HostError(
                    f"the playground keeps text files only; {change.path} is not UTF-8"
                ) from None
        return await self._run(
            lambda: self.store.commit_files(
                repo,
                branch=branch,
                base_sha=base_sha,
                changes=texts,
                message=message,
                author=self.bot_login,
                existing=existing,
            )
        )

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """A playground pull request, linked to its page (/playground?pr=N)."""
        row = await self._run(
            lambda: self.store.open_pull(
                repo, head=head, base=base, title=title, body=body, author=self.bot_login
            )
        )
        return Opened(number=row.number, url=pull_url(row.number))

    async def create_issue(self, repo: str, *, title: str, body: str) -> Opened:
        """A playground issue: a conversation of its own, with no branches or diff."""
        row = await self._run(
            lambda: self.store.open_issue(repo, title=title, body=body, author=self.bot_login)
        )
        return Opened(number=row.number, url=pull_url(row.number))


def _newest(comments: Iterable[CommentInfo]) -> CommentInfo | None:
    newest: CommentInfo | None = None
    for comment in comments:
        if comment.deleted_at is None and (newest is None or comment.id > newest.id):
            newest = comment
    return newest
