"""GitHub adapter: App authentication, and the HostClient over gidgethub's REST and GraphQL calls.

Every call goes through one shared `aiohttp.ClientSession` that the caller owns. A
`GitHubApp` signs short JWTs and keeps one installation token per installation until
shortly before it expires; a `GitHubToken` uses one fixed token instead (a single
repository, `THREADLINE_GITHUB_TOKEN`). Both hand out `GitHubClient`s.

Every failure comes back as an exception of bot.hosts.base, decided in `host_error` and
nowhere else. Nothing in this module retries a write on its own (neither do gidgethub
nor aiohttp, as used here): the outbox decides, guided by `ambiguous`. The one retry
here is after a 401, which GitHub answers before doing anything: fetch a new
installation token once and send the same request again.

Tokens and the private key never appear in messages or logs: messages name the method,
the path and GitHub's own error message, nothing from the request's headers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import aiohttp
import gidgethub
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import aiohttp as gh_aiohttp
from gidgethub import sansio

from bot.config import Settings, default_github_graphql_url, github_app_key
from bot.events import ThreadRef
from bot.hosts.base import (
    CHECK_RUNS,
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
    check_change_set,
    check_comment_paths,
)
from bot.paths import quote_segments, repo_path

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
UrlVars = Mapping[str, str | int]

DEFAULT_API_URL = "https://api.github.com"
USER_AGENT = "threadline"

# https://docs.github.com/en/rest/about-the-rest-api/api-versions
API_VERSION = "2022-11-28"
# https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api#media-types
ACCEPT_JSON = "application/vnd.github+json"
ACCEPT_DIFF = "application/vnd.github.diff"
ACCEPT_RAW = "application/vnd.github.raw+json"

# https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
# iat 60 s in the past against clock drift; exp no more than 10 minutes ahead.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 600  # exp - iat, so exp is 9 minutes from now

# Installation tokens live one hour; take a new one 5 minutes before that.
# https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
TOKEN_REFRESH_MARGIN_SECONDS = 300

# https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
PER_PAGE = 100

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

# https://docs.github.com/en/rest/reactions/reactions#about-reactions
REACTION_CONTENTS = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)

# https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user
# `permission` is the base role (admin, write, read, none); `role_name` names the
# finer role, which is where maintain and triage show.
_PERMISSIONS: dict[str, Permission] = {
    "admin": "admin",
    "maintain": "maintain",
    "write": "write",
    "triage": "triage",
    "read": "read",
    "none": "none",
}

# https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files (status values),
# folded into ChangedFile's four.
_FILE_STATUS = {
    "added": "added",
    "copied": "added",
    "removed": "removed",
    "renamed": "renamed",
    "modified": "modified",
    "changed": "modified",
    "unchanged": "modified",
}

# https://docs.github.com/en/rest/checks/runs#create-a-check-run: status, and the
# conclusion a completed run must carry.
_CHECK_RUN = {
    "pending": ("queued", None, "Queued"),
    "running": ("in_progress", None, "Running"),
    "success": ("completed", "success", "Succeeded"),
    "failure": ("completed", "failure", "Failed"),
    "cancelled": ("completed", "cancelled", "Cancelled"),
}
CHECK_SUMMARY_LIMIT = 65535

# https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
_COMMIT_STATUS = {
    "pending": "pending",
    "running": "pending",
    "success": "success",
    "failure": "failure",
    "cancelled": "error",
}
STATUS_DESCRIPTION_LIMIT = 140

# https://docs.github.com/en/graphql/reference/objects#pullrequestreviewthread
REVIEW_THREADS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $cursor) {
        pageInfo { hasNextPage endCursor }
        nodes { id isResolved comments(first: 1) { nodes { databaseId } } }
      }
    }
  }
}
"""
# https://docs.github.com/en/graphql/reference/mutations#resolvereviewthread
RESOLVE_THREAD_MUTATION = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""


# ---------------------------------------------------------------- errors


class GraphQLErrors(Exception):
    """A GraphQL answer that carried `errors` (GitHub answers those with HTTP 200)."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        super().__init__("; ".join(messages) or "GraphQL error")

    @property
    def types(self) -> set[str]:
        return {str(e.get("type")) for e in self.errors if isinstance(e, dict) and e.get("type")}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (gidgethub may hand us a plain dict)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds GitHub asked us to wait, or None when it did not say.

    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
    `retry-after` wins; else, when `x-ratelimit-remaining` is 0, wait until
    `x-ratelimit-reset` (UTC epoch seconds).
    """
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            pass
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        try:
            return max(float(reset or ""), now) - now
        except ValueError:
            return None
    return None


def _is_rate_limited(status: int, headers: Mapping[str, str], message: str) -> bool:
    # Primary and secondary limits both answer 403 or 429; a primary limit shows
    # `x-ratelimit-remaining: 0`, a secondary one says so in its message.
    if status == 429:
        return True
    if status != 403:
        return False
    return _header(headers, "x-ratelimit-remaining") == "0" or "rate limit" in message.lower()


