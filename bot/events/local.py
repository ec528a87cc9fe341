"""The playground's (the local host's) deliveries as host-neutral events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.events.types import (
    Actor,
    CommentEvent,
    Event,
    Ignored,
    PayloadError,
    ReviewEvent,
    ThreadRef,
    _get,
    _str,
)

LOCAL_EVENTS = frozenset({"comment", "review"})
_LOCAL_REVIEW_STATES = frozenset({"approved", "changes_requested", "commented", "dismissed"})


def _local_actor(sender: Any) -> Actor:
    if not isinstance(sender, Mapping) or not _str(sender.get("login")):
        raise PayloadError("payload has no sender.login")
    return Actor(login=_str(sender["login"]), is_bot=bool(sender.get("bot")))


def _local_id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value):
        raise PayloadError(f"{what} must be an id, got {value!r}")
    return str(value)


def _side(value: Any, path: Any) -> str | None:
    """A diff comment's side: LEFT or RIGHT (RIGHT when not given, as GitHub defaults)."""
    if not path:
        return None
    if value is None:
        return "RIGHT"
    if value not in ("LEFT", "RIGHT"):
        raise PayloadError(f"comment.side must be LEFT or RIGHT, got {value!r}")
    return str(value)


def normalize_local(event: str, data: Mapping[str, Any]) -> Event | Ignored:
    """Turn one delivery of the playground host (`local`) into an event.

    The playground's pages send these to `POST /webhooks/local`, signed like GitHub's
    (`X-Threadline-Signature-256`), with the event name in `X-Threadline-Event`. The
    shape is our own, kept close to what the other hosts say:

    event `comment` (a comment created, edited or deleted)::

        {"action": "created" | "edited" | "deleted",
         "repository": "playground/demo",
         "target": "pull" | "issue",
         "number": 1,
         "sender": {"login": "maintainer", "bot": false},
         "comment": {"id": 17, "body": "@threadline look at this",
                     "url": "/playground#comment-17",
                     "thread": null | 4,        # the review thread, for a diff comment
                     "in_reply_to": null | 16,  # the comment it answers in that thread
                     "path": null | "src/x.py", "line": null | 12,
                     "side": null | "RIGHT" | "LEFT"}}  # LEFT: a deleted line, old number

    event `review` (an approval, a request for changes, or a plain review)::

        {"action": "submitted" | "dismissed", "repository": ..., "target": "pull",
         "number": 1, "sender": {...},
         "review": {"id": 3, "state": "approved" | "changes_requested" | "commented",
                    "body": "", "commit_id": "<head sha>"}}
    """
    if event == "ping":
        return Ignored("ping")
    if event not in LOCAL_EVENTS:
        return Ignored(f"playground event {event!r} is not handled")
    repo = _str(data.get("repository"))
    if not repo:
        raise PayloadError(f"{event} payload has no repository")
    target = data.get("target", "pull")
    if target not in ("pull", "issue"):
        raise PayloadError(f"target must be pull or issue, got {target!r}")
    number = data.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise PayloadError(f"number must be a positive whole number, got {number!r}")
    common: dict[str, Any] = {
        "host": "local",
        "repo": repo,
        "actor": _local_actor(data.get("sender")),
        "action": _str(data.get("action")),
    }
    if event == "comment":
        comment = _get(data, "comment")
        if not isinstance(comment, Mapping):
            raise PayloadError("comment must be an object")
        thread_id = _local_id(comment.get("thread"), "comment.thread")
        line = comment.get("line")
        return CommentEvent(
            **common,
            thread=ThreadRef("local", repo, target, number, thread_id),
            comment_id=_local_id(_get(data, "comment", "id"), "comment.id") or "",
            body=_str(comment.get("body")),
            url=comment.get("url"),
            in_reply_to=_local_id(comment.get("in_reply_to"), "comment.in_reply_to"),
            path=comment.get("path") or None,
            line=line if isinstance(line, int) and not isinstance(line, bool) else None,
            side=_side(comment.get("side"), comment.get("path")),
        )
    review = _get(data, "review")
    if not isinstance(review, Mapping):
        raise PayloadError("review must be an object")
    state = _str(review.get("state")).lower()
    if common["action"] == "dismissed":
        state = "dismissed"
    if state not in _LOCAL_REVIEW_STATES:
        raise PayloadError(f"unknown review state {state!r}")
    return ReviewEvent(
        **common,
        thread=ThreadRef("local", repo, target, number),
        review_id=_local_id(review.get("id"), "review.id"),
        state=state,
        body=_str(review.get("body")),
        commit_id=review.get("commit_id"),
        url=review.get("url"),
    )
