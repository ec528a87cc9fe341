"""Host-neutral events, and the pure functions that turn GitHub, GitLab and playground
payloads into them.

A thread is where a conversation lives: the conversation of an issue or a pull/merge
request, or one review thread on its diff (GitHub: the replies under one review
comment; GitLab: one discussion). `ThreadRef.key` names it the same way on both hosts.

The types are in `types`, one module per host turns payloads into them, and `order` says
when an event happened; every name is importable from `bot.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.events.github import normalize_github as normalize_github
from bot.events.gitlab import normalize_gitlab as normalize_gitlab
from bot.events.local import LOCAL_EVENTS as LOCAL_EVENTS
from bot.events.local import normalize_local as normalize_local
from bot.events.order import event_time as event_time
from bot.events.order import order_key as order_key
from bot.events.types import (
    HEADLESS,
    Actor,
    CommentEvent,
    Event,
    Host,
    Ignored,
    InstallationEvent,
    IssueEvent,
    PayloadError,
    PullRequestEvent,
    ReviewEvent,
    ReviewThreadEvent,
    Target,
    ThreadRef,
)

__all__ = [
    "HEADLESS",
    "LOCAL_EVENTS",
    "Actor",
    "CommentEvent",
    "Event",
    "Host",
    "Ignored",
    "InstallationEvent",
    "IssueEvent",
    "PayloadError",
    "PullRequestEvent",
    "ReviewEvent",
    "ReviewThreadEvent",
    "Target",
    "ThreadRef",
    "drop_reason",
    "event_time",
    "normalize",
    "normalize_github",
    "normalize_gitlab",
    "normalize_local",
    "order_key",
]


def normalize(host: str, event: str, data: Mapping[str, Any]) -> Event | Ignored:
    """Normalize a stored delivery's payload; raises PayloadError on a broken payload."""
    if host == "github":
        return normalize_github(event, data)
    if host == "gitlab":
        return normalize_gitlab(event, data)
    if host == "local":
        return normalize_local(event, data)
    raise PayloadError(f"unknown host {host!r}")


def drop_reason(event: Event, bot_names: tuple[str, ...]) -> str | None:
    """Why an event must not reach any handler, or None.

    Comments and reviews by the bot itself (no loops), by other bots, and GitLab's
    system notes are dropped. Other events pass: a bot pushing to a PR still moves its head.
    """
    if not isinstance(event, CommentEvent | ReviewEvent):
        return None
    names = {n.lower() for n in bot_names}
    login = event.actor.login.lower()
    if login in names or login.removesuffix("[bot]") in names:
        return f"written by the bot itself ({event.actor.login})"
    if event.actor.is_bot:
        return f"written by a bot account ({event.actor.login})"
    if isinstance(event, CommentEvent) and event.system:
        return "GitLab system note"
    return None
