"""The GitLab host adapter: `HostClient` over GitLab's REST API v4, through python-gitlab.

python-gitlab is blocking, so every call runs in a worker thread (`asyncio.to_thread`);
one `gitlab.Gitlab` (one `requests.Session`) per client is reused by all of them. The
adapter uses python-gitlab's HTTP layer (`http_get`, `http_post`, `http_list`, ...) with
the paths written out as GitLab's API pages give them, so each method can be checked
against its page; python-gitlab supplies authentication, the base URL (with a
self-managed path prefix), JSON encoding and `Link`-header pagination.

python-gitlab never retries on its own here (`retry_transient_errors=False`,
`obey_rate_limit=False`, `max_retries=0`): retries belong to the outbox, which knows
whether a write may already have happened. Every failure is turned into one of
bot/hosts/base.py's exceptions by `map_error`; GitLab's exceptions carry no response
headers, so a `requests` response hook keeps the last response of each worker thread
for `Retry-After` and `RateLimit-*`.

Vocabulary: the conversation of an issue / merge request (`thread_id` None) is its
notes; a review thread is a discussion (`thread_id` = the discussion id).
Needs GitLab 15.7 or later (the merge request `diffs` endpoint).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabHttpError, GitlabParsingError, RedirectError
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts.base import (
    COMMIT_STATUSES,
    REACTIONS,
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
    RateLimited,
    Unauthorized,
    Unsupported,
    check_change_set,
    check_comment_paths,
)
from bot.paths import quote_whole, repo_path

log = logging.getLogger(__name__)

T = TypeVar("T")

CAPABILITIES: Final = frozenset({RESOLVE_THREADS, COMMIT_STATUSES, REACTIONS})

# GitHub's reaction names -> GitLab's award emoji names; anything else is passed as is.
# https://docs.github.com/en/rest/reactions/reactions#about-reactions
REACTION_NAMES: Final[Mapping[str, str]] = {
    "+1": "thumbsup",
    "-1": "thumbsdown",
    "laugh": "laughing",
    "hooray": "tada",
    "confused": "confused",
    "heart": "heart",
    "rocket": "rocket",
    "eyes": "eyes",
}

# CommitState.state -> the `state` of https://docs.gitlab.com/api/commits/ (commit status)
COMMIT_STATES: Final[Mapping[str, str]] = {
    "pending": "pending",
    "running": "running",
    "success": "success",
    "failure": "failed",
    "cancelled": "canceled",
}

# GitLab's merge request states (opened, closed, locked, merged) in our words; `locked`
# is the short moment while a merge is being carried out, still open.
MR_STATES: Final[Mapping[str, str]] = {"opened": "open", "locked": "open"}

# Users whose membership does not count (https://docs.gitlab.com/api/users/ `state`).
INACTIVE_USER_STATES: Final = frozenset(
    {"blocked", "banned", "ldap_blocked", "blocked_pending_approval"}
)

_DETAIL_LIMIT = 300  # characters of GitLab's error text kept in our messages
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
# GitLab refuses to post a status that is already the current one, e.g.
# "Cannot transition status via :run from :running".
_SAME_STATE = re.compile(r"Cannot transition status via :\w+ from :(\w+)")


# ---------------------------------------------------------------- pure helpers


def project_id(repo: str) -> str:
    """The project's full path as the `:id` of a URL.

    https://docs.gitlab.com/api/rest/#namespaced-paths: `group/sub/project` is sent
    URL-encoded, slashes included.
    """
    return quote(repo, safe="")


def permission_for(access_level: int) -> Permission:
    """A GitLab role's access level in GitHub's permission words.

    Access levels (https://docs.gitlab.com/api/members/): 5 Minimal access, 10 Guest,
    15 Planner, 20 Reporter, 30 Developer, 40 Maintainer, 50 Owner. Planner and
    Reporter manage issues and labels without pushing, which is what GitHub's `triage`
    is; Guest and Minimal access only read. Developer and up write; Maintainer is
    GitHub's `maintain`, Owner its `admin`.
    """
    if access_level >= 50:
        return "admin"
    if access_level >= 40:
        return "maintain"
    if access_level >= 30:
        return "write"
    if access_level >= 15:
        return "triage"
    if access_level > 0:
        return "read"
    return "none"


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds GitLab asked us to wait, from a 429's headers.

    https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/#response-headers:
    `Retry-After` (seconds) first, else `RateLimit-Reset` (a Unix time) once
    `RateLimit-Remaining` has reached 0.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    value = lowered.get("retry-after", "").strip()
    if value:
        seconds = _seconds_from(value, now)
        if seconds is not None:
            return max(0.0, seconds)
    remaining = lowered.get("ratelimit-remaining", "").strip()
    reset = lowered.get("ratelimit-reset", "").strip()
    if remaining == "0" and reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


def _seconds_from(value: str, now: float) -> float | None:
    """A Retry-After value: delay seconds, or an HTTP date (RFC 9110 allows both)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError):
        return None


