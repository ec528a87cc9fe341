"""A stateful fake GitHub served by aiohttp on 127.0.0.1: the REST and GraphQL calls Threadline makes.

It keeps repositories, issues and pull requests, conversation and review comments
(replies carry `in_reply_to_id`), reviews, reactions, collaborator permissions, check
runs, commit statuses, PR files, diffs and file contents; a git object store per
repository (blobs, trees and commits named by git's own hashes, and refs) behind the Git
Data API, the contents API and the pulls API; one GitHub App with its
installations and installation tokens; and personal tokens. It also plays GitHub's side
of the App manifest flow: the web form that registers an App from a manifest and
redirects back with a one-time code, and `POST /app-manifests/{code}/conversions`. It answers as GitHub's
REST docs describe (https://docs.github.com/en/rest), including pagination by Link
header, and checks what a strict server would: the App JWT's RS256 signature against
the App's public key and its iat/exp claims, tokens and their expiry, the Accept,
X-GitHub-Api-Version and User-Agent headers, and each write's required fields (422
like GitHub when one is missing or wrong).

Every request is recorded (method, path, query, headers, JSON body, status). Faults
are queued by method and path pattern: a status with headers (5xx, 429, 403 rate
limits), a delay, or "apply the write, then lose the answer" (a 500, a proxy's 502, a
closed connection, or a hang). `random_faults` draws faults at random instead, for a
soak's flaky host, and `markers()` counts the bot's comments by their hidden marker (a
write posted twice shows as a count of 2).

    async with FakeGitHub(prefix="/api/v3", graphql_path="/api/graphql") as gh:  # GHES
        gh.install(1, ["octo-org/hello-world"])
        ... GitHubApp(session, app_id=gh.app_id, private_key=gh.private_key_pem,
                      api_url=gh.url, graphql_url=gh.graphql_url)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.git_http import GitServer, git_hash, tree_body
from tests.fakes.git_http import git as git_export

API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
JSON_TYPES = frozenset(
    {"application/vnd.github+json", "application/vnd.github.v3+json", "application/json"}
)
DIFF_TYPES = frozenset({"application/vnd.github.diff", "application/vnd.github.v3.diff"})
RAW_TYPES = frozenset({"application/vnd.github.raw+json", "application/vnd.github.raw"})
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
CHECK_STATUSES = frozenset({"queued", "in_progress", "completed"})
CHECK_CONCLUSIONS = frozenset(
    {
        "action_required",
        "cancelled",
        "failure",
        "neutral",
        "success",
        "skipped",
        "stale",
        "timed_out",
    }
)
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})
DOCS = "https://docs.github.com/rest"
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
LoseMode = Literal["500", "502", "close", "hang"]
LOSE_MODES: tuple[LoseMode, ...] = ("500", "502", "close", "hang")
MARKER = re.compile(r"<!-- threadline:(\S+) -->")
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_rsa_key() -> tuple[str, str]:
    """(private PEM, public PEM) for an App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
    return private, public_pem_of(private)


def public_pem_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


# ---------------------------------------------------------------- state


@dataclass
class Pull:
    """An issue, or a pull request when `pull` (GitHub numbers both alike)."""

    number: int
    title: str
    pull: bool
    head_sha: str = ""
    base_sha: str = ""
    state: str = "open"
    merged: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    diff: str = ""
    commits: set[str] = field(default_factory=set)
    head_ref: str = "feature"
    base_ref: str | None = None  # None: the repository's default branch
    head_repo: str | None = None  # a fork's full name; None: a branch of the repository
    body: str = ""
    author: str = "octocat"
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)


