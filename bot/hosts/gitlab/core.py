"""GitLab client core: the python-gitlab session, the _read/_write worker-thread plumbing and shared lookups."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabHttpError

from bot.events import ThreadRef
from bot.hosts.base import (
    HostError,
    Identity,
    Permission,
    Posted,
)
from bot.hosts.gitlab.errors import (
    _SAME_STATE,
    CAPABILITIES,
    INACTIVE_USER_STATES,
    T,
    map_error,
    permission_for,
    project_id,
)
from bot.hosts.gitlab.shapes import _commit_id, _json
from bot.metrics import observe_host_answer
from bot.paths import quote_whole, repo_path

log = logging.getLogger(__name__)


class ClientCore:
    """The session and plumbing every GitLabClient mixin uses."""

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

    def close(self) -> None:
        self._gl.session.close()

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
        """requests' response hook: keep the thread's last response for its headers, and
        count the answer as GitHub's are counted (bot.metrics): by status, with the rate
        limit left. GitLab names it RateLimit-Remaining, where its instance sends it
        (https://docs.gitlab.com/user/gitlab_com/rate_limits/)."""
        self._last.response = response
        observe_host_answer(
            self.host, response.status_code, response.headers.get("RateLimit-Remaining")
        )
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

    def _file_path(self, repo: str, path: str) -> str:
        return f"/projects/{project_id(repo)}/repository/files/{quote_whole(repo_path(path))}"

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