def map_error(
    exc: Exception,
    headers: Mapping[str, str],
    *,
    write: bool,
    what: str,
    secret: str | None = None,
    now: float | None = None,
) -> HostError:
    """The one place a failed GitLab call becomes a bot/hosts/base.py exception.

    `write`: the call could change something, so a failure after the request went out
    is `ambiguous` (the outbox looks for the write's marker before trying again).
    `secret` is removed from any text that came from the server.
    """
    if isinstance(exc, GitlabError) and exc.response_code is not None:
        return _status_error(exc.response_code, _detail(exc, secret), headers, write, what, now)
    if isinstance(exc, requests.ConnectTimeout) or _never_connected(exc):
        # Nothing was sent: trying again is safe even for a write.
        return HostError(f"could not reach GitLab to {what}: {_kind(exc)}", retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return HostError(
            f"TLS with GitLab failed while trying to {what}; check its certificate "
            "(or the CA bundle) if this persists",
            retryable=True,
            ambiguous=write,
        )
    if isinstance(exc, requests.Timeout):
        return HostError(
            f"GitLab did not answer in time to {what}", retryable=True, ambiguous=write
        )
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return HostError(
            f"the connection to GitLab broke off while trying to {what}: {_kind(exc)}",
            retryable=True,
            ambiguous=write,
        )
    if isinstance(exc, RedirectError):
        return HostError(
            f"GitLab redirected the request to {what}; set THREADLINE_GITLAB_URL to the "
            "address GitLab redirects to (often https:// instead of http://)"
        )
    if isinstance(exc, GitlabParsingError):
        # A 2xx with a body that is not JSON: a proxy page, most likely. A write may be done.
        return HostError(
            f"GitLab's answer to {what} could not be read", ambiguous=write, retryable=False
        )
    return HostError(f"GitLab call to {what} failed: {_kind(exc)}")


def _status_error(
    status: int,
    detail: str,
    headers: Mapping[str, str],
    write: bool,
    what: str,
    now: float | None,
) -> HostError:
    message = f"GitLab refused to {what}: HTTP {status} {detail}".rstrip()
    if status == 429:
        wait = retry_after(headers, time.time() if now is None else now)
        return RateLimited(message, status=status, retry_after=wait)
    if status == 401:
        return Unauthorized(message, status=status)
    if status == 404:
        return NotFound(message)
    if status >= 500:
        return HostError(message, status=status, retryable=True, ambiguous=write)
    if status == 409 and "resource lock" in detail.lower():
        # GitLab's optimistic lock on the row: nothing was written, the next try may pass.
        return HostError(message, status=status, retryable=True)
    return HostError(message, status=status)


def _detail(exc: GitlabError, secret: str | None) -> str:
    text = str(exc.error_message).strip()
    if secret:
        text = text.replace(secret, "[token]")
    return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "..."


def _kind(exc: Exception) -> str:
    """Name the failure without echoing exception text (which carries URLs and hosts)."""
    reason = _root_reason(exc)
    return type(exc).__name__ if reason is None else f"{type(exc).__name__} ({reason})"


def _root_reason(exc: Exception) -> str | None:
    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return type(cause).__name__ if isinstance(cause, BaseException) else None


def _never_connected(exc: Exception) -> bool:
    """True when the request failed before any byte of it was sent (refused, DNS, connect)."""
    if not isinstance(exc, requests.ConnectionError):
        return False
    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, NewConnectionError | ConnectTimeoutError)


# ---------------------------------------------------------------- diffs and positions


@dataclass(frozen=True)
class DiffLine:
    """One line of a file's diff, with GitLab's old and new line counters at that line.

    For an added line `old` is the old file's counter there (the next old line), for a
    removed line `new` likewise; that is how GitLab builds line codes.
    """

    kind: Literal["added", "removed", "unchanged"]
    old: int
    new: int

    def position_lines(self) -> dict[str, int]:
        """`old_line` / `new_line` as https://docs.gitlab.com/api/discussions/ asks:
        only `new_line` for an added line, only `old_line` for a removed one, both for
        an unchanged one."""
        lines = {}
        if self.kind != "added":
            lines["old_line"] = self.old
        if self.kind != "removed":
            lines["new_line"] = self.new
        return lines