@dataclass
class Repo:
    full_name: str
    default_branch: str = "main"
    issues: dict[int, Pull] = field(default_factory=dict)
    contents: dict[tuple[str, str], bytes] = field(default_factory=dict)
    permissions: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The git object store: blobs, trees (entries: path, mode, type, sha), commits (tree,
    # parents, message) by their git hashes, and refs ("refs/heads/main") -> commit sha.
    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    git_commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


@dataclass
class Installation:
    id: int
    repos: set[str]
    suspended: bool = False


@dataclass
class Token:
    value: str
    login: str
    installation_id: int | None = None  # None: a personal token
    expires_at: float | None = None
    revoked: bool = False
    scopes: tuple[str, ...] = ()


@dataclass
class Recorded:
    method: str
    path: str  # below the REST prefix; the GraphQL endpoint's own path for GraphQL
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Fault:
    method: str
    path: str  # a regular expression matched against the whole (prefix-less) path
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    lose: LoseMode | None = None
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and re.fullmatch(self.path, path) is not None


@dataclass
class RandomFaults:
    """Each request matching `methods` and `path` fails with probability `rate`; of
    those, the share `after_apply` is applied first and then loses its answer (one of
    `lose_modes`), the rest answer one of `statuses` without being applied.
    `injected` counts what was done, by "before:<status>" and "after:<mode>"."""

    rate: float
    after_apply: float
    methods: tuple[str, ...]
    path: str
    statuses: tuple[int, ...]
    lose_modes: tuple[LoseMode, ...]
    rng: random.Random
    injected: Counter[str] = field(default_factory=Counter)

    def draw(self, method: str, path: str) -> Fault | None:
        if method not in self.methods or re.fullmatch(self.path, path) is None:
            return None
        if self.rng.random() >= self.rate:
            return None
        if self.rng.random() < self.after_apply:
            mode = self.rng.choice(self.lose_modes)
            self.injected[f"after:{mode}"] += 1
            return Fault(method, path, lose=mode)
        status = self.rng.choice(self.statuses)
        self.injected[f"before:{status}"] += 1
        return Fault(method, path, status)

    @property
    def total(self) -> int:
        return sum(self.injected.values())


class Reply(Exception):
    """Raised by a handler to answer at once (errors)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def error(
    status: int,
    message: str,
    *,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return Reply(web.json_response(body, status=status, headers=headers))


def missing(resource: str, field_name: str) -> Reply:
    return error(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": "missing_field", "field": field_name}],
    )


def invalid(resource: str, field_name: str) -> Reply:
    return error(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": "invalid", "field": field_name}],
    )


def public(item: dict[str, Any]) -> dict[str, Any]:
    """An item as GitHub shows it: without the fake's own bookkeeping keys."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


@dataclass
class Ctx:
    request: web.Request
    record: Recorded
    params: dict[str, str]
    token: Token | None = None

    @property
    def body(self) -> dict[str, Any]:
        if not isinstance(self.record.json, dict):
            raise error(400, "Problems parsing JSON")
        return self.record.json


Handler = Callable[[Ctx], web.Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    auth: Literal["jwt", "token", "none"] = "token"
    accepts: frozenset[str] = JSON_TYPES


def _route(
    method: str,
    path: str,
    handler: str,
    auth: Literal["jwt", "token", "none"] = "token",
    accepts: frozenset[str] = JSON_TYPES,
) -> Route:
    return Route(method, re.compile(path), handler, auth, accepts)


ROUTES = (
    _route("GET", r"/app", "get_app", "jwt"),
    _route(
        "POST", r"/app/installations/(?P<installation_id>\d+)/access_tokens", "create_token", "jwt"
    ),
    _route("GET", r"/app/installations", "list_installations", "jwt"),
    _route("GET", r"/app/hook/deliveries", "list_hook_deliveries", "jwt"),
    _route("POST", r"/app/hook/deliveries/(?P<delivery_id>\d+)/attempts", "redeliver_hook", "jwt"),
    _route("GET", r"/app/hook/deliveries/(?P<delivery_id>\d+)", "get_hook_delivery", "jwt"),
    _route("GET", r"/user", "get_user"),
    # https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest (no auth)
    _route("POST", r"/app-manifests/(?P<code>[^/]+)/conversions", "convert_manifest", "none"),
    _route("POST", REPO + r"/issues", "create_issue"),
    _route("GET", REPO + r"/issues/(?P<number>\d+)/comments", "list_issue_comments"),
    _route("POST", REPO + r"/issues/(?P<number>\d+)/comments", "create_issue_comment"),
    _route("PATCH", REPO + r"/issues/comments/(?P<comment_id>\d+)", "update_issue_comment"),
    _route("POST", REPO + r"/issues/comments/(?P<comment_id>\d+)/reactions", "react_issue_comment"),
    _route("GET", REPO + r"/issues/(?P<number>\d+)", "get_issue"),
    _route("GET", REPO + r"/pulls/(?P<number>\d+)/comments", "list_review_comments"),
    _route("GET", REPO + r"/pulls/comments/(?P<comment_id>\d+)", "get_review_comment"),
    _route(
        "POST",
        REPO + r"/pulls/(?P<number>\d+)/comments/(?P<comment_id>\d+)/replies",
        "reply_review_comment",
    ),
    _route("PATCH", REPO + r"/pulls/comments/(?P<comment_id>\d+)", "update_review_comment"),
    _route("POST", REPO + r"/pulls/comments/(?P<comment_id>\d+)/reactions", "react_review_comment"),
    _route("POST", REPO + r"/pulls/(?P<number>\d+)/reviews", "create_review"),
    _route(
        "GET",
        REPO + r"/pulls/(?P<number>\d+)/reviews/(?P<review_id>\d+)/comments",
        "list_comments_of_review",
    ),
    _route("GET", REPO + r"/pulls/(?P<number>\d+)", "get_pull", accepts=JSON_TYPES | DIFF_TYPES),
    _route("GET", REPO + r"/pulls/(?P<number>\d+)/files", "list_pull_files"),
    _route("GET", REPO + r"/contents/(?P<path>.+)", "get_contents", accepts=JSON_TYPES | RAW_TYPES),
    _route("GET", REPO, "get_repo"),
    _route("POST", REPO + r"/git/blobs", "create_blob"),
    _route("GET", REPO + r"/git/commits/(?P<sha>[^/]+)", "get_git_commit"),
    _route("POST", REPO + r"/git/commits", "create_git_commit"),
    _route("GET", REPO + r"/git/trees/(?P<sha>[^/]+)", "get_tree"),
    _route("POST", REPO + r"/git/trees", "create_tree"),
    _route("GET", REPO + r"/git/ref/(?P<ref>.+)", "get_ref"),
    _route("POST", REPO + r"/git/refs", "create_ref"),
    _route("PATCH", REPO + r"/git/refs/(?P<ref>.+)", "update_ref"),
    _route("GET", REPO + r"/pulls", "list_pulls"),
    _route("POST", REPO + r"/pulls", "create_pull"),
    _route("GET", REPO + r"/collaborators/(?P<username>[^/]+)/permission", "get_permission"),
    _route("GET", REPO + r"/commits/(?P<ref>[^/]+)/check-runs", "list_check_runs"),
    _route("POST", REPO + r"/check-runs", "create_check_run"),
    _route("PATCH", REPO + r"/check-runs/(?P<check_run_id>\d+)", "update_check_run"),
    _route("POST", REPO + r"/statuses/(?P<sha>[^/]+)", "create_status"),
)


class FakeGitHub:
    """One fake github.com (or GHES, with `prefix="/api/v3"`), with one GitHub App."""

    def __init__(
        self,
        *,
        prefix: str = "",
        graphql_path: str | None = None,
        app_id: int = 4242,
        app_slug: str = "threadline-test",
        private_key_pem: str | None = None,
        clock: Callable[[], float] = time.time,
        token_lifetime: float = 3600.0,
        require_api_version: bool = True,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.graphql_path = graphql_path or (
            self.prefix.removesuffix("/v3") + "/graphql" if self.prefix else "/graphql"
        )
        self.app_id = app_id
        self.app_slug = app_slug
        if private_key_pem is None:
            private_key_pem, _ = new_rsa_key()
        self.private_key_pem = private_key_pem
        self.public_key_pem = public_pem_of(private_key_pem)
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.require_api_version = require_api_version

        self.repos: dict[str, Repo] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        self.users: set[str] = set()
        self.issue_comments: dict[int, dict[str, Any]] = {}
        self.review_comments: dict[int, dict[str, Any]] = {}
        self.reviews: dict[int, dict[str, Any]] = {}
        self.reactions: list[dict[str, Any]] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.resolved: set[int] = set()
        # The App's webhook: past deliveries (newest last) and where redeliveries go.
        self.hook_deliveries: list[dict[str, Any]] = []
        self.webhook_url: str | None = None
        self.webhook_secret = ""
        self._redeliveries: set[asyncio.Task[None]] = set()
        # The manifest flow: one-time codes -> (manifest, when issued); answers given.
        self.manifest_codes: dict[str, tuple[dict[str, Any], float]] = {}
        self.conversions: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.random: RandomFaults | None = None
        self._ids = itertools.count(1001)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Git over smart HTTP on the web host (`/<owner>/<name>.git/...`): real
        # repositories under `git_root` (tests.fakes.git_http.make_repo), answered for
        # `Basic x-access-token:<installation token>` of an installation with that repo.
        self.git_root: Path | None = None
        self.git_auth: list[str | None] = []  # the Authorization header of each git request

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeGitHub:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        # The browser side of the manifest flow lives on the web host, outside any prefix.
        app.router.add_post("/settings/apps/new", self._manifest_form)
        app.router.add_post("/organizations/{org}/settings/apps/new", self._manifest_form)
        app.router.add_route("*", "/{owner}/{name}.git/{tail:.*}", self._git)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The REST base URL (api_url)."""
        return self.root + self.prefix

    @property
    def graphql_url(self) -> str:
        return self.root + self.graphql_path

    # ------------------------------------------------------------ seeding

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> Repo:
        return self.repos.setdefault(full_name, Repo(full_name, default_branch))

    def add_issue(self, repo: str, number: int, title: str = "An issue") -> Pull:
        issue = Pull(number, title, pull=False)
        self.add_repo(repo).issues[number] = issue
        return issue

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_sha: str,
        base_sha: str,
        title: str = "A pull request",
        files: Iterable[dict[str, Any]] = (),
        diff: str = "",
        commits: Iterable[str] = (),
        head_repo: str | None = None,
    ) -> Pull:
        pull = Pull(number, title, True, head_sha, base_sha, files=list(files), diff=diff)
        pull.head_repo = head_repo
        pull.commits = {head_sha, *commits}
        self.add_repo(repo).issues[number] = pull
        return pull

    def add_file(self, repo: str, path: str, content: bytes, *, ref: str = "main") -> None:
        self.add_repo(repo).contents[(ref, path)] = content

    def add_commit(
        self,
        repo: str,
        files: dict[str, bytes],
        *,
        parents: Iterable[str] = (),
        branch: str | None = "main",
        message: str = "A commit",
        executable: Iterable[str] = (),
    ) -> str:
        """A commit holding exactly `files` (paths in `executable` get mode 100755), moving
        `branch` (None: no branch) to it; returns its sha."""
        found = self.add_repo(repo)
        modes = set(executable)
        flat = {
            path: ("100755" if path in modes else "100644", self._store_blob(found, content))
            for path, content in files.items()
        }
        sha = self._store_commit(found, self._store_tree(found, flat), list(parents), message)
        if branch is not None:
            found.refs["refs/heads/" + branch] = sha
        return sha

    def files_at(self, repo: str, ref: str) -> dict[str, bytes] | None:
        """Every file at a branch or commit of the object store, or None if it has neither."""
        found = self.repos[repo]
        sha = self._resolve(found, ref)
        if sha is None or sha not in found.git_commits:
            return None  # no such ref, or a commit only a real repository (git_root) has
        flat = self._flatten(found, found.git_commits[sha]["tree"])
        return {path: found.blobs[blob] for path, (_, blob) in flat.items()}

    def modes_at(self, repo: str, ref: str) -> dict[str, str]:
        found = self.repos[repo]
        sha = self._resolve(found, ref)
        assert sha is not None, f"no {ref} in {repo}"
        return {p: m for p, (m, _) in self._flatten(found, found.git_commits[sha]["tree"]).items()}

    def _store_blob(self, repo: Repo, content: bytes) -> str:
        sha = git_hash("blob", content)
        repo.blobs[sha] = content
        return sha

    def _store_tree(self, repo: Repo, flat: dict[str, tuple[str, str]]) -> str:
        """The tree (and its subtrees) holding `flat` (path -> (mode, blob sha))."""
        entries: list[dict[str, str]] = []
        below: dict[str, dict[str, tuple[str, str]]] = {}
        for path, (mode, sha) in flat.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = (mode, sha)
            else:
                entries.append({"path": path, "mode": mode, "type": "blob", "sha": sha})
        for name, inner in below.items():
            sub = self._store_tree(repo, inner)
            entries.append({"path": name, "mode": "040000", "type": "tree", "sha": sub})
        sha = git_hash("tree", tree_body(entries))
        repo.trees[sha] = entries
        return sha

    def _store_commit(self, repo: Repo, tree: str, parents: list[str], message: str) -> str:
        stamp = f"Threadline Test <test@example.com> {int(self.clock())} +0000"
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents)]
        lines += [f"author {stamp}", f"committer {stamp}", "", message]
        body = "\n".join(lines).encode()
        sha = git_hash("commit", body)
        repo.git_commits[sha] = {"tree": tree, "parents": parents, "message": message, "body": body}
        return sha

    def export_git(self, repo: str) -> Path:
        """The repository's object store and branches as a real bare repository under
        `git_root` (same object names: the fake hashes as git does), so git fetches the
        very commits the REST API knows."""
        assert self.git_root is not None, "set git_root first"
        found = self.repos[repo]
        bare = self.git_root / f"{repo}.git"
        bare.mkdir(parents=True, exist_ok=True)
        git_export(bare, "init", "--quiet", "--bare")
        objects = [("blob", body) for body in found.blobs.values()]
        objects += [("tree", tree_body(entries)) for entries in found.trees.values()]
        objects += [("commit", c["body"]) for c in found.git_commits.values() if "body" in c]
        for kind, body in objects:
            git_export(bare, "hash-object", "-t", kind, "-w", "--literally", "--stdin", data=body)
        for ref, sha in found.refs.items():
            git_export(bare, "update-ref", ref, sha)
        return bare

    def _flatten(self, repo: Repo, tree: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        flat: dict[str, tuple[str, str]] = {}
        for entry in repo.trees[tree]:
            path = prefix + entry["path"]
            if entry["type"] == "tree":
                flat.update(self._flatten(repo, entry["sha"], path + "/"))
            else:
                flat[path] = (entry["mode"], entry["sha"])
        return flat

    def _resolve(self, repo: Repo, ref: str) -> str | None:
        """A branch name, "heads/<name>", a full ref or a commit sha -> the commit sha."""
        for name in (ref, "refs/" + ref, "refs/heads/" + ref):
            if name in repo.refs:
                return repo.refs[name]
        return ref if ref in repo.git_commits else None

    def add_user(self, login: str) -> None:
        self.users.add(login)

    def set_permission(
        self, repo: str, login: str, permission: str, role_name: str | None = None
    ) -> None:
        self.users.add(login)
        self.add_repo(repo).permissions[login] = (permission, role_name or permission)

    def install(self, installation_id: int, repos: Iterable[str]) -> Installation:
        names = set(repos)
        for name in names:
            self.add_repo(name)
        installation = Installation(installation_id, names)
        self.installations[installation_id] = installation
        return installation

    def uninstall(self, installation_id: int) -> None:
        self.installations.pop(installation_id, None)
        self.revoke_installation(installation_id)

    def suspend(self, installation_id: int) -> None:
        self.installations[installation_id].suspended = True
        self.revoke_installation(installation_id)

    def add_personal_token(self, token: str, login: str, scopes: Iterable[str] = ("repo",)) -> None:
        self.users.add(login)
        self.tokens[token] = Token(token, login, scopes=tuple(scopes))

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def revoke_installation(self, installation_id: int) -> None:
        for token in self.tokens.values():
            if token.installation_id == installation_id:
                token.revoked = True

    def expire(self, token: str) -> None:
        """End one token now, whatever `expires_at` told the client."""
        self.tokens[token].expires_at = self.clock()

    def expire_installation(self, installation_id: int) -> None:
        """End the installation's tokens now, whatever `expires_at` told the client."""
        for token in self.tokens.values():
            if token.installation_id == installation_id:
                token.expires_at = self.clock()

    def installation_tokens(self, installation_id: int) -> list[Token]:
        return [t for t in self.tokens.values() if t.installation_id == installation_id]

    def add_issue_comment(
        self, repo: str, number: int, body: str, *, login: str = "octocat"
    ) -> dict[str, Any]:
        return self._new_issue_comment(repo, number, body, self._user(login))

    def add_review_comment(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        path: str = "README.md",
        line: int = 1,
        in_reply_to: int | None = None,
        login: str = "octocat",
    ) -> dict[str, Any]:
        shape = {"path": path, "line": line, "side": "RIGHT", "body": body}
        pull = self.repos[repo].issues[number]
        return self._new_review_comment(
            repo, pull, shape, self._user(login), review_id=None, reply_to=in_reply_to
        )

    def manifest_code(self, manifest: dict[str, Any]) -> str:
        """A code as GitHub hands out once someone registers an App from `manifest`."""
        code = secrets.token_hex(10)
        self.manifest_codes[code] = (manifest, self.clock())
        return code

    async def _manifest_form(self, request: web.Request) -> web.Response:
        """What github.com/settings/apps/new does with a posted manifest once the person
        clicks "Create": register the App and send the browser to `redirect_url` with a
        code and the caller's `state`.

        https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
        """
        form = await request.post()
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            return web.Response(status=422, text="the manifest is not JSON")
        hook = manifest.get("hook_attributes") if isinstance(manifest, dict) else None
        if not isinstance(hook, dict) or not hook.get("url") or not manifest.get("url"):
            return web.Response(status=422, text="the manifest needs url and hook_attributes.url")
        redirect = str(manifest.get("redirect_url") or "")
        if not redirect.startswith(("http://", "https://")):
            return web.Response(status=422, text="the manifest needs a redirect_url")
        query = {"code": self.manifest_code(manifest)}
        if "state" in request.query:
            query["state"] = request.query["state"]
        raise web.HTTPFound(f"{redirect}?{urlencode(query)}")

    def thread_node_id(self, root: int) -> str:
        return f"PRRT_kwDO{root}"

    # ------------------------------------------------------------ faults and records

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with `status` (nothing is applied)."""
        self.faults.append(Fault(method, path, status, dict(headers or {}), body, times=times))

    def delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next matching requests for `seconds`, then handle them as usual."""
        self.faults.append(Fault(method, path, delay=seconds, times=times))

    def lose_response(
        self, method: str, path: str, mode: LoseMode = "502", *, times: int = 1
    ) -> None:
        """Apply the next matching requests, then lose the answer: "500" answers GitHub's
        JSON 500, "502" a proxy's HTML page, "close" resets the connection, "hang" never
        answers (until the fake stops; the client's timeout ends it)."""
        self.faults.append(Fault(method, path, lose=mode, times=times))

    def random_faults(
        self,
        rate: float,
        *,
        after_apply: float = 0.5,
        methods: Iterable[str] = WRITE_METHODS,
        path: str = r"/repos/.*",
        statuses: Iterable[int] = (500, 502, 503),
        lose_modes: Iterable[LoseMode] = ("500", "close", "hang"),
        seed: int | None = 0,
    ) -> RandomFaults:
        """Fail a share `rate` of the matching requests from now on (queued faults go
        first); `rate=0` stops. Returns the tally of what was injected."""
        self.random = RandomFaults(
            rate,
            after_apply,
            tuple(methods),
            path,
            tuple(statuses),
            tuple(lose_modes),
            random.Random(seed),
        )
        return self.random

    def markers(self) -> Counter[str]:
        """How many conversation and review comments carry each `<!-- threadline:KEY -->`."""
        found: Counter[str] = Counter()
        for comment in itertools.chain(self.issue_comments.values(), self.review_comments.values()):
            found.update(MARKER.findall(str(comment.get("body") or "")))
        return found

    def rate_limited(
        self,
        method: str,
        path: str,
        kind: Literal["primary", "secondary", "429"],
        *,
        seconds: int = 60,
        times: int = 1,
    ) -> None:
        """Answer as GitHub does past a rate limit: wait `seconds` before trying again.

        https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
        primary: 403 with x-ratelimit-remaining 0 and x-ratelimit-reset; secondary:
        403 with Retry-After and a message saying so; 429: Too Many Requests, Retry-After.
        """
        if kind == "primary":
            reset = str(int(self.clock()) + seconds)
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
            message = "API rate limit exceeded for installation."
            status = 403
        else:
            headers = {"Retry-After": str(seconds)}
            message = "You have exceeded a secondary rate limit. Please wait a few minutes."
            status = 403 if kind == "secondary" else 429
        body = {"message": message, "documentation_url": DOCS}
        self.fail(method, path, status, headers=headers, body=body, times=times)

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests whose method matches and whose path fully matches `path` (regex)."""
        return [
            r
            for r in self.requests
            if r.method == method and re.fullmatch(path, r.path) is not None
        ]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return self.random.draw(method, path) if self.random is not None else None

    # ------------------------------------------------------------ dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        fault = self._take_fault(record.method, record.path)
        if fault is not None and fault.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
        if fault is not None and fault.status is not None:
            response = self._fault_response(fault)
        else:
            try:
                response = self._handle(request, record)
            except Reply as reply:
                response = reply.response
        record.status = response.status
        if fault is not None and fault.lose is not None:
            return await self._lose(request, fault.lose)
        for name, value in self._common_headers().items():
            response.headers.setdefault(name, value)
        return response

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = request.path
        if path == self.graphql_path:
            inner = path
        elif self.prefix and path.startswith(self.prefix + "/"):
            inner = path[len(self.prefix) :]
        elif not self.prefix:
            inner = path
        else:
            inner = "!outside-prefix" + path
        record = Recorded(
            request.method,
            inner,
            path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.requests.append(record)
        return record

    def _fault_response(self, fault: Fault) -> web.Response:
        body = fault.body
        if body is None:
            body = {"message": f"fault injected: HTTP {fault.status}", "documentation_url": DOCS}
        return web.json_response(body, status=fault.status or 500, headers=fault.headers)

    async def _lose(self, request: web.Request, mode: LoseMode) -> web.StreamResponse:
        if mode == "500":
            return web.json_response(
                {"message": "Server Error", "documentation_url": DOCS}, status=500
            )
        if mode == "502":
            return web.Response(
                status=502,
                text="<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        if mode == "hang":
            await self._closing.wait()
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=502)

    def _common_headers(self) -> dict[str, str]:
        # https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#checking-the-status-of-your-rate-limit
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(self.clock()) + 3600),
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": secrets.token_hex(8).upper(),
        }

    def _handle(self, request: web.Request, record: Recorded) -> web.Response:
        self._check_common_headers(record)
        if record.method == "POST" and record.path == self.graphql_path:
            ctx = Ctx(request, record, {})
            ctx.token = self._token_auth(record, graphql=True)
            return self._graphql(ctx)
        route, params = self._find_route(record)
        accept = record.headers.get("accept", "")
        if accept not in route.accepts:
            raise error(415, f"Unsupported 'Accept' header: {accept!r}")
        ctx = Ctx(request, record, params)
        if route.auth == "jwt":
            self._jwt_auth(record)
        elif route.auth == "token":
            ctx.token = self._token_auth(record)
        handler: Handler = getattr(self, "_" + route.handler)
        return handler(ctx)

    def _check_common_headers(self, record: Recorded) -> None:
        if not record.headers.get("user-agent"):
            # https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api#user-agent
            raise error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            )
        version = record.headers.get("x-github-api-version")
        if version is None and self.require_api_version:
            raise error(400, "This fake requires the X-GitHub-Api-Version header")
        if version is not None and version not in API_VERSIONS:
            # https://docs.github.com/en/rest/about-the-rest-api/api-versions
            raise error(400, f"API version {version} is not supported.")

    def _find_route(self, record: Recorded) -> tuple[Route, dict[str, str]]:
        for route in ROUTES:
            match = route.pattern.fullmatch(record.path)
            if match is not None and route.method == record.method:
                return route, match.groupdict()
        raise error(404, "Not Found")  # GitHub answers 404 for a wrong method too

    # ------------------------------------------------------------ authentication

    def _jwt_auth(self, record: Recorded) -> None:
        # https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
        scheme, _, credential = record.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise error(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                credential,
                self.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["iat", "exp", "iss"],
                },
            )
        except jwt.PyJWTError:
            raise error(401, "A JSON web token could not be decoded") from None
        now = self.clock()
        if str(claims["iss"]) != str(self.app_id):
            raise error(401, "Integration not found")
        if not isinstance(claims["iat"], int) or claims["iat"] > now + 1:
            raise error(
                401,
                "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
            )
        if not isinstance(claims["exp"], int) or claims["exp"] <= now:
            raise error(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
            )
        if claims["exp"] > now + 600 or claims["exp"] - claims["iat"] > 660:
            raise error(401, "'Expiration time' claim ('exp') is too far in the future")

    async def _git(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization")
        self.git_auth.append(given)
        repo = f"{request.match_info['owner']}/{request.match_info['name']}"
        scheme, _, value = (given or "").partition(" ")
        user, _, secret = (
            base64.b64decode(value).decode(errors="replace").partition(":")
            if scheme == "Basic"
            else ("", "", "")
        )
        token = self.tokens.get(secret) if user == "x-access-token" else None
        allowed = (
            token is not None
            and not token.revoked
            and (token.expires_at is None or self.clock() < token.expires_at)
            and self._can_see(token, repo)
        )
        if self.git_root is None or not allowed:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="GitHub"'})
        return await GitServer(self.git_root, given or "").handle(request)

    def _token_auth(self, record: Recorded, *, graphql: bool = False) -> Token:
        header = record.headers.get("authorization")
        if not header:
            message = (
                "This endpoint requires you to be authenticated."
                if graphql
                else "Requires authentication"
            )
            raise error(401, message)
        scheme, _, value = header.partition(" ")
        token = self.tokens.get(value) if scheme.lower() in ("token", "bearer") else None
        if token is None or token.revoked:
            raise error(401, "Bad credentials")
        if token.expires_at is not None and self.clock() >= token.expires_at:
            raise error(401, "Bad credentials")
        return token

    def _user(self, login: str) -> dict[str, Any]:
        bot = login.endswith("[bot]")
        return {
            "login": login,
            "id": 10_000 + sum(login.encode()),
            "type": "Bot" if bot else "User",
            "site_admin": False,
            "html_url": f"{self.root}/{login}",
        }

    def _actor(self, ctx: Ctx) -> dict[str, Any]:
        assert ctx.token is not None
        return self._user(ctx.token.login)

    def _repo(self, ctx: Ctx) -> Repo:
        name = f"{ctx.params['owner']}/{ctx.params['repo']}"
        repo = self.repos.get(name)
        if repo is None or not self._can_see(ctx.token, name):
            raise error(404, "Not Found")
        return repo

    def _can_see(self, token: Token | None, repo: str) -> bool:
        if token is None:
            return False
        if token.installation_id is None:
            return True
        installation = self.installations.get(token.installation_id)
        return installation is not None and repo in installation.repos

    def _pull(self, ctx: Ctx, *, pull_only: bool = True) -> tuple[Repo, Pull]:
        repo = self._repo(ctx)
        issue = repo.issues.get(int(ctx.params["number"]))
        if issue is None or (pull_only and not issue.pull):
            raise error(404, "Not Found")
        return repo, issue

    # ------------------------------------------------------------ paging

    def _paged(self, ctx: Ctx, items: list[Any], *, key: str | None = None) -> web.Response:
        # https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
        query = ctx.record.query
        try:
            per_page = max(1, min(int(query.get("per_page", 30)), 100))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            raise error(422, "Invalid pagination parameters") from None
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(len(items) / per_page))

        def link(number: int) -> str:
            return f"{self.root}{ctx.record.raw_path}?{urlencode({**query, 'page': number})}"

        links = []
        if page < last:
            links += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            links += [f'<{link(1)}>; rel="first"', f'<{link(page - 1)}>; rel="prev"']
        headers = {"Link": ", ".join(links)} if links else {}
        body: Any = chunk if key is None else {"total_count": len(items), key: chunk}
        return web.json_response(body, headers=headers)

    # ------------------------------------------------------------ apps and users

    def _get_app(self, ctx: Ctx) -> web.Response:
        return web.json_response(
            {
                "id": self.app_id,
                "slug": self.app_slug,
                "name": self.app_slug.replace("-", " ").title(),
                "owner": self._user("octo-org"),
                "permissions": {"checks": "write", "issues": "write", "pull_requests": "write"},
            }
        )

    def _convert_manifest(self, ctx: Ctx) -> web.Response:
        # A code works once, within an hour; the App it names is this fake's one App
        # (so the returned key signs JWTs the fake accepts), under the manifest's name.
        issued = self.manifest_codes.pop(ctx.params["code"], None)
        if issued is None or self.clock() - issued[1] > 3600:
            raise error(404, "Not Found")
        manifest, _ = issued
        self.webhook_url = str(manifest["hook_attributes"]["url"])
        self.webhook_secret = secrets.token_hex(20)
        now = iso(self.clock())
        answer = {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": f"A_kwDO{self.app_id}",
            "owner": self._user("octo-org"),
            "name": manifest.get("name") or self.app_slug,
            "description": manifest.get("description"),
            "external_url": manifest["url"],
            "html_url": f"{self.root}/apps/{self.app_slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": manifest.get("default_permissions") or {},
            "events": manifest.get("default_events") or [],
            "client_id": "Iv1." + secrets.token_hex(8),
            "client_secret": secrets.token_hex(20),
            "webhook_secret": self.webhook_secret,
            "pem": self.private_key_pem,
        }
        self.conversions.append(answer)
        return web.json_response(answer, status=201)

    def _create_token(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
        installation = self.installations.get(int(ctx.params["installation_id"]))
        if installation is None:
            raise error(404, "Not Found")
        if installation.suspended:
            raise error(403, "This installation has been suspended")
        value = "ghs_" + secrets.token_urlsafe(27)
        expires_at = self.clock() + self.token_lifetime
        self.tokens[value] = Token(value, f"{self.app_slug}[bot]", installation.id, expires_at)
        return web.json_response(
            {
                "token": value,
                "expires_at": iso(expires_at),
                "permissions": {"checks": "write", "contents": "read", "issues": "write"},
                "repository_selection": "selected",
            },
            status=201,
        )

    def _list_installations(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/apps/apps#list-installations-for-the-authenticated-app
        items = [
            {
                "id": i.id,
                "account": self._user("octo-org"),
                "app_id": self.app_id,
                "target_type": "Organization",
                "suspended_at": iso(self.clock()) if i.suspended else None,
                "permissions": {"issues": "write", "pull_requests": "write", "checks": "write"},
            }
            for i in self.installations.values()
        ]
        return self._paged(ctx, items)

    def _list_hook_deliveries(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
        by_time = sorted(self.hook_deliveries, key=lambda d: (d["delivered_at"], d["id"]))
        newest_first = [public(d) for d in reversed(by_time)]
        return self._paged(ctx, newest_first)

    def _get_hook_delivery(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/apps/webhooks#get-a-delivery-for-an-app-webhook:
        # the list's fields, plus the request (headers, parsed payload) and our answer.
        wanted = int(ctx.params["delivery_id"])
        found = next((d for d in self.hook_deliveries if d["id"] == wanted), None)
        if found is None:
            raise error(404, "Not Found")
        headers = {
            "Accept": "*/*",
            "content-type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Delivery": found["guid"],
            "X-GitHub-Event": found["event"],
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature": "sha1=" + "0" * 40,
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
        }
        detail = {
            **public(found),
            "url": self.webhook_url or "",
            "request": {"headers": headers, "payload": json.loads(found["_body"])},
            "response": {"headers": {}, "payload": None},
        }
        return web.json_response(detail)

    def _redeliver_hook(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook
        wanted = int(ctx.params["delivery_id"])
        found = next((d for d in self.hook_deliveries if d["id"] == wanted), None)
        if found is None:
            raise error(404, "Not Found")
        task = asyncio.get_running_loop().create_task(self._send_hook(found, redelivery=True))
        self._redeliveries.add(task)
        task.add_done_callback(self._redeliveries.discard)
        return web.json_response({}, status=202)

    def add_hook_delivery(
        self, guid: str, event: str, payload: dict[str, Any], *, status_code: int, ago: float = 60
    ) -> dict[str, Any]:
        """A delivery the App's webhook made `ago` seconds back, answered `status_code`."""
        body = json.dumps(payload).encode("utf-8")
        entry = {
            "id": next(self._ids),
            "guid": guid,
            "delivered_at": iso(self.clock() - ago),
            "redelivery": False,
            "duration": 0.1,
            "status": "OK" if 200 <= status_code < 300 else "failed",
            "status_code": status_code,
            "event": event,
            "action": payload.get("action"),
            "installation_id": (payload.get("installation") or {}).get("id"),
            "repository_id": (payload.get("repository") or {}).get("id"),
            "_body": body,
        }
        self.hook_deliveries.append(entry)
        return entry

    async def _send_hook(self, entry: dict[str, Any], *, redelivery: bool) -> None:
        """POST a delivery to `webhook_url` as GitHub would, and log the attempt."""
        body: bytes = entry["_body"]
        signature = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": entry["event"],
            "X-GitHub-Delivery": entry["guid"],
            "X-Hub-Signature-256": "sha256=" + signature,
            "User-Agent": "GitHub-Hookshot/fake",
        }
        status = 0
        if self.webhook_url is not None:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(self.webhook_url, data=body, headers=headers) as resp,
                ):
                    status = resp.status
            except aiohttp.ClientError:
                status = 0
        copy = {**entry, "id": next(self._ids), "redelivery": redelivery, "status_code": status}
        copy["delivered_at"] = iso(self.clock())
        copy["status"] = "OK" if 200 <= status < 300 else "failed"
        self.hook_deliveries.append(copy)

    async def settle_redeliveries(self) -> None:
        """Wait until every redelivery asked for has been sent."""
        while self._redeliveries:
            await asyncio.gather(*self._redeliveries)

    def _get_user(self, ctx: Ctx) -> web.Response:
        assert ctx.token is not None
        if ctx.token.installation_id is not None:
            raise error(403, "Resource not accessible by integration")
        return web.json_response(
            self._user(ctx.token.login), headers={"X-OAuth-Scopes": ", ".join(ctx.token.scopes)}
        )

    # ------------------------------------------------------------ issue comments

    def _new_issue_comment(
        self, repo: str, number: int, body: str, user: dict[str, Any]
    ) -> dict[str, Any]:
        cid = next(self._ids)
        now = iso(self.clock())
        kind = "pull" if self.repos[repo].issues[number].pull else "issues"
        comment = {
            "id": cid,
            "node_id": f"IC_kwDO{cid}",
            "url": f"{self.url}/repos/{repo}/issues/comments/{cid}",
            "html_url": f"{self.root}/{repo}/{kind}/{number}#issuecomment-{cid}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
            "body": body,
            "user": user,
            "created_at": now,
            "updated_at": now,
            "author_association": "NONE",
            "_repo": repo,
            "_number": number,
        }
        self.issue_comments[cid] = comment
        return comment

    def _create_issue(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/issues/issues#create-an-issue (201, the issue)
        repo = self._repo(ctx)
        title = ctx.body.get("title")
        if not isinstance(title, str | int) or not str(title).strip():
            raise missing("Issue", "title")
        number = max(repo.issues, default=0) + 1  # issues and pull requests count together
        issue = Pull(number, str(title), pull=False, body=str(ctx.body.get("body") or ""))
        repo.issues[number] = issue
        return web.json_response(
            {
                "id": 50_000 + number,
                "number": number,
                "title": issue.title,
                "body": issue.body,
                "state": "open",
                "user": self._actor(ctx),
                "url": f"{self.url}/repos/{repo.full_name}/issues/{number}",
                "html_url": f"https://github.com/{repo.full_name}/issues/{number}",
            },
            status=201,
        )

    def _list_issue_comments(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/issues/comments#list-issue-comments (ascending ids)
        repo, issue = self._pull(ctx, pull_only=False)
        items = [
            public(c)
            for c in self.issue_comments.values()
            if c["_repo"] == repo.full_name and c["_number"] == issue.number
        ]
        return self._paged(ctx, items)

    def _create_issue_comment(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
        repo, issue = self._pull(ctx, pull_only=False)
        body = ctx.body.get("body")
        if not isinstance(body, str) or not body:
            raise missing("IssueComment", "body")
        comment = self._new_issue_comment(repo.full_name, issue.number, body, self._actor(ctx))
        return web.json_response(public(comment), status=201)

    def _update_issue_comment(self, ctx: Ctx) -> web.Response:
        return self._update(ctx, self.issue_comments, "IssueComment")

    def _update(self, ctx: Ctx, comments: dict[int, dict[str, Any]], resource: str) -> web.Response:
        repo = self._repo(ctx)
        comment = comments.get(int(ctx.params["comment_id"]))
        if comment is None or comment["_repo"] != repo.full_name:
            raise error(404, "Not Found")
        body = ctx.body.get("body")
        if not isinstance(body, str) or not body:
            raise missing(resource, "body")
        comment["body"] = body
        comment["updated_at"] = iso(self.clock())
        return web.json_response(public(comment))

    def _react_issue_comment(self, ctx: Ctx) -> web.Response:
        return self._react(ctx, self.issue_comments, "issue_comment")

    def _react(self, ctx: Ctx, comments: dict[int, dict[str, Any]], subject: str) -> web.Response:
        # https://docs.github.com/en/rest/reactions/reactions: 200 when it already exists
        repo = self._repo(ctx)
        cid = int(ctx.params["comment_id"])
        if cid not in comments or comments[cid]["_repo"] != repo.full_name:
            raise error(404, "Not Found")
        content = ctx.body.get("content")
        if content is None:
            raise missing("Reaction", "content")
        if content not in REACTIONS:
            raise invalid("Reaction", "content")
        user = self._actor(ctx)
        for reaction in self.reactions:
            if (reaction["_subject"], reaction["_comment_id"], reaction["content"]) == (
                subject,
                cid,
                content,
            ) and reaction["user"]["login"] == user["login"]:
                return web.json_response(public(reaction), status=200)
        reaction = {
            "id": next(self._ids),
            "node_id": "REA_x",
            "user": user,
            "content": content,
            "created_at": iso(self.clock()),
            "_subject": subject,
            "_comment_id": cid,
        }
        self.reactions.append(reaction)
        return web.json_response(public(reaction), status=201)

    # ------------------------------------------------------------ review comments

    def _new_review_comment(
        self,
        repo: str,
        pull: Pull,
        shape: dict[str, Any],
        user: dict[str, Any],
        *,
        review_id: int | None,
        reply_to: int | None,
    ) -> dict[str, Any]:
        cid = next(self._ids)
        now = iso(self.clock())
        comment: dict[str, Any] = {
            "id": cid,
            "node_id": f"PRRC_kwDO{cid}",
            "url": f"{self.url}/repos/{repo}/pulls/comments/{cid}",
            "html_url": f"{self.root}/{repo}/pull/{pull.number}#discussion_r{cid}",
            "pull_request_url": f"{self.url}/repos/{repo}/pulls/{pull.number}",
            "pull_request_review_id": review_id,
            "diff_hunk": self._diff_hunk(pull, shape),
            "path": shape["path"],
            "commit_id": pull.head_sha,
            "original_commit_id": pull.head_sha,
            "user": user,
            "body": shape["body"],
            "created_at": now,
            "updated_at": now,
            "line": shape.get("line"),
            "original_line": shape.get("line"),
            "side": shape.get("side", "RIGHT"),
            "start_line": shape.get("start_line"),
            "start_side": shape.get("start_side"),
            "subject_type": "line",
            "author_association": "NONE",
            "_repo": repo,
            "_number": pull.number,
        }
        if reply_to is not None:
            comment["in_reply_to_id"] = reply_to
        self.review_comments[cid] = comment
        return comment

    @staticmethod
    def _diff_hunk(pull: Pull, shape: dict[str, Any]) -> str:
        """The hunk of the file's patch up to the commented line, as GitHub's
        `diff_hunk` is; a one-line stand-in when the fake holds no patch for it."""
        patch = next(
            (f.get("patch") for f in pull.files if f.get("filename") == shape["path"]), None
        )
        line, side = shape.get("line"), shape.get("side", "RIGHT")
        if not isinstance(patch, str) or not isinstance(line, int):
            return "@@ -1 +1 @@"
        kept: list[str] = []
        old = new = 0
        for text in patch.splitlines():
            found = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
            if found:
                old, new, kept = int(found.group(1)), int(found.group(2)), [text]
                continue
            kept.append(text)
            here = (
                old
                if text.startswith("-") or (side == "LEFT" and not text.startswith("+"))
                else new
            )
            if here == line and (text.startswith("-") == (side == "LEFT") or text.startswith(" ")):
                return "\n".join(kept)
            old += 0 if text.startswith("+") else 1
            new += 0 if text.startswith("-") else 1
        return "@@ -1 +1 @@"

    def _list_review_comments(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/comments#list-review-comments-on-a-pull-request
        repo, pull = self._pull(ctx)
        items = [
            public(c)
            for c in self.review_comments.values()
            if c["_repo"] == repo.full_name and c["_number"] == pull.number
        ]
        return self._paged(ctx, items)

    def _reply_review_comment(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/comments#create-a-reply-for-a-review-comment
        # Replies to replies are not supported: the id must be a top-level comment.
        repo, pull = self._pull(ctx)
        parent = self.review_comments.get(int(ctx.params["comment_id"]))
        if parent is None or parent["_repo"] != repo.full_name or parent["_number"] != pull.number:
            raise error(404, "Not Found")
        if "in_reply_to_id" in parent:
            raise error(
                422, "Validation Failed", errors=["in_reply_to_id must be a top-level comment"]
            )
        body = ctx.body.get("body")
        if not isinstance(body, str) or not body:
            raise missing("PullRequestReviewComment", "body")
        shape = {k: parent[k] for k in ("path", "line", "side")} | {"body": body}
        comment = self._new_review_comment(
            repo.full_name, pull, shape, self._actor(ctx), review_id=None, reply_to=parent["id"]
        )
        return web.json_response(public(comment), status=201)

    def _update_review_comment(self, ctx: Ctx) -> web.Response:
        return self._update(ctx, self.review_comments, "PullRequestReviewComment")

    def _react_review_comment(self, ctx: Ctx) -> web.Response:
        return self._react(ctx, self.review_comments, "review_comment")

    # ------------------------------------------------------------ reviews

    def _create_review(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request
        repo, pull = self._pull(ctx)
        data = ctx.body
        event = data.get("event")
        if event is not None and event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            raise invalid("PullRequestReview", "event")
        if event in ("REQUEST_CHANGES", "COMMENT") and not isinstance(data.get("body"), str):
            raise missing("PullRequestReview", "body")  # required for these events
        commit_id = data.get("commit_id", pull.head_sha)
        if commit_id not in pull.commits:
            raise error(
                422, "Unprocessable Entity", errors=["Commit is not part of the pull request"]
            )
        shapes = data.get("comments", [])
        if not isinstance(shapes, list):
            raise invalid("PullRequestReview", "comments")
        for shape in shapes:
            self._check_review_comment(pull, shape)
        if event == "COMMENT" and not shapes and not data.get("body"):
            raise error(422, "Unprocessable Entity", errors=["Review body can't be blank"])
        rid = next(self._ids)
        states = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
        }
        review = {
            "id": rid,
            "node_id": f"PRR_kwDO{rid}",
            "user": self._actor(ctx),
            "body": data.get("body") or "",
            "state": states.get(str(event), "PENDING"),
            "html_url": f"{self.root}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{rid}",
            "pull_request_url": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}",
            "commit_id": commit_id,
            "author_association": "NONE",
            "_repo": repo.full_name,
            "_number": pull.number,
        }
        if event is not None:
            review["submitted_at"] = iso(self.clock())
        self.reviews[rid] = review
        for shape in shapes:
            self._new_review_comment(
                repo.full_name, pull, shape, review["user"], review_id=rid, reply_to=None
            )
        return web.json_response(public(review), status=200)

    def _check_review_comment(self, pull: Pull, shape: Any) -> None:
        resource = "PullRequestReviewComment"
        if not isinstance(shape, dict):
            raise invalid(resource, "comments")
        if not isinstance(shape.get("path"), str):
            raise missing(resource, "path")
        if shape["path"] not in {f["filename"] for f in pull.files}:
            raise error(422, "Unprocessable Entity", errors=["Path could not be resolved"])
        if not isinstance(shape.get("body"), str) or not shape["body"]:
            raise missing(resource, "body")
        if "position" not in shape and not (
            isinstance(shape.get("line"), int) and shape["line"] > 0
        ):
            raise missing(resource, "line")
        for side in ("side", "start_side"):
            if side in shape and shape[side] not in ("LEFT", "RIGHT"):
                raise invalid(resource, side)
        start = shape.get("start_line")
        if "start_side" in shape and start is None:
            raise missing(resource, "start_line")
        if start is not None and (not isinstance(start, int) or start >= shape.get("line", 0)):
            raise error(
                422, "Unprocessable Entity", errors=["start_line must precede the end line."]
            )

    def _list_comments_of_review(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/reviews#list-comments-for-a-pull-request-review
        repo, pull = self._pull(ctx)
        rid = int(ctx.params["review_id"])
        review = self.reviews.get(rid)
        if review is None or review["_repo"] != repo.full_name or review["_number"] != pull.number:
            raise error(404, "Not Found")
        items = [
            public(c) for c in self.review_comments.values() if c["pull_request_review_id"] == rid
        ]
        return self._paged(ctx, items)

    # ------------------------------------------------------------ pulls and contents

    def _get_pull(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request
        repo, pull = self._pull(ctx)
        if ctx.record.headers["accept"] in DIFF_TYPES:
            return web.Response(
                text=pull.diff, content_type="application/vnd.github.diff", charset="utf-8"
            )
        return web.json_response(
            {
                "id": 5000 + pull.number,
                "number": pull.number,
                "title": pull.title,
                "body": pull.body or None,  # GitHub sends null for an empty description
                "user": self._user(pull.author),
                "draft": pull.draft,
                "labels": [self._label_entity(name) for name in pull.labels],
                "state": pull.state,
                "merged": pull.merged,
                "merged_at": iso(self.clock()) if pull.merged else None,
                "html_url": f"{self.root}/{repo.full_name}/pull/{pull.number}",
                "head": {
                    "sha": pull.head_sha,
                    "ref": pull.head_ref,
                    "repo": {"full_name": pull.head_repo or repo.full_name},
                },
                "base": {
                    "sha": pull.base_sha,
                    "ref": pull.base_ref or repo.default_branch,
                    "repo": {"full_name": repo.full_name},
                },
            }
        )

    def _label_entity(self, name: str) -> dict[str, Any]:
        return {"id": 7000 + sum(name.encode()), "name": name, "color": "ededed", "default": False}

    def _get_issue(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/issues/issues#get-an-issue (pull requests too)
        repo, issue = self._pull(ctx, pull_only=False)
        kind = "pull" if issue.pull else "issues"
        found: dict[str, Any] = {
            "id": 6000 + issue.number,
            "number": issue.number,
            "title": issue.title,
            "body": issue.body or None,
            "user": self._user(issue.author),
            "state": issue.state,
            "labels": [self._label_entity(name) for name in issue.labels],
            "assignees": [self._user(login) for login in issue.assignees],
            "html_url": f"{self.root}/{repo.full_name}/{kind}/{issue.number}",
        }
        if issue.pull:
            found["pull_request"] = {
                "url": f"{self.url}/repos/{repo.full_name}/pulls/{issue.number}"
            }
        return web.json_response(found)

    def _get_review_comment(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/comments#get-a-review-comment-for-a-pull-request
        repo = self._repo(ctx)
        comment = self.review_comments.get(int(ctx.params["comment_id"]))
        if comment is None or comment["_repo"] != repo.full_name:
            raise error(404, "Not Found")
        return web.json_response(public(comment))

    def _list_pull_files(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
        _, pull = self._pull(ctx)
        return self._paged(ctx, list(pull.files))

    def _get_contents(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/repos/contents#get-repository-content
        repo = self._repo(ctx)
        path = ctx.params["path"].strip("/")
        ref = ctx.record.query.get("ref") or repo.default_branch
        # The object store when it knows the ref (a branch or commit), else seeded contents.
        files = self.files_at(repo.full_name, ref)
        if files is None:
            files = {p: c for (r, p), c in repo.contents.items() if r == ref}
        content = files.get(path)
        if content is None:
            entries = [p for p in files if p.startswith(path + "/")]
            if not entries:
                raise error(404, "Not Found")
            listing = [{"type": "file", "path": p, "name": p.rsplit("/", 1)[-1]} for p in entries]
            return web.json_response(listing)
        if ctx.record.headers["accept"] in RAW_TYPES:
            return web.Response(body=content, content_type="application/vnd.github.raw")
        return web.json_response(
            {
                "type": "file",
                "encoding": "base64",
                "size": len(content),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": base64.b64encode(content).decode("ascii"),
            }
        )

    def _get_permission(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user
        repo = self._repo(ctx)
        login = ctx.params["username"]
        if login not in self.users:
            raise error(404, "Not Found")
        permission, role = repo.permissions.get(login, ("none", "none"))
        return web.json_response(
            {"permission": permission, "role_name": role, "user": self._user(login)}
        )

    # ------------------------------------------------------------ git database

    def _git_url(self, repo: Repo, kind: str, sha: str) -> str:
        return f"{self.url}/repos/{repo.full_name}/git/{kind}/{sha}"

    def _get_repo(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/repos/repos#get-a-repository
        repo = self._repo(ctx)
        owner = repo.full_name.split("/", 1)[0]
        return web.json_response(
            {
                "id": 3000 + sum(repo.full_name.encode()),
                "full_name": repo.full_name,
                "name": repo.full_name.split("/", 1)[1],
                "owner": self._user(owner),
                "private": True,
                "default_branch": repo.default_branch,
                "html_url": f"{self.root}/{repo.full_name}",
            }
        )

    def _create_blob(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/blobs#create-a-blob
        repo = self._repo(ctx)
        data = ctx.body
        content = data.get("content")
        if not isinstance(content, str):
            raise missing("Blob", "content")
        encoding = data.get("encoding", "utf-8")
        if encoding == "base64":
            try:
                raw = base64.b64decode(content, validate=True)
            except ValueError:
                raise invalid("Blob", "content") from None
        elif encoding == "utf-8":
            raw = content.encode("utf-8")
        else:
            raise invalid("Blob", "encoding")
        sha = self._store_blob(repo, raw)
        return web.json_response({"sha": sha, "url": self._git_url(repo, "blobs", sha)}, status=201)

    def _commit_entity(self, repo: Repo, sha: str) -> dict[str, Any]:
        commit = repo.git_commits[sha]
        person = {"name": "Threadline Test", "email": "test@example.com", "date": iso(0)}
        return {
            "sha": sha,
            "node_id": f"C_kwDO{sha[:12]}",
            "url": self._git_url(repo, "commits", sha),
            "html_url": f"{self.root}/{repo.full_name}/commit/{sha}",
            "author": person,
            "committer": person,
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": self._git_url(repo, "trees", commit["tree"])},
            "parents": [
                {"sha": p, "url": self._git_url(repo, "commits", p)} for p in commit["parents"]
            ],
        }

    def _get_git_commit(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/commits#get-a-commit-object
        repo = self._repo(ctx)
        if ctx.params["sha"] not in repo.git_commits:
            raise error(404, "Not Found")
        return web.json_response(self._commit_entity(repo, ctx.params["sha"]))

    def _create_git_commit(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/commits#create-a-commit
        repo = self._repo(ctx)
        data = ctx.body
        message, tree, parents = data.get("message"), data.get("tree"), data.get("parents", [])
        if not isinstance(message, str):
            raise missing("Commit", "message")
        if not isinstance(tree, str):
            raise missing("Commit", "tree")
        if tree not in repo.trees:
            raise error(422, "Tree SHA does not exist")
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise invalid("Commit", "parents")
        if any(p not in repo.git_commits for p in parents):
            raise error(422, "Parent SHA does not exist or is not a commit object")
        sha = self._store_commit(repo, tree, list(parents), message)
        return web.json_response(self._commit_entity(repo, sha), status=201)

    def _tree_entity(self, repo: Repo, sha: str, entries: list[dict[str, str]]) -> dict[str, Any]:
        shown = []
        for entry in entries:
            item: dict[str, Any] = dict(entry)
            kind = "trees" if entry["type"] == "tree" else "blobs"
            item["url"] = self._git_url(repo, kind, entry["sha"])
            if entry["type"] == "blob":
                item["size"] = len(repo.blobs[entry["sha"]])
            shown.append(item)
        return {
            "sha": sha,
            "url": self._git_url(repo, "trees", sha),
            "tree": shown,
            "truncated": False,
        }

    def _get_tree(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/trees#get-a-tree: one level, or every level
        # (full paths, subtrees included) when `recursive` is given any value.
        repo = self._repo(ctx)
        sha = ctx.params["sha"]
        if sha not in repo.trees:
            raise error(404, "Not Found")
        entries = repo.trees[sha]
        if ctx.record.query.get("recursive"):
            entries = self._every_entry(repo, sha, "")
        return web.json_response(self._tree_entity(repo, sha, entries))

    def _every_entry(self, repo: Repo, tree: str, prefix: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        for entry in repo.trees[tree]:
            found.append({**entry, "path": prefix + entry["path"]})
            if entry["type"] == "tree":
                found += self._every_entry(repo, entry["sha"], prefix + entry["path"] + "/")
        return found

    def _create_tree(self, ctx: Ctx) -> web.Response:
        """https://docs.github.com/en/rest/git/trees#create-a-tree, for file entries: each
        replaces the file at its path in `base_tree` (sha, or content made into a blob),
        or with sha null removes it; deleting a file that is not there is an error."""
        repo = self._repo(ctx)
        data = ctx.body
        base, entries = data.get("base_tree"), data.get("tree")
        if not isinstance(entries, list):
            raise missing("Tree", "tree")
        flat: dict[str, tuple[str, str]] = {}
        if base is not None:
            if base not in repo.trees:
                raise error(422, "Invalid tree info", errors=["base_tree is not a valid tree oid"])
            flat = self._flatten(repo, base)
        for entry in entries:
            self._apply_tree_entry(repo, flat, entry)
        sha = self._store_tree(repo, flat)
        return web.json_response(self._tree_entity(repo, sha, repo.trees[sha]), status=201)

    def _apply_tree_entry(self, repo: Repo, flat: dict[str, tuple[str, str]], entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise missing("Tree", "path")
        path = entry["path"]
        if path.startswith("/") or path.endswith("/") or "//" in path:
            raise error(422, "Invalid tree info", errors=[f"tree.path {path!r} is invalid"])
        if entry.get("type") != "blob" or entry.get("mode") not in ("100644", "100755", "120000"):
            raise error(422, "Invalid tree info", errors=["this fake takes file entries only"])
        if "sha" in entry and "content" in entry:
            raise error(422, "Invalid tree info", errors=["give sha or content, not both"])
        if "content" in entry:
            sha = self._store_blob(repo, str(entry["content"]).encode("utf-8"))
        elif entry.get("sha") is None:
            if "sha" not in entry:
                raise missing("Tree", "sha")
            if path not in flat:
                raise error(422, "Invalid tree info", errors=[f"{path} does not exist"])
            del flat[path]
            return
        else:
            sha = str(entry["sha"])
            if sha not in repo.blobs:
                raise error(422, "Invalid tree info", errors=[f"tree.sha {sha} is not a blob"])
        parts = path.split("/")
        if any("/".join(parts[:depth]) in flat for depth in range(1, len(parts))):
            raise error(422, "Invalid tree info", errors=[f"a file is in the way of {path}"])
        if any(p.startswith(path + "/") for p in flat):
            raise error(422, "Invalid tree info", errors=[f"{path} is a directory"])
        flat[path] = (str(entry["mode"]), sha)

    def _ref_entity(self, repo: Repo, name: str) -> dict[str, Any]:
        sha = repo.refs[name]
        return {
            "ref": name,
            "node_id": f"REF_kwDO{sha[:12]}",
            "url": f"{self.url}/repos/{repo.full_name}/git/{name}",
            "object": {"sha": sha, "type": "commit", "url": self._git_url(repo, "commits", sha)},
        }

    def _get_ref(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/refs#get-a-reference: the exact ref or 404
        repo = self._repo(ctx)
        name = "refs/" + ctx.params["ref"]
        if name not in repo.refs:
            raise error(404, "Not Found")
        return web.json_response(self._ref_entity(repo, name))

    def _create_ref(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/refs#create-a-reference
        repo = self._repo(ctx)
        data = ctx.body
        name, sha = data.get("ref"), data.get("sha")
        if not isinstance(name, str):
            raise missing("Reference", "ref")
        if not isinstance(sha, str):
            raise missing("Reference", "sha")
        if not name.startswith("refs/") or name.count("/") < 2 or name.endswith("/"):
            raise error(422, "Reference name is invalid")
        if sha not in repo.git_commits:
            raise error(422, "Object does not exist")
        if name in repo.refs:
            raise error(422, "Reference already exists")
        repo.refs[name] = sha
        return web.json_response(self._ref_entity(repo, name), status=201)

    def _update_ref(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/git/refs#update-a-reference: a fast-forward
        # unless `force`
        repo = self._repo(ctx)
        name = "refs/" + ctx.params["ref"]
        sha = ctx.body.get("sha")
        if not isinstance(sha, str):
            raise missing("Reference", "sha")
        if name not in repo.refs:
            raise error(422, "Reference does not exist")
        if sha not in repo.git_commits:
            raise error(422, "Object does not exist")
        if not ctx.body.get("force") and not self._descends(repo, sha, repo.refs[name]):
            raise error(422, "Update is not a fast forward")
        repo.refs[name] = sha
        return web.json_response(self._ref_entity(repo, name))

    def _descends(self, repo: Repo, sha: str, ancestor: str) -> bool:
        seen, todo = set(), [sha]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current not in seen and current in repo.git_commits:
                seen.add(current)
                todo += repo.git_commits[current]["parents"]
        return False

    # ------------------------------------------------------------ opening pull requests

    def _pull_entity(self, repo: Repo, pull: Pull) -> dict[str, Any]:
        return {
            "id": 5000 + pull.number,
            "number": pull.number,
            "title": pull.title,
            "body": pull.body,
            "state": pull.state,
            "html_url": f"{self.root}/{repo.full_name}/pull/{pull.number}",
            "head": {
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "label": self._label(repo, pull.head_ref),
            },
            "base": {
                "ref": pull.base_ref or repo.default_branch,
                "sha": pull.base_sha,
                "label": self._label(repo, pull.base_ref or repo.default_branch),
            },
        }

    def _label(self, repo: Repo, branch: str) -> str:
        return f"{repo.full_name.split('/', 1)[0]}:{branch}"

    def _list_pulls(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests: state (default
        # open), head as owner:branch, base
        repo = self._repo(ctx)
        query = ctx.record.query
        state = query.get("state", "open")
        items = [
            self._pull_entity(repo, p)
            for p in sorted(repo.issues.values(), key=lambda p: -p.number)
            if p.pull
            and state in ("all", p.state)
            and query.get("head", self._label(repo, p.head_ref)) == self._label(repo, p.head_ref)
            and query.get("base", p.base_ref or repo.default_branch)
            == (p.base_ref or repo.default_branch)
        ]
        return self._paged(ctx, items)

    def _create_pull(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request
        repo = self._repo(ctx)
        data = ctx.body
        for name in ("title", "head", "base"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise missing("PullRequest", name)
        head = str(data["head"]).split(":", 1)[-1]
        base = str(data["base"])
        head_sha = repo.refs.get("refs/heads/" + head)
        base_sha = repo.refs.get("refs/heads/" + base)
        if head_sha is None:
            raise invalid("PullRequest", "head")
        if base_sha is None:
            raise invalid("PullRequest", "base")
        for other in repo.issues.values():
            if (
                other.pull
                and other.state == "open"
                and (other.head_ref, other.base_ref)
                == (
                    head,
                    base,
                )
            ):
                raise error(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {self._label(repo, head)}.",
                        }
                    ],
                )
        if self._descends(repo, base_sha, head_sha):
            raise error(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {head}",
                    }
                ],
            )
        number = max(repo.issues, default=0) + 1
        before = self.files_at(repo.full_name, base_sha) or {}
        after = self.files_at(repo.full_name, head_sha) or {}
        files = [
            {
                "filename": path,
                "status": "added"
                if path not in before
                else "removed"
                if path not in after
                else "modified",
            }
            for path in sorted(set(before) | set(after))
            if before.get(path) != after.get(path)
        ]
        pull = Pull(
            number,
            str(data["title"]),
            True,
            head_sha,
            base_sha,
            files=files,
            head_ref=head,
            base_ref=base,
            body=str(data.get("body") or ""),
        )
        pull.commits = {head_sha}
        repo.issues[number] = pull
        return web.json_response(self._pull_entity(repo, pull), status=201)

    # ------------------------------------------------------------ check runs and statuses

    def _list_check_runs(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
        repo = self._repo(ctx)
        query = ctx.record.query
        runs = [
            public(r)
            for r in sorted(self.check_runs.values(), key=lambda r: -int(r["id"]))
            if r["_repo"] == repo.full_name
            and r["head_sha"] == ctx.params["ref"]
            and query.get("check_name", r["name"]) == r["name"]
            and query.get("app_id", str(r["app"]["id"])) == str(r["app"]["id"])
        ]
        return self._paged(ctx, runs, key="check_runs")

    def _create_check_run(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/checks/runs#create-a-check-run
        repo = self._repo(ctx)
        assert ctx.token is not None
        if ctx.token.installation_id is None:
            raise error(403, "You must authenticate via a GitHub App.")
        data = ctx.body
        for required in ("name", "head_sha"):
            if not isinstance(data.get(required), str) or not data[required]:
                raise missing("CheckRun", required)
        run: dict[str, Any] = {
            "id": next(self._ids),
            "name": data["name"],
            "head_sha": data["head_sha"],
            "status": "queued",
            "conclusion": None,
            "app": {"id": self.app_id, "slug": self.app_slug},
            "_repo": repo.full_name,
        }
        self._apply_check_fields(run, data)
        self.check_runs[run["id"]] = run
        return web.json_response(public(run), status=201)

    def _update_check_run(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/checks/runs#update-a-check-run
        repo = self._repo(ctx)
        run = self.check_runs.get(int(ctx.params["check_run_id"]))
        if run is None or run["_repo"] != repo.full_name:
            raise error(404, "Not Found")
        self._apply_check_fields(run, ctx.body)
        return web.json_response(public(run))

    def _apply_check_fields(self, run: dict[str, Any], data: dict[str, Any]) -> None:
        status = data.get("status", run["status"])
        conclusion = data.get("conclusion")
        if status not in CHECK_STATUSES:
            raise invalid("CheckRun", "status")
        if conclusion is not None and conclusion not in CHECK_CONCLUSIONS:
            raise invalid("CheckRun", "conclusion")
        if (status == "completed" or "completed_at" in data) and conclusion is None:
            raise missing("CheckRun", "conclusion")
        output = data.get("output")
        if output is not None and not (
            isinstance(output, dict)
            and isinstance(output.get("title"), str)
            and isinstance(output.get("summary"), str)
            and len(output["summary"]) <= 65535
        ):
            raise invalid("CheckRun", "output")
        run["status"] = "completed" if conclusion is not None else status
        run["conclusion"] = conclusion
        for key in ("details_url", "output", "completed_at", "started_at"):
            if key in data:
                run[key] = data[key]

    def _create_status(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        repo = self._repo(ctx)
        data = ctx.body
        if data.get("state") not in STATUS_STATES:
            raise invalid("Status", "state")
        description = data.get("description")
        if description is not None and len(str(description)) > 140:
            raise error(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "description",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        status = {
            "id": next(self._ids),
            "state": data["state"],
            "context": data.get("context") or "default",
            "description": description,
            "target_url": data.get("target_url"),
            "creator": self._actor(ctx),
            "_repo": repo.full_name,
            "_sha": ctx.params["sha"],
        }
        self.statuses.append(status)
        return web.json_response(public(status), status=201)

    # ------------------------------------------------------------ GraphQL

    def _graphql(self, ctx: Ctx) -> web.Response:
        # https://docs.github.com/en/graphql/guides/forming-calls-with-graphql
        data = ctx.body
        query = data.get("query")
        variables = data.get("variables") or {}
        if not isinstance(query, str):
            return self._gql_errors(
                [{"message": "A query attribute must be specified and must be a string."}]
            )
        if "resolveReviewThread" in query:
            return self._gql_resolve(ctx, variables)
        if "reviewThreads" in query:
            return self._gql_threads(ctx, query, variables)
        return self._gql_errors([{"message": "The fake GitHub does not know this query."}])

    def _gql_errors(self, errors: list[dict[str, Any]], data: Any = None) -> web.Response:
        body: dict[str, Any] = {"errors": errors}
        if data is not None:
            body["data"] = data
        return web.json_response(body)

    def _gql_threads(self, ctx: Ctx, query: str, variables: dict[str, Any]) -> web.Response:
        owner, name, number = (variables.get(k) for k in ("owner", "name", "number"))
        if not (isinstance(owner, str) and isinstance(name, str) and isinstance(number, int)):
            return self._gql_errors(
                [{"message": "Variables $owner, $name (String!) and $number (Int!) are required."}]
            )
        full = f"{owner}/{name}"
        repo = self.repos.get(full)
        if repo is None or not self._can_see(ctx.token, full):
            return self._gql_errors(
                [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository"],
                        "message": f"Could not resolve to a Repository with the name '{full}'.",
                    }
                ],
                {"repository": None},
            )
        pull = repo.issues.get(number)
        if pull is None or not pull.pull:
            return self._gql_errors(
                [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository", "pullRequest"],
                        "message": f"Could not resolve to a PullRequest with the number of {number}.",
                    }
                ],
                {"repository": {"pullRequest": None}},
            )
        size_match = re.search(r"reviewThreads\(\s*first:\s*(\d+)", query)
        size = int(size_match.group(1)) if size_match else 100
        roots = sorted(
            c["id"]
            for c in self.review_comments.values()
            if c["_repo"] == full and c["_number"] == number and "in_reply_to_id" not in c
        )
        start = int(variables["cursor"]) if variables.get("cursor") else 0
        page = roots[start : start + size]
        nodes = [
            {
                "id": self.thread_node_id(root),
                "isResolved": root in self.resolved,
                "comments": {"nodes": [{"databaseId": root}]},
            }
            for root in page
        ]
        more = start + size < len(roots)
        threads = {
            "pageInfo": {"hasNextPage": more, "endCursor": str(start + size) if more else None},
            "nodes": nodes,
        }
        return web.json_response(
            {"data": {"repository": {"pullRequest": {"reviewThreads": threads}}}}
        )

    def _gql_resolve(self, ctx: Ctx, variables: dict[str, Any]) -> web.Response:
        node_id = variables.get("threadId")
        match = re.fullmatch(r"PRRT_kwDO(\d+)", str(node_id))
        root = int(match.group(1)) if match else None
        comment = self.review_comments.get(root) if root is not None else None
        if root is None or comment is None or not self._can_see(ctx.token, comment["_repo"]):
            return self._gql_errors(
                [
                    {
                        "type": "NOT_FOUND",
                        "path": ["resolveReviewThread"],
                        "message": f"Could not resolve to a node with the global id of '{node_id}'.",
                    }
                ],
                {"resolveReviewThread": None},
            )
        self.resolved.add(root)
        thread = {"id": node_id, "isResolved": True}
        return web.json_response({"data": {"resolveReviewThread": {"thread": thread}}})
