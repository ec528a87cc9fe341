"""A stateful fake GitLab (REST API v4) served over loopback HTTP by aiohttp.

It keeps projects (reachable by id and by URL-encoded full path), issues, merge
requests with `diff_refs` and per-file diffs, notes, discussions with diff positions,
award emoji, users, members with access levels, repository files and commit statuses,
commits with their files and parents, and branches (the commits API's multi-file
commits with create/update/delete actions, merge requests opened from branches),
and answers the way GitLab's API pages describe: `PRIVATE-TOKEN` checked (401 when
wrong), missing parameters refused with 400 as Grape words it, pagination with `Link`
and `X-*` headers.

Every request is recorded (`requests`). Faults are injected by method and a regex over
the path below `/api/v4` (still URL-encoded, e.g. `/projects/g%2Fp/issues/1/notes`):
an error status with headers, a delay before answering (to make a client time out; the
request is still carried out afterwards, as a real server would), or a write carried
out whose answer is lost (the connection is closed without a response).

    async with FakeGitLab(prefix="/gitlab") as gl:
        project = gl.add_project("group/sub/project")
        client = GitLabClient(gl.url, TOKEN, timeout=5)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlencode

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.git_http import GitServer, flat_objects, git_hash, write_bare

TOKEN = "glpat-fake-0123456789abcdef"
BOT_USERNAME = "threadline-bot"

# Emoji names the fake knows (GitLab knows many more, by these names).
EMOJI = frozenset(
    {"thumbsup", "thumbsdown", "laughing", "tada", "confused", "heart", "rocket", "eyes"}
)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_STATUS_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "success",
    "failed": "drop",
    "canceled": "cancel",
}
# From a live (pending/running) status, the states GitLab lets it move to.
_TRANSITIONS = {
    "pending": {"running", "success", "failed", "canceled"},
    "running": {"success", "failed", "canceled"},
}
_HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


class Reply(Exception):
    """An error answer, raised from a handler."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _missing(name: str) -> Reply:
    return Reply(400, {"error": f"{name} is missing"})


def _not_found(what: str) -> Reply:
    return Reply(404, {"message": f"404 {what} Not Found"})


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str  # below /api/v4, still URL-encoded
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any  # parsed JSON, a form as a dict, or None
    raw_path: str  # the whole path, prefix included


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    lose_response: bool = False
    times: int | None = 1  # None: every matching request
    after: int = 0  # matching requests let through before the fault starts

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and self.pattern.search(path) is not None


@dataclass
class User:
    id: int
    username: str
    name: str
    state: str = "active"
    bot: bool = False

    def entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "state": self.state,
            "avatar_url": None,
            "web_url": f"http://gitlab.example/{self.username}",
        }


@dataclass
class Award:
    id: int
    name: str
    user: User
    note_id: int


@dataclass
class Note:
    id: int
    body: str
    author: User
    noteable: tuple[int, str, int]  # project id, "issues" | "merge_requests", iid
    discussion_id: str
    type: str | None = None  # None, "DiscussionNote" or "DiffNote"
    position: dict[str, Any] | None = None
    resolvable: bool = False
    resolved: bool = False
    system: bool = False
    created: int = 0
    updated: int = 0
    awards: list[Award] = field(default_factory=list)

    def entity(self) -> dict[str, Any]:
        project, kind, iid = self.noteable
        entity: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "body": self.body,
            "attachment": None,
            "author": self.author.entity(),
            "created_at": _time(self.created),
            "updated_at": _time(self.updated),
            "system": self.system,
            "noteable_id": iid + 1000,
            "noteable_type": "Issue" if kind == "issues" else "MergeRequest",
            "noteable_iid": iid,
            "project_id": project,
            "resolvable": self.resolvable,
            "confidential": False,
            "internal": False,
        }
        if self.resolvable:
            entity["resolved"] = self.resolved
        if self.position is not None:
            entity["position"] = self.position
        return entity


@dataclass
class Discussion:
    id: str
    noteable: tuple[int, str, int]
    individual_note: bool
    notes: list[int] = field(default_factory=list)


@dataclass
class MergeRequest:
    iid: int
    title: str
    base_sha: str
    start_sha: str
    head_sha: str
    diffs: list[dict[str, Any]]
    state: str = "opened"
    source_branch: str = "feature"
    target_branch: str = "main"
    description: str = ""
    author: User | None = None  # None: the token's user
    draft: bool = False
    labels: list[str] = field(default_factory=list)


@dataclass
class Project:
    id: int
    path: str
    default_branch: str = "main"
    issues: dict[int, str] = field(default_factory=dict)  # iid -> title
    # iid -> what else an issue shows (description, author, labels, assignees)
    issue_details: dict[int, dict[str, Any]] = field(default_factory=dict)
    issue_bodies: dict[int, str] = field(default_factory=dict)  # iid -> description
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (ref, path)
    commits: set[str] = field(default_factory=set)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    # Commits with their whole file tree (path -> content) and parents, and branches.
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    # Each commit's file modes other than 100644 (sha -> path -> mode), and the git
    # objects every commit was made of (its name is its real git hash).
    modes: dict[str, dict[str, str]] = field(default_factory=dict)
    objects: list[tuple[str, bytes]] = field(default_factory=list)


