"""What /api/v1 accepts: request bodies checked field by field, with one error type.

Every check raises `ApiError` with a code, an HTTP status and a message that names the
field; nothing is created before the whole body has passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.events import HEADLESS, ThreadRef

MAX_TASK_CHARS = 65536  # as a GitHub comment body
MAX_GOAL_CHARS = 4096
MAX_REQUEST_ID_CHARS = 200
MAX_WAIT_SECONDS = 300.0
HOSTS = ("github", "gitlab", "local")
HEADLESS_REPO = "headless"  # what a headless session's thread names as its repository
KINDS = ("issue", "pull")


class ApiError(Exception):
    """An answer in the API's one error shape: {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


def _object(data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise invalid(f"{where}: unknown field(s) {', '.join(unknown)}")
    return data


def _text(data: dict[str, Any], name: str, *, most: int, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if required and not value.strip():
        raise invalid(f"{name} must not be empty")
    if len(value) > most:
        raise ApiError(413, "too_large", f"{name} is longer than {most} characters")
    return value


@dataclass(frozen=True)
class LaunchRequest:
    """POST /sessions, checked."""

    task: str
    agent: str | None
    goal: str | None
    client_request_id: str | None
    thread: ThreadRef
    installation_id: int | None

    @property
    def full_task(self) -> str:
        """The task as the agent reads it: with the goal after it, when there is one."""
        return self.task if not self.goal else f"{self.task}\n\nGoal: {self.goal}"


LAUNCH_FIELDS = ("agent", "task", "goal", "clientRequestId", "thread")
THREAD_FIELDS = ("host", "repo", "kind", "number", "reviewThread", "installationId")


def launch_request(data: Any) -> LaunchRequest:
    body = _object(data, "the body", LAUNCH_FIELDS)
    task = _text(body, "task", most=MAX_TASK_CHARS, required=True)
    agent = _text(body, "agent", most=100, required=False)
    goal = _text(body, "goal", most=MAX_GOAL_CHARS, required=False)
    request_id = _text(body, "clientRequestId", most=MAX_REQUEST_ID_CHARS, required=False)
    if body.get("thread") is None:
        assert task is not None
        return LaunchRequest(task, agent, goal, request_id, headless_thread(), None)
    thread = _object(body["thread"], "thread", THREAD_FIELDS)
    host = thread.get("host")
    if host not in HOSTS:
        raise invalid(f"thread.host must be one of {', '.join(HOSTS)}")
    repo = thread.get("repo")
    if not isinstance(repo, str) or "/" not in repo or len(repo) > 255:
        raise invalid("thread.repo must be a string OWNER/REPO")
    kind = thread.get("kind", "issue")
    if kind not in KINDS:
        raise invalid(f"thread.kind must be one of {', '.join(KINDS)}")
    number = thread.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise invalid("thread.number must be a positive integer")
    review = thread.get("reviewThread")
    if review is not None and (not isinstance(review, str) or not review or len(review) > 100):
        raise invalid("thread.reviewThread must be a non-empty string")
    if review is not None and kind != "pull":
        raise invalid("thread.reviewThread needs thread.kind pull")
    installation = thread.get("installationId")
    if installation is not None and (
        not isinstance(installation, int) or isinstance(installation, bool)
    ):
        raise invalid("thread.installationId must be an integer")
    if host == "github" and installation is None:
        raise invalid("thread.installationId is required for a GitHub thread")
    assert task is not None
    return LaunchRequest(
        task=task,
        agent=agent,
        goal=goal,
        client_request_id=request_id,
        thread=ThreadRef(host, repo, kind, number, review),
        installation_id=installation,
    )


def headless_thread() -> ThreadRef:
    """A thread of its own for a headless session: on no host, so nothing is written
    anywhere but the transcript."""
    return ThreadRef(HEADLESS, HEADLESS_REPO, "issue", 0, uuid.uuid4().hex[:16])


@dataclass(frozen=True)
class PromptRequest:
    """POST /sessions/{id}/prompt, checked."""

    input: str
    wait: float | None


def prompt_request(data: Any) -> PromptRequest:
    body = _object(data, "the body", ("input", "wait"))
    text = _text(body, "input", most=MAX_TASK_CHARS, required=True)
    wait = body.get("wait")
    if wait is not None:
        if not isinstance(wait, int | float) or isinstance(wait, bool):
            raise invalid("wait must be a number of seconds")
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise invalid(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    assert text is not None
    return PromptRequest(text, float(wait) if wait is not None else None)


PAGE_LIMIT = 100
EVENTS_LIMIT = 1000


def _integer(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter (a query string's text or a JSON number), clamped to
    [low, high]; `default` when absent."""
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid(f"{name} must be an integer")
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise invalid(f"{name} must be an integer") from None
    if not isinstance(value, int):
        raise invalid(f"{name} must be an integer")
    return min(max(value, low), high)


def _filter(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise invalid(f"{name} must be a string")
    return value


@dataclass(frozen=True)
class ListRequest:
    """GET /sessions, checked: filters and a page."""

    state: str | None = None
    repo: str | None = None
    agent: str | None = None
    before: str | None = None
    limit: int = 50


def list_request(data: Mapping[str, Any]) -> ListRequest:
    return ListRequest(
        state=_filter(data, "state"),
        repo=_filter(data, "repo"),
        agent=_filter(data, "agent"),
        before=_filter(data, "before"),
        limit=_integer(data, "limit", 50, 1, PAGE_LIMIT),
    )


@dataclass(frozen=True)
class EventsRequest:
    """GET /sessions/{id}/events, checked: the events after `after`, `limit` at most."""

    after: int = 0
    limit: int = 100


def events_request(data: Mapping[str, Any]) -> EventsRequest:
    return EventsRequest(
        after=_integer(data, "after", 0, 0, 2**62),
        limit=_integer(data, "limit", 100, 1, EVENTS_LIMIT),
    )