def locate(diff: str, side: Literal["RIGHT", "LEFT"], line: int) -> DiffLine:
    """Find `line` of the new (RIGHT) or old (LEFT) file in a file's diff hunks.

    Lines outside every hunk are unchanged; their other number follows from the lines
    the hunks before them added and removed.
    """
    old = new = 0
    shift = 0  # new minus old, for unchanged lines after the hunks read so far
    for text in diff.splitlines():
        header = _HUNK.match(text)
        if header:
            hunk_old, hunk_new = int(header[1]), int(header[2])
            if side == "RIGHT" and line < hunk_new:
                return DiffLine("unchanged", line - shift, line)
            if side == "LEFT" and line < hunk_old:
                return DiffLine("unchanged", line, line + shift)
            old, new = hunk_old, hunk_new
            continue
        if text.startswith("\\"):  # "\ No newline at end of file"
            continue
        if text.startswith("+"):
            if side == "RIGHT" and new == line:
                return DiffLine("added", old, new)
            new += 1
        elif text.startswith("-"):
            if side == "LEFT" and old == line:
                return DiffLine("removed", old, new)
            old += 1
        else:
            if (new if side == "RIGHT" else old) == line:
                return DiffLine("unchanged", old, new)
            old += 1
            new += 1
        shift = new - old
    if side == "RIGHT":
        return DiffLine("unchanged", line - shift, line)
    return DiffLine("unchanged", line, line + shift)


def line_code(path: str, line: DiffLine) -> str:
    """https://docs.gitlab.com/api/discussions/#line-code: `<SHA1 of path>_<old>_<new>`."""
    digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()
    return f"{digest}_{line.old}_{line.new}"


def position_for(
    comment: DiffComment, diff_file: Mapping[str, Any], refs: Mapping[str, str]
) -> dict[str, Any]:
    """The `position` of a new merge request discussion on `comment`'s line(s).

    https://docs.gitlab.com/api/discussions/#create-a-new-thread-in-the-merge-request-diff:
    position_type `text`, the three SHAs of the merge request's `diff_refs`, both paths,
    and for a range `line_range` with the line codes of its first and last line.
    """
    diff = str(diff_file.get("diff") or "")
    path = str(diff_file["new_path"])
    end = locate(diff, comment.side, comment.line)
    position: dict[str, Any] = {
        "position_type": "text",
        "base_sha": refs["base_sha"],
        "start_sha": refs["start_sha"],
        "head_sha": refs["head_sha"],
        "old_path": diff_file["old_path"],
        "new_path": path,
        **end.position_lines(),
    }
    if comment.start_line is not None and comment.start_line != comment.line:
        start = locate(diff, comment.side, comment.start_line)
        position["line_range"] = {
            "start": _range_end(path, start),
            "end": _range_end(path, end),
        }
    return position


def _range_end(path: str, line: DiffLine) -> dict[str, Any]:
    # "Use `new` for lines added by this commit, otherwise `old`."
    kind = "new" if line.kind == "added" else "old"
    return {"line_code": line_code(path, line), "type": kind, **line.position_lines()}


def changed_file(diff_file: Mapping[str, Any]) -> ChangedFile:
    """One entry of https://docs.gitlab.com/api/merge_requests/#list-merge-request-diffs."""
    patch = str(diff_file.get("diff") or "")
    lines = patch.splitlines()
    renamed = bool(diff_file.get("renamed_file"))
    return ChangedFile(
        path=str(diff_file["new_path"]),
        status=_file_status(diff_file),
        # GitLab's `diff` starts at the first hunk, so every +/- line is a change.
        additions=sum(1 for text in lines if text.startswith("+")),
        deletions=sum(1 for text in lines if text.startswith("-")),
        previous_path=str(diff_file["old_path"]) if renamed else None,
        patch=patch or None,
    )


def _file_status(diff_file: Mapping[str, Any]) -> str:
    if diff_file.get("new_file"):
        return "added"
    if diff_file.get("deleted_file"):
        return "removed"
    if diff_file.get("renamed_file"):
        return "renamed"
    return "modified"


def unified_diff(diff_files: Sequence[Mapping[str, Any]]) -> str:
    """A git-style unified diff from the merge request's per-file diffs.

    GitLab's `raw_diffs` endpoint would give this directly, but only from GitLab 17.9;
    the per-file `diff` fields lack the file headers, so they are written here.
    """
    return "".join(_file_diff(diff_file) for diff_file in diff_files)