def diff_file(
    path: str,
    diff: str,
    *,
    old_path: str | None = None,
    new_file: bool = False,
    deleted_file: bool = False,
) -> dict[str, Any]:
    """One entry of GET /projects/:id/merge_requests/:iid/diffs."""
    return {
        "old_path": old_path or path,
        "new_path": path,
        "a_mode": "0" if new_file else "100644",
        "b_mode": "0" if deleted_file else "100644",
        "diff": diff,
        "new_file": new_file,
        "renamed_file": old_path is not None and old_path != path,
        "deleted_file": deleted_file,
        "generated_file": False,
        "collapsed": False,
        "too_large": False,
    }


def _time(tick: int) -> str:
    return (_EPOCH + timedelta(seconds=tick)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


Handler = Callable[["Call"], Any]  # a JSON-able answer, or a ready web.Response


@dataclass
class Call:
    """A request being answered: its route's path parameters and its parameters."""

    request: web.Request
    match: dict[str, str]
    params: dict[str, Any]
    user: User

    def param(self, name: str) -> Any:
        if name not in self.params or self.params[name] is None:
            raise _missing(name)
        return self.params[name]

    def text(self, name: str) -> str:
        value = self.param(name)
        if not isinstance(value, str) or not value.strip():
            raise Reply(400, {"error": f"{name} is empty"})
        return value


class FakeGitLab:
    def __init__(
        self, *, token: str = TOKEN, prefix: str = "", external_url: str | None = None
    ) -> None:
        """`prefix`: where GitLab is mounted (`/gitlab`); `external_url`: the base URL it
        believes it has (behind a proxy), which it writes into pagination links."""
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.external_url = external_url
        self.requests: list[Recorded] = []
        # The status of every answer, in order, and the rate limit GitLab.com reports on
        # each (RateLimit-Limit/-Observed/-Remaining: https://docs.gitlab.com/user/gitlab_com/rate_limits/).
        self.answers: list[int] = []
        self.rate_limit = 2000
        self.faults: list[Fault] = []
        self.users: dict[int, User] = {}
        self.projects: dict[int, Project] = {}
        self.notes: dict[int, Note] = {}
        self.discussions: dict[str, Discussion] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.bot = self.add_user(BOT_USERNAME, name="Threadline", bot=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._routes = self._route_table()
        # Git over HTTP (`export_git`): the bare repositories' folder, and the
        # Authorization header of every git request, for tests to look at.
        self.git_root: Path | None = None
        self.git_auth: list[str | None] = []

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._stamp)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        """The base URL a client is configured with (no /api/v4)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # ------------------------------------------------------------ state for tests

    def add_user(
        self, username: str, *, name: str = "", state: str = "active", bot: bool = False
    ) -> User:
        user = User(next(self._ids), username, name or username, state, bot)
        self.users[user.id] = user
        return user

    def add_project(self, path: str) -> Project:
        project = Project(next(self._ids), path)
        self.projects[project.id] = project
        return project

    def add_member(self, project: Project, user: User, access_level: int) -> None:
        project.members[user.id] = access_level

    def add_issue(self, project: Project, iid: int, title: str = "An issue") -> None:
        project.issues[iid] = title

    def add_merge_request(
        self,
        project: Project,
        iid: int,
        diffs: list[dict[str, Any]],
        *,
        title: str = "A merge request",
        base_sha: str = "b" * 40,
        start_sha: str = "s" * 40,
        head_sha: str = "h" * 40,
    ) -> MergeRequest:
        mr = MergeRequest(iid, title, base_sha, start_sha, head_sha, diffs)
        project.merge_requests[iid] = mr
        project.commits.update({base_sha, start_sha, head_sha})
        return mr

    def add_file(self, project: Project, path: str, content: bytes, ref: str = "main") -> None:
        project.files[(ref, path)] = content

    def add_commit(
        self,
        project: Project,
        files: dict[str, bytes],
        *,
        parents: list[str] | None = None,
        branch: str | None = "main",
        message: str = "A commit",
        executable: tuple[str, ...] = (),
    ) -> str:
        """A commit holding exactly `files` (paths in `executable` get mode 100755),
        moving `branch` (None: no branch) to it."""
        modes = dict.fromkeys(executable, "100755")
        sha = self._new_commit(project, dict(files), list(parents or []), message, modes)
        if branch is not None:
            project.branches[branch] = sha
        return sha

    def files_at(self, project: Project, ref: str) -> dict[str, bytes] | None:
        """The files at a branch or commit, or None when there is neither."""
        sha = project.branches.get(ref, ref)
        return project.trees.get(sha)

    def modes_at(self, project: Project, ref: str) -> dict[str, str]:
        """Every file's git mode at a branch or commit."""
        sha = project.branches.get(ref, ref)
        return {path: project.modes[sha].get(path, "100644") for path in project.trees[sha]}

    def _new_commit(
        self,
        project: Project,
        files: dict[str, bytes],
        parents: list[str],
        message: str,
        modes: dict[str, str] | None = None,
    ) -> str:
        """A real git commit (named as git names it: by content, parents and a tick for
        its time), so `export_git` serves the very commits the API answers about."""
        kept = {path: mode for path, mode in (modes or {}).items() if path in files}
        tree, objects = flat_objects(files, kept)
        stamp = f"Test <test@example.com> {1_700_000_000 + next(self._clock)} +0000"
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents if p in project.trees)]
        body = "\n".join([*lines, f"author {stamp}", f"committer {stamp}", "", message]).encode()
        objects.append(("commit", body))
        sha = git_hash("commit", body)
        project.objects += objects
        project.modes[sha] = kept
        project.trees[sha] = files
        project.parents[sha] = parents
        project.messages[sha] = message
        project.commits.add(sha)
        return sha

    def add_note(
        self, project: Project, kind: str, iid: int, body: str, *, author: User | None = None
    ) -> Note:
        """A comment in the conversation of an issue or merge request, by `author`
        (default: the token's user, as if the bot had posted it)."""
        return self._new_note(
            (project.id, kind, iid), body, author or self.bot, discussion=None, individual=True
        )

    def add_diff_discussion(
        self,
        project: Project,
        iid: int,
        body: str,
        position: dict[str, Any],
        *,
        author: User | None = None,
    ) -> Note:
        """A discussion on a diff line of a merge request, opened by `author`."""
        return self._new_note(
            (project.id, "merge_requests", iid),
            body,
            author or self.bot,
            discussion=None,
            type_="DiffNote",
            position=position,
        )

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """Recorded requests, by method and by a regex searched in `path`."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or re.search(path, r.path) is not None)
        ]

    # ------------------------------------------------------------ faults

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int | None = 1,
        after: int = 0,
    ) -> None:
        """Answer matching requests with `status` (and headers) instead of serving them."""
        self.faults.append(
            Fault(method, re.compile(path), status, headers or {}, body, times=times, after=after)
        )

    def slow(self, method: str, path: str, seconds: float, *, times: int | None = 1) -> None:
        """Wait before serving matching requests (they are still served afterwards)."""
        self.faults.append(Fault(method, re.compile(path), delay=seconds, times=times))

    def lose_response(self, method: str, path: str, *, times: int | None = 1) -> None:
        """Serve matching requests, then close the connection without answering."""
        self.faults.append(Fault(method, re.compile(path), lose_response=True, times=times))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------ HTTP

    def export_git(self, project: Project) -> Path:
        """The project's commits, branches and merge request heads as a real bare
        repository under `git_root`, which this fake then serves over git's HTTP protocol
        at `<url>/<path>.git` to a client sending the token as a password (any user)."""
        assert self.git_root is not None, "set git_root first"
        refs = {f"refs/heads/{name}": sha for name, sha in project.branches.items()}
        for iid, mr in project.merge_requests.items():
            if mr.head_sha in project.trees:
                refs[f"refs/merge-requests/{iid}/head"] = mr.head_sha
        return write_bare(self.git_root / f"{project.path}.git", project.objects, refs)

    async def _git(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        given = request.headers.get("Authorization")
        self.git_auth.append(given)
        scheme, _, value = (given or "").partition(" ")
        secret = ""
        if scheme == "Basic":
            secret = base64.b64decode(value).decode(errors="replace").partition(":")[2]
        if self.git_root is None or secret != self.token:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="GitLab"'})
        return await GitServer(self.git_root, given or "").handle(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        root = f"{self.prefix}/api/v4"
        if ".git/" in raw_path and not raw_path.startswith(root + "/"):
            return await self._git(request, raw_path)
        if not raw_path.startswith(root + "/"):
            return web.Response(status=404, text="Not Found")
        path = raw_path[len(root) :]
        body = await self._body(request)
        self.requests.append(
            Recorded(
                request.method,
                path,
                dict(request.query),
                CIMultiDict(request.headers),
                body,
                raw_path,
            )
        )
        fault = self._take_fault(request.method, path)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            default = {"message": f"{fault.status} fault injected"}
            return self._json(fault.body or default, fault.status, fault.headers)
        response = await self._serve(request, path, body)
        if fault is not None and fault.lose_response and request.transport is not None:
            request.transport.close()  # the write is done; its answer never arrives
        return response

    async def _serve(self, request: web.Request, path: str, body: Any) -> web.StreamResponse:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return self._json({"message": "401 Unauthorized"}, 401)
        params: dict[str, Any] = dict(request.query)
        if isinstance(body, dict):
            params.update(body)  # Grape reads parameters from the query and the body alike
        for method, pattern, handler in self._routes:
            found = pattern.fullmatch(path)
            if found is None or method != request.method:
                continue
            call = Call(
                request, {k: unquote(v) for k, v in found.groupdict().items()}, params, self.bot
            )
            try:
                result = handler(call)
            except Reply as reply:
                return self._json(reply.body, reply.status)
            if isinstance(result, web.StreamResponse):
                return result
            return self._json(result, 201 if request.method == "POST" else 200)
        return self._json({"error": "404 Not Found"}, 404)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        if request.content_type == "application/json":
            text = await request.text()
            return json.loads(text) if text else None
        if request.content_type == "application/x-www-form-urlencoded":
            return dict(await request.post())
        return await request.text()

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every answer: its status recorded, the rate limit headers set (unless an
        injected fault set its own)."""
        self.answers.append(response.status)
        observed = len(self.answers)
        response.headers.setdefault("RateLimit-Limit", str(self.rate_limit))
        response.headers.setdefault("RateLimit-Observed", str(observed))
        response.headers.setdefault("RateLimit-Remaining", str(max(self.rate_limit - observed, 0)))

    @staticmethod
    def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    def _page(self, call: Call, items: list[Any]) -> web.Response:
        """One page of `items` with GitLab's pagination headers.

        https://docs.gitlab.com/api/rest/ (pagination)
        """
        query = dict(call.request.query)
        per_page = min(100, max(1, int(query.get("per_page", 20))))
        page = max(1, int(query.get("page", 1)))
        pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        path = call.request.raw_path.split("?", 1)[0]
        if self.external_url is None:
            base = f"http://{call.request.host}{path}"
        else:
            base = self.external_url.rstrip("/") + path[len(self.prefix) :]

        def link(number: int, rel: str) -> str:
            return f'<{base}?{urlencode({**query, "page": number, "per_page": per_page})}>; rel="{rel}"'

        links = [link(1, "first"), link(pages, "last")]
        if page < pages:
            links.insert(0, link(page + 1, "next"))
        if page > 1:
            links.insert(0, link(page - 1, "prev"))
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(items)),
            "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }
        return self._json(chunk, 200, headers)

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        project = r"/projects/(?P<project>[^/]+)"
        noteable = project + r"/(?P<kind>issues|merge_requests)/(?P<iid>\d+)"
        discussion = noteable + r"/discussions/(?P<discussion>[^/]+)"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/user", lambda call: self._user_entity(call.user)),
            ("GET", r"/personal_access_tokens/self", self._token_self),
            ("GET", r"/users", self._users),
            ("GET", project, self._project_get),
            ("GET", noteable + r"/notes", self._notes_list),
            ("POST", noteable + r"/notes", self._note_create),
            ("PUT", noteable + r"/notes/(?P<note>\d+)", self._note_edit),
            ("GET", noteable + r"/notes/(?P<note>\d+)/award_emoji", self._awards_list),
            ("POST", noteable + r"/notes/(?P<note>\d+)/award_emoji", self._award_create),
            ("GET", noteable + r"/discussions", self._discussions_list),
            ("POST", noteable + r"/discussions", self._discussion_create),
            ("GET", discussion, self._discussion_get),
            ("PUT", discussion, self._discussion_resolve),
            ("POST", discussion + r"/notes", self._discussion_reply),
            ("PUT", discussion + r"/notes/(?P<note>\d+)", self._note_edit),
            ("GET", project + r"/issues/(?P<iid>\d+)", self._issue_get),
            ("GET", project + r"/merge_requests/(?P<iid>\d+)", self._mr_get),
            ("GET", project + r"/merge_requests/(?P<iid>\d+)/diffs", self._mr_diffs),
            ("GET", project + r"/repository/files/(?P<file>[^/]+)/raw", self._file_raw),
            ("HEAD", project + r"/repository/files/(?P<file>[^/]+)", self._file_head),
            ("GET", project + r"/repository/branches/(?P<branch>[^/]+)", self._branch_get),
            ("POST", project + r"/repository/commits", self._commit_create),
            ("GET", project + r"/repository/commits/(?P<sha>[^/]+)", self._commit_get),
            ("GET", project + r"/repository/commits/(?P<sha>[^/]+)/diff", self._commit_diff),
            ("GET", project + r"/merge_requests", self._mrs_list),
            ("POST", project + r"/merge_requests", self._mr_create),
            ("POST", project + r"/issues", self._issue_create),
            ("GET", project + r"/members/all/(?P<user>\d+)", self._member_get),
            ("POST", project + r"/statuses/(?P<sha>[^/]+)", self._status_post),
            ("GET", project + r"/repository/commits/(?P<sha>[^/]+)/statuses", self._statuses),
        ]
        return [(method, re.compile(regex), handler) for method, regex, handler in routes]

    # ------------------------------------------------------------ lookups

    def _project(self, call: Call) -> Project:
        key = call.match["project"]
        for project in self.projects.values():
            if key in (str(project.id), project.path):
                return project
        raise _not_found("Project")

    def _noteable(self, call: Call) -> tuple[int, str, int]:
        project = self._project(call)
        kind, iid = call.match["kind"], int(call.match["iid"])
        known = project.issues if kind == "issues" else project.merge_requests
        if iid not in known:
            raise _not_found("Issue" if kind == "issues" else "Merge Request")
        return (project.id, kind, iid)

    def _note(self, call: Call) -> Note:
        note = self.notes.get(int(call.match["note"]))
        if note is None or note.noteable != self._noteable(call):
            raise _not_found("Note")
        return note

    def _discussion(self, call: Call) -> Discussion:
        found = self.discussions.get(call.match["discussion"])
        if found is None or found.noteable != self._noteable(call):
            raise _not_found("Discussion")
        return found

    def _mr(self, call: Call) -> MergeRequest:
        mr = self._project(call).merge_requests.get(int(call.match["iid"]))
        if mr is None:
            raise _not_found("Merge Request")
        return mr

    # ------------------------------------------------------------ users and projects

    def _user_entity(self, user: User) -> dict[str, Any]:
        return {**user.entity(), "bot": user.bot, "is_admin": False}

    def _token_self(self, call: Call) -> dict[str, Any]:
        return {
            "id": 1,
            "name": "threadline",
            "revoked": False,
            "active": True,
            "scopes": ["api"],
            "user_id": call.user.id,
            "expires_at": None,
        }

    def _users(self, call: Call) -> web.Response:
        wanted = str(call.params.get("username", "")).lower()
        found = [
            u.entity() for u in self.users.values() if not wanted or u.username.lower() == wanted
        ]
        return self._page(call, found)

    def _project_get(self, call: Call) -> dict[str, Any]:
        project = self._project(call)
        return {
            "id": project.id,
            "path_with_namespace": project.path,
            "default_branch": project.default_branch,
        }

    def _member_get(self, call: Call) -> dict[str, Any]:
        project = self._project(call)
        user = self.users.get(int(call.match["user"]))
        if user is None or user.id not in project.members:
            raise Reply(404, {"message": "404 Not found"})
        return {
            **user.entity(),
            "access_level": project.members[user.id],
            "membership_state": "active",
        }

    # ------------------------------------------------------------ notes and discussions

    def _new_note(
        self,
        noteable: tuple[int, str, int],
        body: str,
        author: User,
        *,
        discussion: Discussion | None,
        individual: bool = False,
        type_: str | None = None,
        position: dict[str, Any] | None = None,
    ) -> Note:
        if discussion is None:
            seed = f"discussion-{next(self._ids)}".encode()
            discussion = Discussion(
                hashlib.sha1(seed, usedforsecurity=False).hexdigest(), noteable, individual
            )
            self.discussions[discussion.id] = discussion
        tick = next(self._clock)
        note = Note(
            id=next(self._ids) + 1000,
            body=body,
            author=author,
            noteable=noteable,
            discussion_id=discussion.id,
            type=type_,
            position=position,
            resolvable=noteable[1] == "merge_requests" and not discussion.individual_note,
            created=tick,
            updated=tick,
        )
        self.notes[note.id] = note
        discussion.notes.append(note.id)
        return note

    def _notes_list(self, call: Call) -> web.Response:
        # https://docs.gitlab.com/api/notes/#list-all-merge-request-notes: every note of
        # the issue or merge request, threads included; newest first unless asked.
        noteable = self._noteable(call)
        key = "updated" if call.params.get("order_by") == "updated_at" else "created"
        notes = sorted(
            (n for n in self.notes.values() if n.noteable == noteable),
            key=lambda n: (getattr(n, key), n.id),
            reverse=call.params.get("sort", "desc") != "asc",
        )
        return self._page(call, [n.entity() for n in notes])

    def _note_create(self, call: Call) -> dict[str, Any]:
        noteable = self._noteable(call)
        note = self._new_note(
            noteable, call.text("body"), call.user, discussion=None, individual=True
        )
        return note.entity()

    def _note_edit(self, call: Call) -> dict[str, Any]:
        note = self._note(call)
        if "discussion" in call.match and note.discussion_id != call.match["discussion"]:
            raise _not_found("Note")
        if note.author.id != call.user.id:
            raise Reply(403, {"message": "403 Forbidden"})
        note.body = call.text("body")
        note.updated = next(self._clock)
        return note.entity()

    def _discussion_entity(self, discussion: Discussion) -> dict[str, Any]:
        return {
            "id": discussion.id,
            "individual_note": discussion.individual_note,
            "notes": [self.notes[i].entity() for i in discussion.notes],
        }

    def _discussions_list(self, call: Call) -> web.Response:
        noteable = self._noteable(call)
        found = [d for d in self.discussions.values() if d.noteable == noteable]
        return self._page(call, [self._discussion_entity(d) for d in found])

    def _discussion_get(self, call: Call) -> dict[str, Any]:
        return self._discussion_entity(self._discussion(call))

    def _discussion_create(self, call: Call) -> dict[str, Any]:
        noteable = self._noteable(call)
        body = call.text("body")
        position = call.params.get("position")
        if position is not None and noteable[1] != "merge_requests":
            raise Reply(400, {"error": "position is not allowed on issues"})
        if position is not None:
            self._check_position(self._mr(call), position)
        note = self._new_note(
            noteable,
            body,
            call.user,
            discussion=None,
            type_="DiffNote" if position is not None else "DiscussionNote",
            position=position,
        )
        return self._discussion_entity(self.discussions[note.discussion_id])

    def _discussion_reply(self, call: Call) -> dict[str, Any]:
        found = self._discussion(call)
        first = self.notes[found.notes[0]]
        if found.individual_note:  # a reply turns a single comment into a thread
            found.individual_note = False
            first.type = "DiscussionNote"
        note = self._new_note(
            found.noteable,
            call.text("body"),
            call.user,
            discussion=found,
            type_=first.type,
            position=first.position,
        )
        return note.entity()

    def _discussion_resolve(self, call: Call) -> dict[str, Any]:
        found = self._discussion(call)
        if call.match["kind"] != "merge_requests":
            raise Reply(405, {"error": "405 Not Allowed"})
        resolved = str(call.param("resolved")).lower()
        if resolved not in ("true", "false"):
            raise Reply(400, {"error": "resolved is invalid"})
        notes = [self.notes[i] for i in found.notes]
        if not any(n.resolvable for n in notes):
            raise Reply(400, {"message": "400 Bad request - Discussion is not resolvable"})
        for note in notes:
            note.resolved = resolved == "true"
        return self._discussion_entity(found)

    # ------------------------------------------------------------ award emoji

    def _awards_list(self, call: Call) -> web.Response:
        note = self._note(call)
        return self._page(call, [self._award_entity(a) for a in note.awards])

    def _award_create(self, call: Call) -> dict[str, Any]:
        note = self._note(call)
        name = call.text("name")
        # GitLab answers every refusal here with 404 "Award Emoji <reason>".
        if name not in EMOJI:
            raise Reply(
                404, {"message": "404 Award Emoji Name is not a valid emoji name Not Found"}
            )
        if any(a.name == name and a.user.id == call.user.id for a in note.awards):
            raise Reply(404, {"message": "404 Award Emoji Name has already been taken Not Found"})
        award = Award(next(self._ids), name, call.user, note.id)
        note.awards.append(award)
        return self._award_entity(award)

    @staticmethod
    def _award_entity(award: Award) -> dict[str, Any]:
        return {
            "id": award.id,
            "name": award.name,
            "user": award.user.entity(),
            "awardable_id": award.note_id,
            "awardable_type": "Note",
        }

    # ------------------------------------------------------------ merge requests

    def _issue_get(self, call: Call) -> dict[str, Any]:
        # https://docs.gitlab.com/api/issues/#single-project-issue
        project = self._project(call)
        iid = int(call.match["iid"])
        if iid not in project.issues:
            raise _not_found("Issue")
        extra = project.issue_details.get(iid, {})
        author = extra.get("author") or self.bot
        return {
            "id": iid + 9000,
            "iid": iid,
            "project_id": project.id,
            "title": project.issues[iid],
            "description": extra.get("description"),
            "state": "opened",
            "labels": list(extra.get("labels", [])),
            "author": author.entity(),
            "assignees": [u.entity() for u in extra.get("assignees", [])],
            "web_url": f"http://gitlab.example/{project.path}/-/issues/{iid}",
        }

    def _mr_get(self, call: Call) -> dict[str, Any]:
        project, mr = self._project(call), self._mr(call)
        return {
            **self._mr_entity(project, mr),
            "diff_refs": {
                "base_sha": mr.base_sha,
                "head_sha": mr.head_sha,
                "start_sha": mr.start_sha,
            },
        }

    def _mr_diffs(self, call: Call) -> web.Response:
        return self._page(call, list(self._mr(call).diffs))

    def _check_position(self, mr: MergeRequest, position: Any) -> None:
        """Refuse a diff position GitLab would refuse (400), as the Discussions API says."""
        if not isinstance(position, dict):
            raise Reply(400, {"error": "position is invalid"})
        for name in ("base_sha", "start_sha", "head_sha", "position_type", "old_path", "new_path"):
            if not position.get(name):
                raise _missing(f"position[{name}]")
        refs = (position["base_sha"], position["start_sha"], position["head_sha"])
        entry = next(
            (
                d
                for d in mr.diffs
                if (d["old_path"], d["new_path"]) == (position["old_path"], position["new_path"])
            ),
            None,
        )
        lines = _diff_lines(entry["diff"]) if entry else []
        pair = (position.get("old_line"), position.get("new_line"))
        valid = refs == (mr.base_sha, mr.start_sha, mr.head_sha) and entry is not None
        valid = valid and position["position_type"] == "text" and _line_exists(lines, pair)
        line_range = position.get("line_range")
        if valid and line_range is not None:
            codes = {_code(entry["new_path"] if entry else "", o, n) for _, o, n in lines}
            ends = [line_range.get("start") or {}, line_range.get("end") or {}]
            valid = all(
                e.get("line_code") in codes and e.get("type") in ("old", "new") for e in ends
            )
        if not valid:
            raise Reply(
                400,
                {
                    "message": '400 Bad request - Note {:line_code=>["can\'t be blank", '
                    '"must be a valid line code"], :position=>["is incomplete"]}'
                },
            )

    # ------------------------------------------------------------ files and statuses

    def _file_raw(self, call: Call) -> web.Response:
        return web.Response(body=self._file_content(call), content_type="text/plain")

    def _file_head(self, call: Call) -> web.Response:
        # https://docs.gitlab.com/api/repository_files/#get-file-metadata-only
        content = self._file_content(call)
        digest = hashlib.sha256(content).hexdigest()
        return web.Response(
            status=200,
            headers={
                "X-Gitlab-File-Path": call.match["file"],
                "X-Gitlab-Size": str(len(content)),
                "X-Gitlab-Content-Sha256": digest,
            },
        )

    def _file_content(self, call: Call) -> bytes:
        """A file at `ref` (default branch if none): the commits kept here when they know
        the ref, else the files seeded by (ref, path)."""
        project = self._project(call)
        ref = str(call.params.get("ref") or project.default_branch)
        files = self.files_at(project, ref)
        if files is None:
            files = {p: c for (r, p), c in project.files.items() if r == ref}
        content = files.get(call.match["file"])
        if content is None:
            raise _not_found("File")
        return content

    def _status_post(self, call: Call) -> dict[str, Any]:
        project = self._project(call)
        sha = call.match["sha"]
        state = call.param("state")
        if state not in _STATUS_EVENTS:
            raise Reply(400, {"error": "state does not have a valid value"})
        if sha not in project.commits:
            raise _not_found("Commit")
        target_url = call.params.get("target_url")
        if target_url is not None and not str(target_url).startswith(("http://", "https://")):
            raise Reply(
                400,
                {"message": {"target_url": ["is blocked: Only allowed schemes are http, https"]}},
            )
        name = call.params.get("name") or call.params.get("context") or "default"
        live = next(
            (
                s
                for s in reversed(project.statuses)
                if s["sha"] == sha and s["name"] == name and s["status"] in _TRANSITIONS
            ),
            None,
        )
        if live is not None and state not in _TRANSITIONS[live["status"]]:
            event = _STATUS_EVENTS[state]
            raise Reply(
                400,
                {
                    "message": f"Cannot transition status via :{event} from :{live['status']} "
                    f'(Reason(s): Status cannot transition via "{event}")'
                },
            )
        status = live or {"id": next(self._ids), "sha": sha, "name": name, "ref": "main"}
        if live is None:
            project.statuses.append(status)
        status.update(
            status=state,
            description=call.params.get("description", status.get("description")),
            target_url=target_url or status.get("target_url"),
            author=call.user.entity(),
        )
        return dict(status)

    def _statuses(self, call: Call) -> web.Response:
        project = self._project(call)
        found = [s for s in project.statuses if s["sha"] == call.match["sha"]]
        return self._page(call, found)

    # ------------------------------------------------------------ commits and branches

    def _commit_entity(self, project: Project, sha: str) -> dict[str, Any]:
        message = project.messages.get(sha, "")
        return {
            "id": sha,
            "short_id": sha[:8],
            "title": message.split("\n", 1)[0],
            "message": message,
            "parent_ids": list(project.parents.get(sha, [])),
            "author_name": "Threadline",
            "web_url": f"http://gitlab.example/{project.path}/-/commit/{sha}",
        }

    def _branch_get(self, call: Call) -> dict[str, Any]:
        # https://docs.gitlab.com/api/branches/#get-single-repository-branch
        project = self._project(call)
        name = call.match["branch"]
        if name not in project.branches:
            raise _not_found("Branch")
        return {
            "name": name,
            "commit": self._commit_entity(project, project.branches[name]),
            "default": name == project.default_branch,
            "protected": False,
        }

    def _commit_get(self, call: Call) -> dict[str, Any]:
        # https://docs.gitlab.com/api/commits/#get-a-single-commit (a sha or a branch)
        project = self._project(call)
        sha = project.branches.get(call.match["sha"], call.match["sha"])
        if sha not in project.trees:
            raise _not_found("Commit")
        return self._commit_entity(project, sha)

    def _commit_diff(self, call: Call) -> web.Response:
        # https://docs.gitlab.com/api/commits/#get-the-diff-of-a-commit (against its first
        # parent); the fake writes no hunks.
        project = self._project(call)
        sha = call.match["sha"]
        if sha not in project.trees:
            raise _not_found("Commit")
        parents = project.parents.get(sha) or []
        before = project.trees.get(parents[0], {}) if parents else {}
        return self._page(call, _file_changes(before, project.trees[sha]))

    def _commit_create(self, call: Call) -> dict[str, Any]:
        """https://docs.gitlab.com/api/commits/#create-a-commit-with-multiple-files-and-actions

        `start_branch` or `start_sha` start `branch` as a new branch there, refused when
        it exists; without them `branch` must exist and the commit goes on top. Actions
        create, update and delete, refused as GitLab does: create on a file that is
        there, update or delete on one that is not.
        """
        project = self._project(call)
        branch = call.text("branch")
        message = call.text("commit_message")
        actions = call.param("actions")
        if not isinstance(actions, list) or not actions:
            raise Reply(400, {"error": "actions is empty"})
        start_branch, start_sha = call.params.get("start_branch"), call.params.get("start_sha")
        if start_branch is not None and start_sha is not None:
            raise Reply(400, {"error": "start_branch, start_sha are mutually exclusive"})
        if start_branch is not None or start_sha is not None:
            if branch in project.branches:
                raise Reply(
                    400,
                    {
                        "message": f"A branch called '{branch}' already exists. "
                        "Switch to that branch in order to make changes"
                    },
                )
            start = project.branches.get(str(start_branch)) if start_branch else str(start_sha)
            if start is None or start not in project.trees:
                # GitLab refuses an unknown start with 400; these words are the fake's.
                raise Reply(400, {"message": "Invalid start: no such branch or commit"})
        else:
            start = project.branches.get(branch)
            if start is None:
                raise Reply(
                    400, {"message": "You can only create or edit files when you are on a branch"}
                )
        files = dict(project.trees[start])
        modes = dict(project.modes.get(start, {}))
        for action in actions:
            self._apply_action(files, modes, action)
        sha = self._new_commit(project, files, [start], message, modes)
        project.branches[branch] = sha
        return self._commit_entity(project, sha)

    @staticmethod
    def _apply_action(files: dict[str, bytes], modes: dict[str, str], action: Any) -> None:
        if not isinstance(action, dict):
            raise Reply(400, {"error": "actions is invalid"})
        kind, path = action.get("action"), action.get("file_path")
        if kind not in ("create", "update", "delete", "move", "chmod"):
            raise Reply(400, {"error": "actions[action] does not have a valid value"})
        if not isinstance(path, str) or not path:
            raise _missing("actions[file_path]")
        if kind == "move":
            raise Reply(400, {"error": "this fake takes create, update, delete and chmod"})
        if kind == "chmod":
            # https://docs.gitlab.com/api/commits/: execute_filemode, read for chmod only
            if path not in files:
                raise Reply(400, {"message": "A file with this name doesn't exist"})
            flag = action.get("execute_filemode")
            if not isinstance(flag, bool):
                raise Reply(400, {"error": "actions[execute_filemode] is invalid"})
            if flag:
                modes[path] = "100755"
            else:
                modes.pop(path, None)
            return
        if kind == "create" and path in files:
            raise Reply(400, {"message": "A file with this name already exists"})
        if kind in ("update", "delete") and path not in files:
            raise Reply(400, {"message": "A file with this name doesn't exist"})
        if kind == "delete":
            del files[path]
            modes.pop(path, None)
            return
        content = action.get("content") or ""
        encoding = action.get("encoding", "text")
        if encoding == "base64":
            try:
                files[path] = base64.b64decode(str(content), validate=True)
            except ValueError:
                raise Reply(400, {"message": "content is not valid base64"}) from None
        elif encoding == "text":
            files[path] = str(content).encode("utf-8")
        else:
            raise Reply(400, {"error": "actions[encoding] does not have a valid value"})

    # ------------------------------------------------------------ opening merge requests

    def _mr_entity(self, project: Project, mr: MergeRequest) -> dict[str, Any]:
        return {
            "id": mr.iid + 5000,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "author": (mr.author or self.bot).entity(),
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "labels": list(mr.labels),
            "state": mr.state,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "sha": mr.head_sha,
            "web_url": f"http://gitlab.example/{project.path}/-/merge_requests/{mr.iid}",
        }

    def _mrs_list(self, call: Call) -> web.Response:
        # https://docs.gitlab.com/api/merge_requests/#list-project-merge-requests
        project = self._project(call)
        wanted = {
            key: call.params[key]
            for key in ("source_branch", "target_branch", "state")
            if call.params.get(key) not in (None, "", "all")
        }
        found = [
            self._mr_entity(project, mr)
            for mr in sorted(project.merge_requests.values(), key=lambda m: -m.iid)
            if all(getattr(mr, key) == value for key, value in wanted.items())
        ]
        return self._page(call, found)

    def _mr_create(self, call: Call) -> dict[str, Any]:
        # https://docs.gitlab.com/api/merge_requests/#create-mr
        project = self._project(call)
        source = call.text("source_branch")
        target = call.text("target_branch")
        title = call.text("title")
        for name in (source, target):
            if name not in project.branches:
                raise Reply(400, {"message": [f'Branch "{name}" does not exist']})
        for other in project.merge_requests.values():
            if other.state == "opened" and (other.source_branch, other.target_branch) == (
                source,
                target,
            ):
                raise Reply(
                    409,
                    {
                        "message": [
                            "Another open merge request already exists for this source "
                            f"branch: !{other.iid}"
                        ]
                    },
                )
        head, base = project.branches[source], project.branches[target]
        iid = max(project.merge_requests, default=0) + 1  # issues count apart
        diffs = [
            diff_file(c["new_path"], "", new_file=c["new_file"], deleted_file=c["deleted_file"])
            for c in _file_changes(project.trees[base], project.trees[head])
        ]
        mr = MergeRequest(iid, title, base, base, head, diffs)
        mr.source_branch, mr.target_branch = source, target
        mr.description = str(call.params.get("description") or "")
        project.merge_requests[iid] = mr
        return self._mr_entity(project, mr)

    def _issue_create(self, call: Call) -> dict[str, Any]:
        # https://docs.gitlab.com/api/issues/#new-issue (201, the issue with its iid)
        project = self._project(call)
        title = call.text("title")
        iid = max(project.issues, default=0) + 1  # merge requests count apart
        project.issues[iid] = title
        project.issue_bodies[iid] = str(call.params.get("description") or "")
        return {
            "id": 10_000 + iid,
            "iid": iid,
            "project_id": project.id,
            "title": title,
            "description": project.issue_bodies[iid],
            "state": "opened",
            "author": {"id": call.user.id, "username": call.user.username},
            "web_url": f"http://gitlab.example/{project.path}/-/issues/{iid}",
        }


