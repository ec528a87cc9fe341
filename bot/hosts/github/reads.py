"""GitHub client reads: pulls, files, diffs, permissions, comments found by marker, whoami."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from bot.events import ThreadRef
from bot.hosts.base import (
    ChangedFile,
    HostError,
    Identity,
    NotFound,
    Permission,
    Posted,
    PullInfo,
)
from bot.hosts.github.core import ClientCore
from bot.hosts.github.credentials import _InstallationCredentials
from bot.hosts.github.shapes import (
    _body,
    _from_fork,
    _in_thread,
    _newest,
    _posted,
    _review_thread_root,
    _split,
    _thread_vars,
)
from bot.hosts.github.transport import (
    _FILE_STATUS,
    _PERMISSIONS,
    ACCEPT_DIFF,
    ACCEPT_JSON,
    ACCEPT_RAW,
    _header,
)
from bot.paths import quote_segments, repo_path

log = logging.getLogger(__name__)


class Reads(ClientCore):
    """Reads of pulls, repositories and comments."""

    async def find_comment(self, thread: ThreadRef, marker: str) -> Posted | None:
        """The newest comment of ours in the thread containing `marker`.

        Both lists come oldest first (ascending ids). A pull request's conversation also
        covers the review comments on its diff when no conversation comment matches, so
        a review whose answer was lost can be found again by the marker in its first
        comment; such a match carries the review thread it opened as `thread_id`.
        Someone else's comment quoting the marker never matches.
        """
        me = (await self._my_login()).lower()

        def ours(comment: Mapping[str, Any]) -> bool:
            author = comment.get("user") or {}
            login = author.get("login") if isinstance(author, dict) else None
            return marker in _body(comment) and str(login or "").lower() == me

        if thread.thread_id is not None:
            root = _review_thread_root(thread)
            comments = await self._review_comments(thread)
            match = _newest(c for c in comments if _in_thread(c, root) and ours(c))
            return None if match is None else _posted(match, thread.thread_id)
        url = "/repos/{owner}/{repo}/issues/{number}/comments"
        comments = await self._list(url, _thread_vars(thread))
        match = _newest(c for c in comments if ours(c))
        if match is not None:
            return _posted(match, None)
        if thread.target != "pull":
            return None
        comments = await self._review_comments(thread)
        match = _newest(c for c in comments if ours(c))
        if match is None:
            return None
        return _posted(match, str(match.get("in_reply_to_id") or match["id"]))

    async def _my_login(self) -> str:
        """The login our comments carry (`<app slug>[bot]` for an App), asked once."""
        if self._login is None:
            self._login = (await self.whoami()).login
        return self._login

    async def _review_comments(self, pull: ThreadRef) -> list[dict[str, Any]]:
        # https://docs.github.com/en/rest/pulls/comments#list-review-comments-on-a-pull-request
        url = "/repos/{owner}/{repo}/pulls/{number}/comments"
        return [c for c in await self._list(url, _thread_vars(pull)) if isinstance(c, dict)]

    async def pull_info(self, pull: ThreadRef) -> PullInfo:
        # https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request
        data = await self._get("/repos/{owner}/{repo}/pulls/{number}", _thread_vars(pull))
        try:
            state = "merged" if data.get("merged") or data.get("merged_at") else data["state"]
            return PullInfo(
                head_sha=data["head"]["sha"],
                base_sha=data["base"]["sha"],
                title=data.get("title") or "",
                state=state,
                from_fork=_from_fork(data),
            )
        except (AttributeError, KeyError, TypeError) as exc:
            raise HostError(
                f"GitHub pull request {pull.key} lacks head/base", retryable=False
            ) from exc

    async def changed_files(self, pull: ThreadRef) -> list[ChangedFile]:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
        files = await self._list("/repos/{owner}/{repo}/pulls/{number}/files", _thread_vars(pull))
        return [
            ChangedFile(
                path=f["filename"],
                status=_FILE_STATUS.get(f.get("status", ""), "modified"),
                additions=int(f.get("additions") or 0),
                deletions=int(f.get("deletions") or 0),
                previous_path=f.get("previous_filename"),
                patch=f.get("patch"),
            )
            for f in files
        ]

    async def pull_diff(self, pull: ThreadRef) -> str:
        # https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request (the diff media type)
        _, body = await self._get_raw(
            "/repos/{owner}/{repo}/pulls/{number}", _thread_vars(pull), ACCEPT_DIFF
        )
        return body.decode("utf-8", errors="replace")

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        # https://docs.github.com/en/rest/repos/contents#get-repository-content (raw media type)
        url = "/repos/{owner}/{repo}/contents/{+path}{?ref}"
        # Checked before the URL is made: a `..` part would be resolved by the HTTP
        # client and read another repository's files.
        checked = repo_path(path)
        values: dict[str, str | int] = {**_split(repo), "path": quote_segments(checked)}
        if ref is not None:  # none: the default branch
            values["ref"] = ref
        headers, body = await self._get_raw(url, values, ACCEPT_RAW)
        if (_header(headers, "content-type") or "").startswith("application/json"):
            # Directories (and submodules) answer with JSON whatever we ask for.
            raise HostError(f"GitHub {repo}:{path} at {ref or 'the default branch'} is not a file")
        return body

    async def permission(self, repo: str, login: str) -> Permission:
        """GitHub's answer for the person; NotFound when GitHub knows no such user."""
        url = "/repos/{owner}/{repo}/collaborators/{username}/permission"
        data = await self._get(url, {**_split(repo), "username": login})
        role = data.get("role_name") if isinstance(data, dict) else None
        if role in ("maintain", "triage"):
            return _PERMISSIONS[role]
        base = data.get("permission") if isinstance(data, dict) else None
        return _PERMISSIONS.get(str(base), "none")

    # -------------------------------------------------------------- branches and changes

    async def default_branch(self, repo: str) -> tuple[str, str]:
        # https://docs.github.com/en/rest/repos/repos#get-a-repository
        data = await self._get("/repos/{owner}/{repo}", _split(repo))
        name = data.get("default_branch") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise HostError(f"GitHub did not name the default branch of {repo}")
        sha = await self._branch_sha(repo, name)
        if sha is None:
            raise NotFound(f"GitHub {repo} has no branch {name}, its default (empty repository?)")
        return name, sha

    async def whoami(self) -> Identity:
        if self._app is not None:
            # https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app (JWT)
            about = await self._app.describe()
            installation = self._credentials
            scopes: tuple[str, ...] = ()
            if isinstance(installation, _InstallationCredentials):
                await installation.token()  # so its permissions are known
                scopes = self._app.permissions(installation.installation_id)
            return Identity(
                login=f"{about.get('slug')}[bot]", kind="app installation", scopes=scopes
            )
        # https://docs.github.com/en/rest/users/users#get-the-authenticated-user
        headers, body = await self._get_raw("/user", {}, ACCEPT_JSON)
        try:
            login = str(json.loads(body)["login"])
        except (ValueError, KeyError, TypeError) as exc:
            raise HostError("GitHub GET /user: answer without a login", retryable=True) from exc
        # Classic tokens list their scopes here; fine-grained tokens send none.
        scopes = tuple(
            s.strip() for s in (_header(headers, "x-oauth-scopes") or "").split(",") if s.strip()
        )
        return Identity(login=login, kind="token", scopes=scopes)