def _file_diff(diff_file: Mapping[str, Any]) -> str:
    old, new = diff_file["old_path"], diff_file["new_path"]
    added, removed = bool(diff_file.get("new_file")), bool(diff_file.get("deleted_file"))
    a_mode, b_mode = diff_file.get("a_mode"), diff_file.get("b_mode")
    lines = [f"diff --git a/{old} b/{new}"]
    if added:
        lines.append(f"new file mode {b_mode or '100644'}")
    elif removed:
        lines.append(f"deleted file mode {a_mode or '100644'}")
    elif a_mode and b_mode and a_mode != b_mode:
        lines += [f"old mode {a_mode}", f"new mode {b_mode}"]
    if diff_file.get("renamed_file"):
        lines += [f"rename from {old}", f"rename to {new}"]
    body = str(diff_file.get("diff") or "")
    if body:
        lines.append("--- /dev/null" if added else f"--- a/{old}")
        lines.append("+++ /dev/null" if removed else f"+++ b/{new}")
        if not body.endswith("\n"):
            body += "\n"
    return "\n".join(lines) + "\n" + body


# ---------------------------------------------------------------- the client


class GitLabClient:
    """`HostClient` for one GitLab instance and one token (personal, project or group)."""

    host: str = "gitlab"
    capabilities: frozenset[str] = CAPABILITIES

    def __init__(self, url: str, token: str, *, timeout: float) -> None:
        self._web_url = url.rstrip("/")
        self._token = token
        self._gl = gitlab.Gitlab(
            self._web_url,
            private_token=token,
            timeout=timeout,
            retry_transient_errors=False,
            # A self-managed GitLab behind a proxy may put another host name in its
            # pagination links; keep talking to the address we were given.
            keep_base_url=True,
            user_agent=f"threadline python-gitlab/{gitlab.__version__}",
        )
        self._last = threading.local()
        self._gl.session.hooks["response"].append(self._remember)
        self._username: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> GitLabClient:
        if not settings.gitlab_token:
            raise ValueError("THREADLINE_GITLAB_TOKEN is not set")
        return cls(
            settings.gitlab_url, settings.gitlab_token, timeout=settings.host_timeout_seconds
        )

    def close(self) -> None:
        self._gl.session.close()

    # ------------------------------------------------------------ HostClient

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        note = await self._write(
            "post a comment", self._post, self._notes_path(thread), {"body": body}
        )
        return self._posted(thread, note, thread.thread_id)

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        path = f"{self._notes_path(thread)}/{quote(comment_id, safe='')}"
        await self._write("edit a comment", self._put, path, {"body": body})

    async def find_comment(self, thread: ThreadRef, marker: str) -> Posted | None:
        if thread.thread_id is None:
            return await self._read("look for a comment", self._find_note, thread, marker)
        return await self._read(
            "look for a comment", self._find_in_discussion, thread, thread.thread_id, marker
        )

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        # https://docs.gitlab.com/api/emoji_reactions/ ("award emoji"), on a comment
        path = f"{self._noteable(thread)}/notes/{quote(comment_id, safe='')}/award_emoji"
        name = REACTION_NAMES.get(reaction, reaction)
        await self._write("add a reaction", self._award, path, name)

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """One discussion per comment, then `body` (if any) as a note on the merge request.

        If a later write fails after earlier ones succeeded, the error is `ambiguous`, so
        the caller looks for the first comment's marker before trying the review again.
        """
        _require_pull(pull, "create a review")
        check_comment_paths(comments)
        mr = await self._read("read the merge request", self._merge_request, pull)
        refs = _diff_refs(mr)
        if commit_sha != refs["head_sha"]:
            raise HostError(
                f"the review is for {commit_sha[:12]} but the merge request's head is now "
                f"{refs['head_sha'][:12]}; its line numbers may no longer fit"
            )
        files = (
            await self._read("read the merge request's diffs", self._diffs, pull)
            if comments
            else []
        )
        payloads = [
            {"body": c.body, "position": position_for(c, _file_of(files, c.path), refs)}
            for c in comments
        ]
        posted: list[Posted] = []
        path = f"{self._noteable(pull)}/discussions"
        try:
            for payload in payloads:
                discussion = await self._write("open a review thread", self._post, path, payload)
                posted.append(self._posted(pull, discussion["notes"][0], str(discussion["id"])))
            if body:
                await self._write(
                    "post the review summary", self._post, self._notes_path(pull), {"body": body}
                )
        except HostError as exc:
            exc.ambiguous = exc.ambiguous or bool(posted)
            raise
        return posted

    async def resolve_thread(self, thread: ThreadRef) -> None:
        # https://docs.gitlab.com/api/discussions/#resolve-a-merge-request-thread; issue
        # threads cannot be resolved.
        if thread.target != "pull":
            raise Unsupported("GitLab resolves threads on merge requests only, not on issues")
        if thread.thread_id is None:
            raise HostError("resolve_thread needs a discussion, not the whole conversation")
        path = f"{self._noteable(thread)}/discussions/{quote(thread.thread_id, safe='')}"
        await self._write("resolve a thread", self._put, path, None, {"resolved": "true"})

    async def pull_info(self, pull: ThreadRef) -> PullInfo:
        _require_pull(pull, "read a merge request")
        mr = await self._read("read the merge request", self._merge_request, pull)
        refs = _diff_refs(mr)
        return PullInfo(
            head_sha=refs["head_sha"],
            base_sha=refs["base_sha"],
            start_sha=refs["start_sha"],
            title=str(mr.get("title") or ""),
            state=MR_STATES.get(str(mr.get("state")), str(mr.get("state"))),
            from_fork=_from_fork(mr),
        )

    async def changed_files(self, pull: ThreadRef) -> list[ChangedFile]:
        _require_pull(pull, "list changed files")
        files = await self._read("read the merge request's diffs", self._diffs, pull)
        return [changed_file(f) for f in files]

    async def pull_diff(self, pull: ThreadRef) -> str:
        _require_pull(pull, "read a diff")
        files = await self._read("read the merge request's diffs", self._diffs, pull)
        return unified_diff(files)

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        # https://docs.gitlab.com/api/repository_files/ (raw file; no ref: the default branch)
        url = f"{self._file_path(repo, path)}/raw"
        params = {} if ref is None else {"ref": ref}
        return await self._read("read a file", self._get_bytes, url, params)

    async def permission(self, repo: str, login: str) -> Permission:
        return await self._read("look up a permission", self._permission, repo, login)

    async def set_commit_state(self, repo: str, state: CommitState) -> None:
        # https://docs.gitlab.com/api/commits/ (commit status)
        target = COMMIT_STATES[state.state]
        payload = {"state": target, "name": state.name}
        if state.summary:
            payload["description"] = state.summary
        if state.url:
            payload["target_url"] = state.url
        path = f"/projects/{project_id(repo)}/statuses/{quote(state.sha, safe='')}"
        await self._write("set a commit status", self._post_status, path, payload, target)

    async def whoami(self) -> Identity:
        return await self._read("say who the token belongs to", self._identity)

    # ------------------------------------------------------------ branches and changes

    async def default_branch(self, repo: str) -> tuple[str, str]:
        return await self._read("read the default branch", self._default_branch, repo)

    async def commit_files(
        self,
        repo: str,
        *,
        branch: str,
        base_sha: str,
        changes: Sequence[FileChange],
        message: str,
    ) -> str:
        """One commit with an action per file, on a new branch started at `base_sha`.

        https://docs.gitlab.com/api/commits/#create-a-commit-with-multiple-files-and-actions
        With `start_sha`, GitLab creates `branch` from that commit, and refuses (400) when
        the branch exists already. Each file's action is `create` or `update` by whether
        it exists at `base_sha` (GitLab refuses the other), `delete` for a removal.
        Contents go base64-encoded, so any bytes pass unchanged. Modes are GitLab's to
        keep: an update leaves an executable executable.
        """
        check_change_set(branch, changes)
        actions = await self._read(
            "look at the files to change", self._actions, repo, base_sha, changes
        )
        payload = {
            "branch": branch,
            "start_sha": base_sha,
            "commit_message": message,
            "actions": actions,
        }
        path = f"/projects/{project_id(repo)}/repository/commits"
        try:
            made = await self._write("create a commit", self._post, path, payload)
        except HostError as exc:
            if exc.status != 400 and not exc.ambiguous:
                raise
            existing = await self._read(
                "look at the existing branch", self._built_alike, repo, branch, base_sha, changes
            )
            if existing is None:
                raise
            return existing
        sha = made.get("id")
        if not isinstance(sha, str) or not sha:
            raise HostError("GitLab created a commit but did not name it", ambiguous=True)
        return sha

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """https://docs.gitlab.com/api/merge_requests/#create-mr; GitLab refuses a second
        open merge request from the same source branch (409), so one is looked for first,
        and again after a refusal or an answer that was lost."""
        found = await self._read(
            "look for an open merge request", self._open_mr_for, repo, head, base
        )
        if found is not None:
            return found
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
        }
        path = f"/projects/{project_id(repo)}/merge_requests"
        try:
            made = await self._write("open a merge request", self._post, path, payload)
        except HostError as exc:
            if exc.status != 409 and not exc.ambiguous:
                raise
            found = await self._read(
                "look for an open merge request", self._open_mr_for, repo, head, base
            )
            if found is None:
                raise
            return found
        return _opened(made, ambiguous=True)

    # ------------------------------------------------------------ plumbing

    async def _read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._guarded, False, what, functools.partial(fn, *args))

    async def _write(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._guarded, True, what, functools.partial(fn, *args))

    def _guarded(self, write: bool, what: str, call: Callable[[], T]) -> T:
        """Run one blocking call (in a worker thread) and map what it raises."""
        self._last.response = None
        try:
            return call()
        except (GitlabError, requests.RequestException) as exc:
            response: requests.Response | None = self._last.response
            headers: Mapping[str, str] = response.headers if response is not None else {}
            raise map_error(exc, headers, write=write, what=what, secret=self._token) from exc

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests' response hook: keep the thread's last response for its headers."""
        self._last.response = response
        log.debug("GitLab %s %s -> %s", response.request.method, response.url, response.status_code)

    def _get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return _json(
            self._gl.http_get(path, query_data=query, obey_rate_limit=False, max_retries=0)
        )

    def _get_bytes(self, path: str, query: dict[str, Any]) -> bytes:
        answer = self._gl.http_get(
            path, query_data=query, raw=True, obey_rate_limit=False, max_retries=0
        )
        if not isinstance(answer, requests.Response):
            raise HostError(f"GitLab answered {path} with JSON instead of the file's bytes")
        return answer.content

    def _pages(self, path: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, fetched a page at a time as it is consumed."""
        pages = self._gl.http_list(
            path,
            query_data={"per_page": 100, **query},
            iterator=True,
            obey_rate_limit=False,
            max_retries=0,
        )
        for item in pages:
            yield _json(item)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _json(self._gl.http_post(path, post_data=body, obey_rate_limit=False, max_retries=0))

    def _put(
        self, path: str, body: dict[str, Any] | None, query: dict[str, Any] | None = None
    ) -> None:
        self._gl.http_put(
            path, query_data=query, post_data=body, obey_rate_limit=False, max_retries=0
        )

    # ------------------------------------------------------------ paths and entities

    def _noteable(self, thread: ThreadRef) -> str:
        kind = "issues" if thread.target == "issue" else "merge_requests"
        return f"/projects/{project_id(thread.repo)}/{kind}/{thread.number}"

    def _notes_path(self, thread: ThreadRef) -> str:
        """Notes of the conversation, or of one discussion.

        https://docs.gitlab.com/api/notes/ and
        https://docs.gitlab.com/api/discussions/#add-note-to-existing-merge-request-thread
        """
        if thread.thread_id is None:
            return f"{self._noteable(thread)}/notes"
        return f"{self._noteable(thread)}/discussions/{quote(thread.thread_id, safe='')}/notes"

    def _posted(self, thread: ThreadRef, note: Mapping[str, Any], discussion: str | None) -> Posted:
        kind = "issues" if thread.target == "issue" else "merge_requests"
        url = f"{self._web_url}/{thread.repo}/-/{kind}/{thread.number}#note_{note['id']}"
        return Posted(id=str(note["id"]), url=url, thread_id=discussion)

    # ------------------------------------------------------------ blocking bodies

    def _find_note(self, thread: ThreadRef, marker: str) -> Posted | None:
        # Newest first (https://docs.gitlab.com/api/notes/#list-all-merge-request-notes,
        # review notes included), so the first match is the newest and later pages are
        # never fetched.
        query = {"sort": "desc", "order_by": "created_at"}
        for note in self._pages(f"{self._noteable(thread)}/notes", query):
            if self._ours(note, marker):
                threaded = note.get("type") in ("DiffNote", "DiscussionNote")
                discussion = self._discussion_of(thread, note) if threaded else None
                return self._posted(thread, note, discussion)
        return None

    def _discussion_of(self, thread: ThreadRef, note: Mapping[str, Any]) -> str | None:
        """The discussion a note belongs to; the Notes API does not say."""
        for discussion in self._pages(f"{self._noteable(thread)}/discussions", {}):
            if any(n.get("id") == note["id"] for n in discussion.get("notes") or []):
                return str(discussion["id"])
        return None

    def _find_in_discussion(self, thread: ThreadRef, discussion: str, marker: str) -> Posted | None:
        path = f"{self._noteable(thread)}/discussions/{quote(discussion, safe='')}"
        notes = self._get(path).get("notes") or []
        for note in reversed(notes):  # oldest first in a discussion
            if self._ours(note, marker):
                return self._posted(thread, note, discussion)
        return None

    def _ours(self, note: Mapping[str, Any], marker: str) -> bool:
        """A note the bot wrote with `marker` in it (someone quoting it does not count)."""
        author = note.get("author") or {}
        return marker in str(note.get("body") or "") and author.get("username") == self._me()

    def _award(self, path: str, name: str) -> None:
        try:
            self._post(path, {"name": name})
        except GitlabHttpError as exc:
            # GitLab answers an award we already gave with an error (404 "Award Emoji
            # Name has already been taken", 400 or 409 on other versions). The state we
            # want is reached if our award is there, so look instead of trusting words.
            if exc.response_code not in (400, 404, 409) or not self._awarded(path, name):
                raise

    def _awarded(self, path: str, name: str) -> bool:
        me = self._me()
        return any(
            award.get("name") == name and (award.get("user") or {}).get("username") == me
            for award in self._pages(path, {})
        )

    def _me(self) -> str:
        if self._username is None:
            self._username = str(self._get("/user")["username"])
        return self._username

    def _merge_request(self, pull: ThreadRef) -> dict[str, Any]:
        # https://docs.gitlab.com/api/merge_requests/ (a single merge request)
        return self._get(self._noteable(pull))

    def _diffs(self, pull: ThreadRef) -> list[dict[str, Any]]:
        # https://docs.gitlab.com/api/merge_requests/#list-merge-request-diffs (GitLab 15.7+)
        return list(self._pages(f"{self._noteable(pull)}/diffs", {}))

    def _permission(self, repo: str, login: str) -> Permission:
        # https://docs.gitlab.com/api/users/: `username` matches exactly,
        # ignoring case. Then the member, inherited or invited membership included:
        # https://docs.gitlab.com/api/members/ (`members/all/:user_id`)
        users = [
            u
            for u in self._pages("/users", {"username": login})
            if str(u.get("username", "")).lower() == login.lower()
        ]
        if not users or users[0].get("state") in INACTIVE_USER_STATES:
            return "none"
        try:
            member = self._get(f"/projects/{project_id(repo)}/members/all/{users[0]['id']}")
        except GitlabHttpError as exc:
            # 404 "Not found" is "not a member"; 404 "Project Not Found" is our problem.
            if exc.response_code == 404 and "project" not in str(exc.error_message).lower():
                return "none"
            raise
        if member.get("membership_state", "active") != "active":
            return "none"  # e.g. "awaiting" a seat
        return permission_for(int(member.get("access_level") or 0))

    def _post_status(self, path: str, payload: dict[str, Any], target: str) -> None:
        try:
            self._post(path, payload)
        except GitlabHttpError as exc:
            # Posting the state a status already has is refused with a 400; after an
            # ambiguous first try that is exactly what we wanted.
            same = _SAME_STATE.search(str(exc.error_message))
            if exc.response_code != 400 or same is None or same[1] != target:
                raise

    def _default_branch(self, repo: str) -> tuple[str, str]:
        # https://docs.gitlab.com/api/projects/#get-a-single-project, then
        # https://docs.gitlab.com/api/branches/#get-single-repository-branch
        project = self._get(f"/projects/{project_id(repo)}")
        name = project.get("default_branch")
        if not isinstance(name, str) or not name:
            raise HostError(f"GitLab project {repo} has no default branch (an empty repository?)")
        found = self._get(self._branch_path(repo, name))
        return name, _commit_id(found, f"branch {name} of {repo}")

    def _branch_path(self, repo: str, branch: str) -> str:
        return f"/projects/{project_id(repo)}/repository/branches/{quote(branch, safe='')}"

    def _actions(
        self, repo: str, base_sha: str, changes: Sequence[FileChange]
    ) -> list[dict[str, str]]:
        """The commit's actions: create or update by whether the file is at `base_sha`."""
        # https://docs.gitlab.com/api/commits/#get-a-single-commit
        try:
            self._get(f"/projects/{project_id(repo)}/repository/commits/{quote(base_sha, safe='')}")
        except GitlabHttpError as exc:
            if exc.response_code == 404 and "project" not in str(exc.error_message).lower():
                raise NotFound(f"GitLab {repo} has no commit {base_sha} to build on") from exc
            raise
        actions: list[dict[str, str]] = []
        for change in changes:
            exists = self._file_exists(repo, change.path, base_sha)
            if change.content is None:
                if not exists:
                    raise HostError(
                        f"cannot delete {change.path}: {repo} has no such file at {base_sha[:12]}"
                    )
                actions.append({"action": "delete", "file_path": change.path})
                continue
            actions.append(
                {
                    "action": "update" if exists else "create",
                    "file_path": change.path,
                    "content": base64.b64encode(change.content).decode("ascii"),
                    "encoding": "base64",
                }
            )
        return actions

    def _file_path(self, repo: str, path: str) -> str:
        return f"/projects/{project_id(repo)}/repository/files/{quote_whole(repo_path(path))}"

    def _file_exists(self, repo: str, path: str, ref: str) -> bool:
        # https://docs.gitlab.com/api/repository_files/#get-file-metadata-only (HEAD)
        try:
            self._gl.http_head(
                self._file_path(repo, path),
                query_data={"ref": ref},
                obey_rate_limit=False,
                max_retries=0,
            )
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return False
            raise
        return True

    def _file_at(self, repo: str, path: str, ref: str) -> bytes | None:
        try:
            return self._get_bytes(self._file_path(repo, path) + "/raw", {"ref": ref})
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return None
            raise

    def _built_alike(
        self, repo: str, branch: str, base_sha: str, changes: Sequence[FileChange]
    ) -> str | None:
        """The commit `branch` points at if it is this change on `base_sha` (an earlier
        try whose answer was lost); None when there is no such branch; Conflict when it
        holds anything else.

        Alike: its one parent is `base_sha`, its diff against it touches only the
        changed paths (https://docs.gitlab.com/api/commits/#get-the-diff-of-a-commit),
        and each changed path has the wanted content there (or is gone).
        """
        try:
            found = self._get(self._branch_path(repo, branch))
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return None
            raise
        sha = _commit_id(found, f"branch {branch} of {repo}")
        commit = self._get(f"/projects/{project_id(repo)}/repository/commits/{sha}")
        alike = list(commit.get("parent_ids") or []) == [base_sha]
        if alike:
            diff = self._pages(f"/projects/{project_id(repo)}/repository/commits/{sha}/diff", {})
            touched = {str(d.get(key)) for d in diff for key in ("old_path", "new_path")}
            alike = touched <= {c.path for c in changes} and all(
                self._file_at(repo, c.path, sha) == c.content for c in changes
            )
        if not alike:
            raise Conflict(
                f"GitLab {repo} already has a branch {branch} (at {sha[:12]}) "
                "that is not this change on this base",
                status=400,
            )
        return sha

    def _open_mr_for(self, repo: str, head: str, base: str) -> Opened | None:
        # https://docs.gitlab.com/api/merge_requests/#list-project-merge-requests
        query = {"source_branch": head, "target_branch": base, "state": "opened"}
        for mr in self._pages(f"/projects/{project_id(repo)}/merge_requests", query):
            if (mr.get("source_branch"), mr.get("target_branch")) == (head, base):
                return _opened(mr, ambiguous=False)
        return None

    def _identity(self) -> Identity:
        # https://docs.gitlab.com/api/users/ (`/user`) and
        # https://docs.gitlab.com/api/personal_access_tokens/ (`/self`)
        user = self._get("/user")
        self._username = str(user["username"])
        kind = "project or group access token" if user.get("bot") else "personal access token"
        try:
            token = self._get("/personal_access_tokens/self")
        except GitlabHttpError as exc:
            if exc.response_code not in (403, 404):  # older GitLab, or not a PAT
                raise
            return Identity(login=self._username, kind=kind)
        return Identity(
            login=self._username, kind=kind, scopes=tuple(str(s) for s in token.get("scopes") or ())
        )


