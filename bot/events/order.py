"""Order within a thread: when an event happened by its own payload, and which thread it
belongs to, so a thread's deliveries are handled in order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.events.types import (
    Event,
    InstallationEvent,
    ThreadRef,
    _opt,
)

# Where each event's payload says when it happened, most specific first: a comment's
# updated_at is its created_at until it is edited, and the edit's time after.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads
# https://docs.gitlab.com/user/project/integrations/webhook_events/
_GITHUB_TIMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "issue_comment": (("comment", "updated_at"), ("comment", "created_at")),
    "pull_request_review_comment": (("comment", "updated_at"), ("comment", "created_at")),
    "pull_request_review": (("review", "submitted_at"), ("pull_request", "updated_at")),
    "pull_request_review_thread": (("pull_request", "updated_at"),),
    "issues": (("issue", "updated_at"),),
    "pull_request": (("pull_request", "updated_at"),),
    "installation": (("installation", "updated_at"),),
    "installation_repositories": (("installation", "updated_at"),),
}
_GITLAB_TIMES = (("object_attributes", "updated_at"), ("object_attributes", "created_at"))


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time (GitHub: `2026-12-04T11:02:03Z`) or GitLab's older
    `2026-12-04 11:02:03 UTC`, as an aware UTC datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_time(host: str, event: str, data: Mapping[str, Any]) -> datetime | None:
    """When the host says the event happened, read from the payload; None when it
    does not say (the playground's events, GitLab payloads without timestamps).

    Hosts number no deliveries (GitHub's delivery ids are GUIDs, and a redelivery
    arrives late), so this time is what orders one thread's deliveries.
    """
    if host == "github":
        paths = _GITHUB_TIMES.get(event, ())
    elif host == "gitlab":
        paths = _GITLAB_TIMES
    else:
        paths = ()
    for path in paths:
        found = _timestamp(_opt(data, *path))
        if found is not None:
            return found
    return None


def order_key(event: Event) -> str:
    """The thread whose deliveries must be handled in order; "" for none.

    It is the thread a session lives in (`ThreadRef.key`): a pull request's
    conversation, or one review thread (GitLab: one discussion) of it, so a `/done`
    follows the trigger it ends. Installation events are ordered per installation.
    """
    thread = getattr(event, "thread", None)
    if isinstance(thread, ThreadRef):
        return thread.key
    if isinstance(event, InstallationEvent) and event.installation_id is not None:
        return f"{event.host}:installations/{event.installation_id}"
    return ""