def _file_changes(before: dict[str, bytes], after: dict[str, bytes]) -> list[dict[str, Any]]:
    """One entry (paths and flags, no hunks) per file that differs between two trees."""
    return [
        {
            "old_path": path,
            "new_path": path,
            "new_file": path not in before,
            "deleted_file": path not in after,
            "renamed_file": False,
            "diff": "",
        }
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


def _diff_lines(diff: str) -> list[tuple[str, int, int]]:
    """(kind, old counter, new counter) for every line in a file diff's hunks."""
    out: list[tuple[str, int, int]] = []
    old = new = 0
    for text in diff.split("\n"):
        header = _HUNK.match(text)
        if header:
            old, new = int(header[1]), int(header[2])
        elif text.startswith("+"):
            out.append(("added", old, new))
            new += 1
        elif text.startswith("-"):
            out.append(("removed", old, new))
            old += 1
        elif text.startswith(" "):
            out.append(("same", old, new))
            old += 1
            new += 1
    return out


def _line_exists(lines: list[tuple[str, int, int]], pair: tuple[Any, Any]) -> bool:
    """Whether (old_line, new_line) names a line: inside a hunk, or unchanged between them."""
    for kind, old, new in lines:
        wanted = {"added": (None, new), "removed": (old, None), "same": (old, new)}[kind]
        if pair == wanted:
            return True
    old_line, new_line = pair
    if not isinstance(old_line, int) or not isinstance(new_line, int):
        return False
    if any(kind != "removed" and new == new_line for kind, _, new in lines):
        return False  # inside a hunk, and not the pair found above
    # Between hunks a line keeps the shift (new - old) left by the last line before it.
    shift = 0
    for kind, old, new in lines:
        after = {"added": (old, new + 1), "removed": (old + 1, new), "same": (old + 1, new + 1)}
        after_old, after_new = after[kind]
        if after_new <= new_line:
            shift = after_new - after_old
    return new_line - old_line == shift


def _code(path: str, old: int, new: int) -> str:
    digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()
    return f"{digest}_{old}_{new}"
