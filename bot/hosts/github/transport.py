"""GitHub transport: constants, error mapping (host_error, rate limits) and the gidgethub Transport."""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import gidgethub
import uritemplate
from gidgethub import aiohttp as gh_aiohttp
from gidgethub import sansio

from bot.hosts.base import (
    HostError,
    NotFound,
    Permission,
    RateLimited,
    Unauthorized,
)

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


@functools.lru_cache(maxsize=512)
def _template(base_url: str, url: str) -> uritemplate.URITemplate:
    """`url` joined to `base_url`, parsed once (parsing cost most of an expansion, and
    every call expanded its template twice). Joined before it is expanded, as gidgethub
    does, so a `{+ref}` value keeps its slashes and an absolute `url` keeps its host."""
    joined = urllib.parse.urljoin(base_url.removesuffix("/") + "/", url.removeprefix("/"))
    return uritemplate.URITemplate(joined)


def fill(base_url: str, url: str, url_vars: UrlVars) -> str:
    """The absolute URL of `url` (a path template of GitHub's documentation, or an
    absolute URL) with `url_vars` expanded, as gidgethub's `format_url` makes it."""
    return str(_template(base_url, url).expand(dict(url_vars)))


def _path(url: str, url_vars: UrlVars) -> str:
    """The request's path for messages: never a host, a query or a credential."""
    return urllib.parse.urlsplit(fill("http://host.invalid", url, url_vars)).path or "/"


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
        path: str | Callable[[], str],
        action: Callable[[_API], Awaitable[T]],
        *,
        token: str | None,
        write: bool | None = None,
    ) -> T:
        """Run `action`; what goes wrong is raised as a HostError naming `path` (or what
        `path()` returns: worked out only then)."""
        api = _API(self.session, base_url=self.api_url, timeout=self.timeout, oauth_token=token)
        try:
            return await action(api)
        except _CALL_ERRORS as exc:
            is_write = method in WRITE_METHODS if write is None else write
            where = path() if callable(path) else path
            error = host_error(exc, method=method, path=where, write=is_write, now=self.clock())
            log.debug("%s", error)
            raise error from exc