def host_error(exc: BaseException, *, method: str, path: str, write: bool, now: float) -> HostError:
    """The one place a failed GitHub call becomes an exception of bot.hosts.base.

    `write`: the call changes something, so an answer lost after sending leaves it
    unknown whether it happened (`ambiguous`). `now`: epoch seconds, for
    `x-ratelimit-reset`.
    """
    where = f"GitHub {method} {path}"
    if isinstance(exc, gidgethub.HTTPException):
        status = int(exc.status_code)
        message = " ".join(a for a in exc.args if isinstance(a, str)) or exc.status_code.phrase
        text = f"{where}: HTTP {status} {message}"
        if _is_rate_limited(status, exc.headers, message):
            return RateLimited(text, status=status, retry_after=rate_limit_wait(exc.headers, now))
        if status == 401:
            return Unauthorized(text)
        if status == 404:
            return NotFound(text)
        if status >= 500:
            return HostError(text, status=status, retryable=True, ambiguous=write)
        return HostError(text, status=status)
    if isinstance(exc, GraphQLErrors):
        text = f"{where}: {exc}"
        if "RATE_LIMITED" in exc.types:
            # GraphQL reports its primary limit in a 200 answer.
            return RateLimited(text, status=200, retry_after=None)
        if "NOT_FOUND" in exc.types:
            return NotFound(text)
        return HostError(text, status=403 if "FORBIDDEN" in exc.types else None)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        # Nothing was sent: trying again cannot duplicate anything.
        return HostError(f"{where}: cannot connect ({type(exc).__name__})", retryable=True)
    if isinstance(exc, TimeoutError):
        return HostError(f"{where}: no answer in time", retryable=True, ambiguous=write)
    if isinstance(exc, aiohttp.ClientError):
        # The connection broke after the request went out (reset, closed, cut short).
        return HostError(
            f"{where}: connection lost ({type(exc).__name__})", retryable=True, ambiguous=write
        )
    if isinstance(exc, ValueError):
        # An answer we cannot read (bad JSON, an unknown status code): something
        # between us and GitHub is misbehaving; the request may have been handled.
        return HostError(f"{where}: unreadable answer", retryable=True, ambiguous=write)
    return HostError(f"{where}: {type(exc).__name__}")


_CALL_ERRORS = (
    gidgethub.GitHubException,
    GraphQLErrors,
    aiohttp.ClientError,
    TimeoutError,
    ValueError,
)


# ---------------------------------------------------------------- transport


class _API(gh_aiohttp.GitHubAPI):
    """gidgethub over the shared session, with the API version header and a timeout."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        timeout: aiohttp.ClientTimeout,
        oauth_token: str | None = None,
    ) -> None:
        super().__init__(session, USER_AGENT, oauth_token=oauth_token, base_url=base_url)
        self._timeout = timeout

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        sent = {**headers, "x-github-api-version": API_VERSION}
        async with self._session.request(
            method, url, headers=sent, data=body, timeout=self._timeout
        ) as response:
            return response.status, response.headers, await response.read()

    async def handle_rate_limit_error(
        self,
        *,
        method: str,
        url: str,
        exception: gidgethub.HTTPException,
        attempt: int,
    ) -> bool:
        # Never retry here: the outbox paces writes per installation and knows
        # whether a write may already have happened.
        return False

    async def get_raw(
        self, url: str, url_vars: UrlVars, *, accept: str
    ) -> tuple[Mapping[str, str], bytes]:
        """GET whose answer is kept as bytes (diffs, file contents), with its headers."""
        headers = sansio.create_headers(self.requester, accept=accept, oauth_token=self.oauth_token)
        filled = sansio.format_url(url, dict(url_vars), base_url=self.base_url)
        status, answer_headers, body = await self._request("GET", filled, headers)
        if status != 200:
            sansio.decipher_response(status, answer_headers, body)  # raises for errors
        return answer_headers, body


def _path(url: str, url_vars: UrlVars) -> str:
    """The request's path for messages: never a host, a query or a credential."""
    expanded = sansio.format_url(url, dict(url_vars), base_url="http://host.invalid")
    return urllib.parse.urlsplit(expanded).path or "/"


