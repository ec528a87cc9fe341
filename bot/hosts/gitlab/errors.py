"""GitLab errors and pure helpers: constants, project ids, permissions, map_error, Retry-After."""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Mapping
from typing import Final, TypeVar
from urllib.parse import quote

import requests
from gitlab.exceptions import GitlabError, GitlabParsingError, RedirectError
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from bot.hosts.base import (
    COMMIT_STATUSES,
    REACTIONS,
    RESOLVE_THREADS,
    HostError,
    NotFound,
    Permission,
    RateLimited,
    Unauthorized,
)

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
