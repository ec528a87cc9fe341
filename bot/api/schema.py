"""What /api/v1 accepts: request bodies checked field by field, with one error type.

Every check raises `ApiError` with a code, an HTTP status and a message that names the
field; nothing is created before the whole body has passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.api.overrides import OVERRIDE_FIELDS, Overrides, overrides_of, runtime_params
from bot.api.schema_base import ApiError, invalid, object_of
from bot.events import HEADLESS, ThreadRef

__all__ = ["ApiError", "invalid"]

MAX_TASK_CHARS = 65536  # as a GitHub comment body
MAX_GOAL_CHARS = 4096
MAX_REQUEST_ID_CHARS = 200
MAX_WAIT_SECONDS = 300.0
HOSTS = ("github", "gitlab", "local")
HEADLESS_REPO = "headless"  # what a headless session's thread names as its repository
KINDS = ("issue", "pull")


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
    overrides: Overrides = field(default_factory=Overrides)

    @property
    def full_task(self) -> str:
        """The task as the agent reads it: with the goal after it, when there is one."""
        return self.task if not self.goal else f"{self.task}\n\nGoal: {self.goal}"


LAUNCH_FIELDS = ("agent", "task", "goal", "clientRequestId", "thread", *OVERRIDE_FIELDS)
THREAD_FIELDS = ("host", "repo", "kind", "number", "reviewThread", "installationId")


def launch_request(data: Any, *, extra: tuple[str, ...] = ()) -> LaunchRequest:
    """POST /sessions (and the launch part of POST /tasks, whose `extra` fields the
    caller reads)."""
    body = object_of(data, "the body", (*LAUNCH_FIELDS, *extra))
    task = _text(body, "task", most=MAX_TASK_CHARS, required=True)
    agent = _text(body, "agent", most=100, required=False)
    goal = _text(body, "goal", most=MAX_GOAL_CHARS, required=False)
    request_id = _text(body, "clientRequestId", most=MAX_REQUEST_ID_CHARS, required=False)
    overrides = overrides_of(body)
    if body.get("thread") is None:
        assert task is not None
        return LaunchRequest(task, agent, goal, request_id, headless_thread(), None, overrides)
    thread = object_of(body["thread"], "thread", THREAD_FIELDS)
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
        overrides=overrides,
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
    runtime_params: dict[str, Any] | None = None  # for the turn that reads this input


def _wait(body: dict[str, Any]) -> float | None:
    wait = body.get("wait")
    if wait is None:
        return None
    if not isinstance(wait, int | float) or isinstance(wait, bool):
        raise invalid("wait must be a number of seconds")
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise invalid(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return float(wait)


def prompt_request(data: Any) -> PromptRequest:
    body = object_of(data, "the body", ("input", "wait", "runtimeParams"))
    text = _text(body, "input", most=MAX_TASK_CHARS, required=True)
    assert text is not None
    raw = body.get("runtimeParams")
    params = None if raw is None else runtime_params(raw)
    return PromptRequest(text, _wait(body), params)


@dataclass(frozen=True)
class TaskRequest:
    """POST /tasks, checked: a launch, and how long to wait for its one turn."""

    launch: LaunchRequest
    wait: float


DEFAULT_TASK_WAIT = 120.0


def task_request(data: Any) -> TaskRequest:
    launch = launch_request(data, extra=("wait",))
    wait = _wait(data)
    return TaskRequest(launch, DEFAULT_TASK_WAIT if wait is None else wait)


@dataclass(frozen=True)
class CancelRequest:
    """POST /sessions/{id}/cancel, checked: optionally wait until the turn has stopped."""

    wait: float | None = None


def cancel_request(data: Any) -> CancelRequest:
    """The body is optional: None (no body) asks for nothing more."""
    if data is None:
        return CancelRequest()
    return CancelRequest(_wait(object_of(data, "the body", ("wait",))))


@dataclass(frozen=True)
class ApproveRequest:
    """POST /sessions/{id}/approve, checked: approve, or send back with `changes`."""

    approve: bool = True
    text: str = ""


def approve_request(data: Any) -> ApproveRequest:
    if data is None:
        return ApproveRequest()
    body = object_of(data, "the body", ("approve", "comment"))
    approve = body.get("approve", True)
    if not isinstance(approve, bool):
        raise invalid("approve must be true or false")
    text = _text(body, "comment", most=MAX_GOAL_CHARS, required=False) or ""
    if not approve and not text.strip():
        raise invalid("comment is required when approve is false: say what to change")
    return ApproveRequest(approve, text)


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