class Transport:
    """Runs one request with the shared session and maps whatever goes wrong."""

    def __init__(
        self, session: aiohttp.ClientSession, *, api_url: str, timeout: float, clock: Clock
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.clock = clock

    async def call(
        self,
        method: str,
        path: str,
        action: Callable[[_API], Awaitable[T]],
        *,
        token: str | None,
        write: bool | None = None,
    ) -> T:
        api = _API(self.session, base_url=self.api_url, timeout=self.timeout, oauth_token=token)
        try:
            return await action(api)
        except _CALL_ERRORS as exc:
            is_write = method in WRITE_METHODS if write is None else write
            error = host_error(exc, method=method, path=path, write=is_write, now=self.clock())
            log.debug("%s", error)
            raise error from exc


# ---------------------------------------------------------------- authentication


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float
    permissions: tuple[str, ...] = ()


def _epoch(timestamp: str) -> float:
    # GitHub's timestamps are ISO 8601 in UTC: 2016-07-11T22:14:10Z.
    return datetime.fromisoformat(timestamp).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Credentials(Protocol):
    refreshable: bool

    async def token(self, *, stale: str | None = None) -> str:
        """A token to send; `stale` is one GitHub just refused, so not that one again."""
        ...


class _InstallationCredentials:
    refreshable = True

    def __init__(self, app: GitHubApp, installation_id: int) -> None:
        self.app = app
        self.installation_id = installation_id

    async def token(self, *, stale: str | None = None) -> str:
        return await self.app.installation_token(self.installation_id, stale=stale)


class _FixedToken:
    refreshable = False  # a refused personal token stays refused

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_FixedToken(hidden)"

    async def token(self, *, stale: str | None = None) -> str:
        return self._token


class GitHubApp:
    """A GitHub App: signs JWTs, keeps installation tokens, hands out clients."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: int,
        private_key: str,
        api_url: str = DEFAULT_API_URL,
        graphql_url: str | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.app_id = app_id
        self._key = _load_rsa_key(private_key)
        self._transport = Transport(session, api_url=api_url, timeout=timeout, clock=clock)
        self.graphql_url = graphql_url or default_github_graphql_url(api_url)
        self._clock = clock
        self._tokens: dict[int, _Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self._transport.api_url!r})"

    def jwt(self) -> str:
        """A JWT that authenticates as the App itself (for /app endpoints)."""
        issued = int(self._clock()) - JWT_BACKDATE_SECONDS
        claims = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(self.app_id)}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def client(self, installation_id: int | None) -> GitHubClient:
        if installation_id is None:
            raise ValueError("a GitHub App acts through an installation: give its id")
        return GitHubClient(
            _InstallationCredentials(self, installation_id),
            self._transport,
            graphql_url=self.graphql_url,
            app=self,
        )

    def forget(self, installation_id: int) -> None:
        """Drop the cached token of an installation (uninstalled, suspended, revoked)."""
        self._tokens.pop(installation_id, None)

    async def installation_token(self, installation_id: int, *, stale: str | None = None) -> str:
        """A token for the installation, from the cache while it has 5 minutes left.

        Concurrent callers for one installation wait on one fetch.
        """
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and cached.value != stale and self._fresh(cached):
                return cached.value
            token = await self._fetch_token(installation_id)
            self._tokens[installation_id] = token
            return token.value

    def permissions(self, installation_id: int) -> tuple[str, ...]:
        cached = self._tokens.get(installation_id)
        return cached.permissions if cached is not None else ()

    async def describe(self) -> dict[str, Any]:
        """GET /app as the App: its slug, name and owner."""
        data = await self._transport.call(
            "GET",
            "/app",
            lambda api: api.getitem("/app", accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
        )
        if not isinstance(data, dict):
            raise HostError("GitHub GET /app: answer is not an object", retryable=True)
        return data

    async def _app_list(self, url: str, *, newest_first_until: float | None = None) -> list[Any]:
        """A paginated list as the App (JWT); with `newest_first_until`, stop at older items."""
        template = url + "{?per_page}"

        async def collect(api: _API) -> list[Any]:
            items: list[Any] = []
            pages = api.getiter(
                template, {"per_page": PER_PAGE}, accept=ACCEPT_JSON, jwt=self.jwt()
            )
            async for item in pages:
                stamp = item.get("delivered_at") if isinstance(item, dict) else None
                if newest_first_until is not None and stamp and _epoch(stamp) < newest_first_until:
                    break
                items.append(item)
            return items

        return await self._transport.call("GET", url, collect, token=None)

    async def installations(self) -> list[dict[str, Any]]:
        """The App's installations.

        https://docs.github.com/en/rest/apps/apps#list-installations-for-the-authenticated-app
        """
        return await self._app_list("/app/installations")

    async def hook_deliveries(self, *, since: float) -> list[dict[str, Any]]:
        """The App webhook's deliveries since `since` (epoch seconds), newest first.

        https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
        """
        return await self._app_list("/app/hook/deliveries", newest_first_until=since)

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a past delivery again (it keeps its X-GitHub-Delivery guid).

        https://docs.github.com/en/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook
        """
        url = "/app/hook/deliveries/{delivery_id}/attempts"
        url_vars = {"delivery_id": delivery_id}
        await self._transport.call(
            "POST",
            _path(url, url_vars),
            lambda api: api.post(url, url_vars, data=b"", accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
            write=False,  # a second redelivery is deduplicated by its guid on arrival
        )

    async def hook_delivery(self, delivery_id: int) -> dict[str, Any]:
        """One delivery of the App webhook, with the request's headers and payload.

        https://docs.github.com/en/rest/apps/webhooks#get-a-delivery-for-an-app-webhook
        """
        url = "/app/hook/deliveries/{delivery_id}"
        url_vars = {"delivery_id": delivery_id}
        data = await self._transport.call(
            "GET",
            _path(url, url_vars),
            lambda api: api.getitem(url, url_vars, accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
        )
        if not isinstance(data, dict):
            raise HostError(f"GitHub GET {url}: answer is not an object", retryable=True)
        return data

    def _fresh(self, token: _Token) -> bool:
        return self._clock() < token.expires_at - TOKEN_REFRESH_MARGIN_SECONDS

    async def _fetch_token(self, installation_id: int) -> _Token:
        url = "/app/installations/{installation_id}/access_tokens"
        url_vars = {"installation_id": installation_id}
        try:
            data = await self._transport.call(
                "POST",
                _path(url, url_vars),
                lambda api: api.post(url, url_vars, data=b"", accept=ACCEPT_JSON, jwt=self.jwt()),
                token=None,
                write=False,  # asking twice only mints a second token
            )
        except RateLimited:
            raise
        except HostError as exc:
            if exc.status in (401, 403, 404):
                # 404: uninstalled; 403: suspended; 401: the App's key was refused.
                raise Unauthorized(
                    f"GitHub refused a token for installation {installation_id}: {exc}",
                    status=exc.status or 401,
                ) from exc
            raise
        try:
            permissions = tuple(f"{k}:{v}" for k, v in sorted(data.get("permissions", {}).items()))
            token = _Token(str(data["token"]), _epoch(str(data["expires_at"])), permissions)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise HostError(
                f"GitHub POST {_path(url, url_vars)}: malformed token answer", retryable=True
            ) from exc
        log.info("new access token for GitHub installation %s", installation_id)
        return token


class GitHubToken:
    """A fixed token (personal or fine-grained) for single-repository use."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        graphql_url: str | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self._credentials = _FixedToken(token)
        self._transport = Transport(session, api_url=api_url, timeout=timeout, clock=clock)
        self.graphql_url = graphql_url or default_github_graphql_url(api_url)

    def __repr__(self) -> str:
        return f"GitHubToken(api_url={self._transport.api_url!r})"

    def client(self, installation_id: int | None = None) -> GitHubClient:
        """The one client; an installation id (from a webhook) changes nothing."""
        return GitHubClient(self._credentials, self._transport, graphql_url=self.graphql_url)

    def forget(self, installation_id: int) -> None:
        """Nothing is cached for a fixed token."""


def github_from_settings(
    session: aiohttp.ClientSession, settings: Settings, *, clock: Clock = time.time
) -> GitHubApp | GitHubToken:
    """The App when one is configured, else the token; ValueError when neither is."""
    common: dict[str, Any] = {
        "api_url": settings.github_api_url,
        "graphql_url": settings.github_graphql_endpoint,
        "timeout": settings.host_timeout_seconds,
        "clock": clock,
    }
    if settings.github_app_id is not None and settings.github_private_key is not None:
        return GitHubApp(
            session,
            app_id=settings.github_app_id,
            private_key=settings.github_private_key,
            **common,
        )
    if settings.github_token:
        return GitHubToken(session, token=settings.github_token, **common)
    raise ValueError("GitHub needs an App (id and private key) or THREADLINE_GITHUB_TOKEN")


def _load_rsa_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        return github_app_key(pem)
    except ValueError as exc:
        raise ValueError(f"the GitHub App private key {exc}") from None


# ---------------------------------------------------------------- the client


def _split(repo: str) -> dict[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name:
        raise HostError(f"GitHub repository must be owner/name, got {repo!r}")
    return {"owner": owner, "repo": name}


def _quote_path(path: str) -> str:
    """A path (or branch name) for a URL: each part quoted, the slashes kept."""
    return "/".join(urllib.parse.quote(part, safe="") for part in path.split("/"))


def _sha_of(answer: Any, what: str) -> str:
    if not isinstance(answer, dict) or not isinstance(answer.get("sha"), str):
        raise HostError(f"GitHub created a {what} but did not name it", ambiguous=True)
    return str(answer["sha"])


def _opened(pull: Any) -> Opened:
    if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
        raise HostError("GitHub answered a pull request without its number", ambiguous=True)
    return Opened(number=int(pull["number"]), url=pull.get("html_url"))


def _thread_vars(thread: ThreadRef) -> dict[str, str | int]:
    return {**_split(thread.repo), "number": thread.number}


def _review_thread_root(thread: ThreadRef) -> int:
    if thread.thread_id is None or thread.target != "pull":
        raise HostError(f"{thread.key} is not a review thread")
    try:
        return int(thread.thread_id)
    except ValueError:
        raise HostError(f"GitHub review thread ids are numbers, got {thread.thread_id!r}") from None


def _posted(comment: Any, thread_id: str | None) -> Posted:
    if not isinstance(comment, dict) or "id" not in comment:
        raise HostError("GitHub answered a comment write without the comment", retryable=False)
    return Posted(id=str(comment["id"]), url=comment.get("html_url"), thread_id=thread_id)


def _in_thread(comment: dict[str, Any], root: int) -> bool:
    return comment.get("id") == root or comment.get("in_reply_to_id") == root


def _review_comment(comment: DiffComment) -> dict[str, Any]:
    # https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request:
    # line/side place the comment; start_line/start_side open a multi-line range.
    shaped: dict[str, Any] = {"path": comment.path, "line": comment.line, "side": comment.side}
    if comment.start_line is not None and comment.start_line != comment.line:
        shaped["start_line"] = comment.start_line
        shaped["start_side"] = comment.side
    shaped["body"] = comment.body
    return shaped


def _pair_review_comments(wanted: list[DiffComment], listed: list[Any]) -> list[Posted]:
    """Each posted comment's id, in the order asked: by path and body, then by order."""
    pool = sorted((c for c in listed if isinstance(c, dict)), key=lambda c: int(c["id"]))
    found: list[dict[str, Any] | None] = []
    for want in wanted:
        match = next(
            (c for c in pool if (c.get("path"), c.get("body")) == (want.path, want.body)), None
        )
        if match is not None:
            pool.remove(match)
        found.append(match)
    posted = []
    for match in found:
        if match is None:
            if not pool:
                raise HostError(
                    "GitHub created the review but lists fewer comments than were sent",
                    ambiguous=True,
                )
            match = pool.pop(0)
        posted.append(_posted(match, str(match["id"])))
    return posted


class GitHubClient:
    """HostClient for one installation (or one fixed token) on github.com or GHES."""

    host = "github"

    def __init__(
        self,
        credentials: _Credentials,
        transport: Transport,
        *,
        graphql_url: str,
        app: GitHubApp | None = None,
    ) -> None:
        self._credentials = credentials
        self._transport = transport
        self._graphql_url = graphql_url
        self._app = app
        self._login: str | None = None  # ours, as GitHub shows it on what we write
        # Check runs can only be written by a GitHub App; a token writes commit statuses.
        # https://docs.github.com/en/rest/checks/runs
        states = CHECK_RUNS if app is not None else COMMIT_STATUSES
        self.capabilities = frozenset({RESOLVE_THREADS, REACTIONS, states})

    def __repr__(self) -> str:
        return f"GitHubClient({self._credentials.__class__.__name__}, {self._transport.api_url!r})"

    # -------------------------------------------------------------- plumbing

    async def _call(
        self,
        method: str,
        url: str,
        url_vars: UrlVars,
        action: Callable[[_API], Awaitable[T]],
        *,
        write: bool | None = None,
    ) -> T:
        path = _path(url, url_vars)
        token = await self._credentials.token()
        try:
            return await self._transport.call(method, path, action, token=token, write=write)
        except Unauthorized:
            if not self._credentials.refreshable:
                raise
            log.info(
                "GitHub refused the installation token (%s %s); fetching a new one", method, path
            )
        token = await self._credentials.token(stale=token)
        return await self._transport.call(method, path, action, token=token, write=write)

    async def _get(self, url: str, url_vars: UrlVars) -> Any:
        return await self._call(
            "GET", url, url_vars, lambda api: api.getitem(url, dict(url_vars), accept=ACCEPT_JSON)
        )

    async def _list(self, url: str, url_vars: UrlVars, *, key: str | None = None) -> list[Any]:
        """Every item of a paginated list (per_page=100, following Link: rel="next")."""
        template = url + "{?per_page}"
        paged = {**url_vars, "per_page": PER_PAGE}

        async def collect(api: _API) -> list[Any]:
            items = api.getiter(template, paged, accept=ACCEPT_JSON, iterable_key=key)
            return [item async for item in items]

        return await self._call("GET", template, paged, collect)

    async def _write(self, method: str, url: str, url_vars: UrlVars, data: dict[str, Any]) -> Any:
        if method == "POST":
            return await self._call(
                method,
                url,
                url_vars,
                lambda api: api.post(url, dict(url_vars), data=data, accept=ACCEPT_JSON),
            )
        return await self._call(
            method,
            url,
            url_vars,
            lambda api: api.patch(url, dict(url_vars), data=data, accept=ACCEPT_JSON),
        )

    async def _get_raw(
        self, url: str, url_vars: UrlVars, accept: str
    ) -> tuple[Mapping[str, str], bytes]:
        return await self._call(
            "GET", url, url_vars, lambda api: api.get_raw(url, url_vars, accept=accept)
        )

    async def _graphql(self, query: str, variables: dict[str, Any], *, write: bool) -> Any:
        url = self._graphql_url

        async def run(api: _API) -> Any:
            answer = await api.post(
                url, {}, data={"query": query, "variables": variables}, accept=ACCEPT_JSON
            )
            if not isinstance(answer, dict):
                raise GraphQLErrors([{"message": "answer is not a JSON object"}])
            if answer.get("errors"):
                raise GraphQLErrors(list(answer["errors"]))
            return answer.get("data") or {}

        return await self._call("POST", url, {}, run, write=write)

    # -------------------------------------------------------------- comments

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        if thread.thread_id is None:
            # https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
            url = "/repos/{owner}/{repo}/issues/{number}/comments"
            answer = await self._write("POST", url, _thread_vars(thread), {"body": body})
            return _posted(answer, None)
        # https://docs.github.com/en/rest/pulls/comments#create-a-reply-for-a-review-comment
        root = _review_thread_root(thread)
        url = "/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies"
        url_vars = {**_thread_vars(thread), "comment_id": root}
        answer = await self._write("POST", url, url_vars, {"body": body})
        return _posted(answer, thread.thread_id)

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        # https://docs.github.com/en/rest/issues/comments#update-an-issue-comment
        # https://docs.github.com/en/rest/pulls/comments#update-a-review-comment-for-a-pull-request
        url = (
            "/repos/{owner}/{repo}/issues/comments/{comment_id}"
            if thread.thread_id is None
            else "/repos/{owner}/{repo}/pulls/comments/{comment_id}"
        )
        await self._write(
            "PATCH", url, {**_split(thread.repo), "comment_id": comment_id}, {"body": body}
        )

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

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        # https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-an-issue-comment
        # https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-a-pull-request-review-comment
        # GitHub answers 200 instead of 201 when the reaction is already there.
        if reaction not in REACTION_CONTENTS:
            raise HostError(f"GitHub has no reaction {reaction!r}")
        url = (
            "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
            if thread.thread_id is None
            else "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"
        )
        url_vars = {**_split(thread.repo), "comment_id": comment_id}
        await self._write("POST", url, url_vars, {"content": reaction})

    # -------------------------------------------------------------- reviews

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """One review (event COMMENT) holding every comment; one Posted per comment.

        https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request
        The review's answer does not carry its comments, so they are listed afterwards
        (https://docs.github.com/en/rest/pulls/reviews#list-comments-for-a-pull-request-review).
        """
        check_comment_paths(comments)
        if not comments and not body.strip():
            return []  # GitHub refuses an empty review, and there is nothing to open
        url_vars = _thread_vars(pull)
        review = await self._write(
            "POST",
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            url_vars,
            {
                "commit_id": commit_sha,
                "body": body,
                "event": "COMMENT",
                "comments": [_review_comment(c) for c in comments],
            },
        )
        if not isinstance(review, dict) or "id" not in review:
            raise HostError("GitHub created a review but did not name it", ambiguous=True)
        if not comments:
            return []
        try:
            listed = await self._list(
                "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments",
                {**url_vars, "review_id": review["id"]},
            )
        except HostError as exc:
            # The review exists: a retry must look for it rather than post it again.
            raise HostError(
                f"review {review['id']} was created, but listing its comments failed: {exc}",
                status=exc.status,
                retryable=True,
                ambiguous=True,
                retry_after=exc.retry_after,
            ) from exc
        return _pair_review_comments(comments, listed)

    async def resolve_thread(self, thread: ThreadRef) -> None:
        """Resolve through GraphQL (REST has no such call); already resolved is fine."""
        root = _review_thread_root(thread)
        node = await self._thread_node(thread, root)
        if node is None:
            raise NotFound(
                f"GitHub has no review thread starting at comment {root} in {thread.key}"
            )
        if node.get("isResolved"):
            return
        await self._graphql(RESOLVE_THREAD_MUTATION, {"threadId": node["id"]}, write=True)

    async def _thread_node(self, thread: ThreadRef, root: int) -> dict[str, Any] | None:
        names = _split(thread.repo)
        variables: dict[str, Any] = {
            "owner": names["owner"],
            "name": names["repo"],
            "number": thread.number,
            "cursor": None,
        }
        while True:
            data = await self._graphql(REVIEW_THREADS_QUERY, variables, write=False)
            threads = ((data.get("repository") or {}).get("pullRequest") or {}).get("reviewThreads")
            if not threads:
                raise NotFound(f"GitHub has no pull request {thread.repo}#{thread.number}")
            for node in threads.get("nodes") or []:
                first = (node.get("comments") or {}).get("nodes") or []
                if first and first[0].get("databaseId") == root:
                    return dict(node)
            page = threads.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return None
            variables["cursor"] = page.get("endCursor")

    # -------------------------------------------------------------- pull requests

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

    async def commit_files(
        self,
        repo: str,
        *,
        branch: str,
        base_sha: str,
        changes: Sequence[FileChange],
        message: str,
    ) -> str:
        """A new branch at a new commit, through the Git Data API, without a clone.

        https://docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-your-git-database
        Reads first (the base commit, then the tree levels the changed paths pass
        through), so an unknown base or a change that does not fit fails before
        anything is written; then a blob per new content, a tree on the base's tree, a
        commit whose one parent is the base, and last the branch's ref. Blobs, trees
        and commits are invisible until a ref names them, and trees are named by their
        content, so calling again after any failure repeats no visible write.
        """
        check_change_set(branch, changes)
        names = _split(repo)
        base_tree = await self._commit_tree(repo, base_sha)
        modes = await self._modes(repo, base_tree, [c.path for c in changes])
        entries: list[dict[str, Any]] = []
        for change in changes:
            mode = modes.get(change.path)
            if change.content is None:
                if mode is None:
                    raise HostError(
                        f"cannot delete {change.path}: {repo} has no such file at {base_sha[:12]}"
                    )
                entries.append({"path": change.path, "mode": mode, "type": "blob", "sha": None})
                continue
            # https://docs.github.com/en/rest/git/blobs#create-a-blob
            blob = await self._write(
                "POST",
                "/repos/{owner}/{repo}/git/blobs",
                names,
                {"content": base64.b64encode(change.content).decode("ascii"), "encoding": "base64"},
            )
            # An executable stays executable; anything else written is a plain file.
            kept = "100755" if mode == "100755" else "100644"
            entries.append(
                {"path": change.path, "mode": kept, "type": "blob", "sha": _sha_of(blob, "blob")}
            )
        # https://docs.github.com/en/rest/git/trees#create-a-tree: entries replace (or, with
        # sha null, remove) those of base_tree at their paths; the rest is kept.
        tree = await self._write(
            "POST",
            "/repos/{owner}/{repo}/git/trees",
            names,
            {"base_tree": base_tree, "tree": entries},
        )
        tree_sha = _sha_of(tree, "tree")
        # https://docs.github.com/en/rest/git/commits#create-a-commit
        commit = await self._write(
            "POST",
            "/repos/{owner}/{repo}/git/commits",
            names,
            {"message": message, "tree": tree_sha, "parents": [base_sha]},
        )
        return await self._create_branch(
            repo, branch, _sha_of(commit, "commit"), base_sha, tree_sha
        )

    async def _commit_tree(self, repo: str, sha: str) -> str:
        # https://docs.github.com/en/rest/git/commits#get-a-commit-object
        url = "/repos/{owner}/{repo}/git/commits/{commit_sha}"
        try:
            data = await self._get(url, {**_split(repo), "commit_sha": sha})
        except HostError as exc:
            if isinstance(exc, NotFound) or exc.status == 422:  # 422: not a commit id at all
                raise NotFound(f"GitHub {repo} has no commit {sha} to build on") from exc
            raise
        try:
            return str(data["tree"]["sha"])
        except (KeyError, TypeError) as exc:
            raise HostError(f"GitHub answered commit {sha} of {repo} without its tree") from exc

    async def _modes(self, repo: str, root: str, paths: list[str]) -> dict[str, str]:
        """The git mode of each of `paths` that is a file in tree `root` (absent: no file).

        https://docs.github.com/en/rest/git/trees#get-a-tree lists one level per call, so
        only the directories on the way to a changed path are read. A path that is a
        directory or a submodule there, or runs through a file, is refused.
        """
        levels: dict[str, dict[str, dict[str, Any]] | None] = {}

        async def level(directory: str) -> dict[str, dict[str, Any]] | None:
            if directory in levels:
                return levels[directory]
            sha: str | None = root
            if directory:
                parent, _, name = directory.rpartition("/")
                upper = await level(parent)
                entry = None if upper is None else upper.get(name)
                if entry is not None and entry.get("type") != "tree":
                    raise HostError(f"{directory} is a file in {repo}, not a directory")
                sha = None if entry is None else str(entry["sha"])
            found = None
            if sha is not None:
                url = "/repos/{owner}/{repo}/git/trees/{tree_sha}"
                data = await self._get(url, {**_split(repo), "tree_sha": sha})
                listed = data.get("tree") if isinstance(data, dict) else None
                found = {
                    str(e["path"]): e
                    for e in listed or []
                    if isinstance(e, dict) and "path" in e and "sha" in e
                }
            levels[directory] = found
            return found

        modes: dict[str, str] = {}
        for path in paths:
            directory, _, name = path.rpartition("/")
            entries = await level(directory)
            entry = None if entries is None else entries.get(name)
            if entry is None:
                continue
            if entry.get("type") != "blob":
                raise HostError(f"{path} is a {entry.get('type')} in {repo}, not a file")
            modes[path] = str(entry.get("mode") or "100644")
        return modes

    async def _branch_sha(self, repo: str, branch: str) -> str | None:
        """The commit a branch points at; None when there is no such branch.

        https://docs.github.com/en/rest/git/refs#get-a-reference (the exact ref, else 404)
        """
        url = "/repos/{owner}/{repo}/git/ref/{+ref}"
        try:
            data = await self._get(url, {**_split(repo), "ref": "heads/" + _quote_path(branch)})
        except NotFound:
            return None
        try:
            return str(data["object"]["sha"])
        except (KeyError, TypeError) as exc:
            raise HostError(f"GitHub answered branch {branch} of {repo} without a commit") from exc

    async def _create_branch(
        self, repo: str, branch: str, commit_sha: str, base_sha: str, tree_sha: str
    ) -> str:
        """Point the new ref refs/heads/`branch` at `commit_sha`; the commit it names.

        https://docs.github.com/en/rest/git/refs#create-a-reference answers 422 when the
        ref exists. An existing branch at a commit built alike (parent `base_sha`, tree
        `tree_sha`: an earlier call whose answer was lost) counts as done.
        """
        try:
            await self._write(
                "POST",
                "/repos/{owner}/{repo}/git/refs",
                _split(repo),
                {"ref": "refs/heads/" + branch, "sha": commit_sha},
            )
            return commit_sha
        except HostError as exc:
            if exc.status != 422 and not exc.ambiguous:
                raise
            failure = exc
        existing = await self._branch_sha(repo, branch)
        if existing is None:
            raise failure
        if existing == commit_sha:
            return commit_sha
        url = "/repos/{owner}/{repo}/git/commits/{commit_sha}"
        data = await self._get(url, {**_split(repo), "commit_sha": existing})
        parents = [p.get("sha") for p in data.get("parents") or [] if isinstance(p, dict)]
        if parents == [base_sha] and (data.get("tree") or {}).get("sha") == tree_sha:
            return existing
        raise Conflict(
            f"GitHub {repo} already has a branch {branch} (at {existing[:12]}) "
            "that is not this change on this base",
            status=422,
        ) from failure

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request; GitHub refuses a
        second open pull request for the same branches with 422, so one is looked for first,
        and again after a refusal or an answer that was lost."""
        found = await self._open_pull_for(repo, head, base)
        if found is not None:
            return found
        payload = {"title": title, "head": head, "base": base, "body": body}
        try:
            made = await self._write("POST", "/repos/{owner}/{repo}/pulls", _split(repo), payload)
        except HostError as exc:
            if exc.status != 422 and not exc.ambiguous:
                raise
            found = await self._open_pull_for(repo, head, base)
            if found is None:
                raise
            return found
        return _opened(made)

    async def _open_pull_for(self, repo: str, head: str, base: str) -> Opened | None:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests: `head` as owner:branch
        names = _split(repo)
        url = "/repos/{owner}/{repo}/pulls{?head,base,state,per_page}"
        listed = await self._get(
            url,
            {
                **names,
                "head": f"{names['owner']}:{head}",
                "base": base,
                "state": "open",
                "per_page": PER_PAGE,
            },
        )
        for pull in listed if isinstance(listed, list) else []:
            if not isinstance(pull, dict):
                continue
            refs = ((pull.get("head") or {}).get("ref"), (pull.get("base") or {}).get("ref"))
            if refs == (head, base):
                return _opened(pull)
        return None

    # -------------------------------------------------------------- commit state

    async def set_commit_state(self, repo: str, state: CommitState) -> None:
        if self._app is None:
            await self._commit_status(repo, state)
        else:
            await self._check_run(repo, state, self._app.app_id)

    async def _check_run(self, repo: str, state: CommitState, app_id: int) -> None:
        # https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
        names = _split(repo)
        listed = await self._get(
            "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,app_id,per_page}",
            {
                **names,
                "ref": state.sha,
                "check_name": state.name,
                "app_id": app_id,
                "per_page": PER_PAGE,
            },
        )
        runs = listed.get("check_runs", []) if isinstance(listed, dict) else []
        existing = next((r for r in runs if r.get("name") == state.name), None)
        status, conclusion, title = _CHECK_RUN[state.state]
        payload: dict[str, Any] = {"status": status}
        if conclusion is not None:
            payload["conclusion"] = conclusion
            payload["completed_at"] = _iso(self._transport.clock())
        if state.url:
            payload["details_url"] = state.url
        payload["output"] = {
            "title": title,
            "summary": (state.summary or title)[:CHECK_SUMMARY_LIMIT],
        }
        if existing is not None:
            # https://docs.github.com/en/rest/checks/runs#update-a-check-run
            url = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
            await self._write("PATCH", url, {**names, "check_run_id": existing["id"]}, payload)
            return
        # https://docs.github.com/en/rest/checks/runs#create-a-check-run
        payload = {"name": state.name, "head_sha": state.sha, **payload}
        await self._write("POST", "/repos/{owner}/{repo}/check-runs", names, payload)

    async def _commit_status(self, repo: str, state: CommitState) -> None:
        # https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        payload: dict[str, Any] = {
            "state": _COMMIT_STATUS[state.state],
            "context": state.name,
            "description": state.summary[:STATUS_DESCRIPTION_LIMIT],
        }
        if state.url:
            payload["target_url"] = state.url
        url = "/repos/{owner}/{repo}/statuses/{sha}"
        await self._write("POST", url, {**_split(repo), "sha": state.sha}, payload)

    # -------------------------------------------------------------- identity

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


def _body(comment: Any) -> str:
    return str(comment.get("body") or "") if isinstance(comment, dict) else ""


def _newest(comments: Any) -> dict[str, Any] | None:
    newest: dict[str, Any] | None = None
    for comment in comments:
        if newest is None or int(comment["id"]) > int(newest["id"]):
            newest = comment
    return newest


def _from_fork(data: dict[str, Any]) -> bool | None:
    """A pull request's head is a fork's when its repository is not the base's; a head
    repository of null is a deleted fork.
    https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request"""
    head, base = data.get("head"), data.get("base")
    if not isinstance(head, dict) or not isinstance(base, dict) or "repo" not in head:
        return None
    head_repo, base_repo = head.get("repo"), base.get("repo")
    if head_repo is None:
        return True
    if not isinstance(head_repo, dict) or not isinstance(base_repo, dict):
        return None
    return bool(head_repo.get("full_name") != base_repo.get("full_name"))