def _commit_id(branch: Mapping[str, Any], what: str) -> str:
    commit = branch.get("commit")
    sha = commit.get("id") if isinstance(commit, Mapping) else None
    if not isinstance(sha, str) or not sha:
        raise HostError(f"GitLab answered {what} without its commit")
    return sha


def _opened(mr: Mapping[str, Any], *, ambiguous: bool) -> Opened:
    """`ambiguous`: the merge request was just created, so a malformed answer leaves it there."""
    iid = mr.get("iid")
    if not isinstance(iid, int):
        raise HostError("GitLab answered a merge request without its iid", ambiguous=ambiguous)
    url = mr.get("web_url")
    return Opened(number=iid, url=url if isinstance(url, str) else None)


def _require_pull(thread: ThreadRef, what: str) -> None:
    if thread.target != "pull":
        raise HostError(f"cannot {what} on an issue: it needs a merge request")


def _diff_refs(mr: Mapping[str, Any]) -> dict[str, str]:
    refs = mr.get("diff_refs")
    if not isinstance(refs, Mapping) or not all(
        refs.get(k) for k in ("base_sha", "start_sha", "head_sha")
    ):
        # GitLab fills diff_refs once it has computed the first diff of a new MR.
        raise HostError("GitLab has not computed the merge request's diff yet", retryable=True)
    return {k: str(refs[k]) for k in ("base_sha", "start_sha", "head_sha")}


def _file_of(files: list[dict[str, Any]], path: str) -> dict[str, Any]:
    for diff_file in files:
        if diff_file.get("new_path") == path:
            return diff_file
    for diff_file in files:
        if diff_file.get("old_path") == path:
            return diff_file
    raise HostError(f"{path} is not changed in this merge request; cannot comment on its lines")


def _json(answer: object) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise HostError(f"GitLab answered with {type(answer).__name__} where JSON was expected")
    return answer


def _from_fork(mr: Mapping[str, Any]) -> bool | None:
    """A merge request from another project (a fork) has a different source project.
    https://docs.gitlab.com/ee/api/merge_requests.html#get-single-mr"""
    source, target = mr.get("source_project_id"), mr.get("target_project_id")
    if source is None or target is None:
        return None
    return bool(source != target)
