"""GitHub webhook payloads as host-neutral events (pure: a payload in, an event out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.events.types import (
    Actor,
    CommentEvent,
    Event,
    Ignored,
    InstallationEvent,
    IssueEvent,
    PayloadError,
    PullRequestEvent,
    ReviewEvent,
    ReviewThreadEvent,
    Target,
    ThreadRef,
    _get,
    _opt,
    _str,
)


def _gh_actor(user: Mapping[str, Any] | None) -> Actor:
    if not user:
        return Actor("ghost")
    login = _str(user.get("login")) or "ghost"
    return Actor(
        login=login,
        id=user.get("id") if isinstance(user.get("id"), int) else None,
        is_bot=user.get("type") == "Bot" or login.endswith("[bot]"),
    )


def _gh_common(data: Mapping[str, Any]) -> dict[str, Any]:
    installation = data.get("installation")
    return {
        "host": "github",
        "repo": _str(_opt(data, "repository", "full_name")),
        "actor": _gh_actor(data.get("sender")),
        "action": _str(data.get("action")),
        "installation_id": installation.get("id") if isinstance(installation, Mapping) else None,
    }


_GITHUB_THREAD_EVENTS = frozenset(
    {
        "issue_comment",
        "pull_request_review_comment",
        "pull_request_review",
        "pull_request_review_thread",
        "issues",
        "pull_request",
    }
)


def normalize_github(event: str, data: Mapping[str, Any]) -> Event | Ignored:
    """Turn one GitHub webhook payload into an event, or say why it carries none.

    https://docs.github.com/en/webhooks/webhook-events-and-payloads
    """
    if event == "ping":
        return Ignored("ping")
    if event in ("installation", "installation_repositories"):
        return _gh_installation(event, data)
    if event not in _GITHUB_THREAD_EVENTS:
        return Ignored(f"GitHub event {event!r} is not handled")
    common = _gh_common(data)
    repo = common["repo"]
    if not repo:
        raise PayloadError(f"{event} payload has no repository.full_name")
    if event == "issue_comment":
        issue = _get(data, "issue")
        comment = _get(data, "comment")
        target: Target = "pull" if issue.get("pull_request") else "issue"
        return CommentEvent(
            **common,
            thread=ThreadRef("github", repo, target, int(_get(issue, "number"))),
            comment_id=str(_get(comment, "id")),
            body=_str(comment.get("body")),
            url=comment.get("html_url"),
        )
    if event == "pull_request_review_comment":
        pull = _get(data, "pull_request")
        comment = _get(data, "comment")
        # GitHub points every reply at the thread's first comment, so that id names the thread.
        reply_to = comment.get("in_reply_to_id")
        root = reply_to if reply_to is not None else _get(comment, "id")
        line = (
            comment.get("line") if comment.get("line") is not None else comment.get("original_line")
        )
        return CommentEvent(
            **common,
            thread=ThreadRef("github", repo, "pull", int(_get(pull, "number")), str(root)),
            comment_id=str(_get(comment, "id")),
            body=_str(comment.get("body")),
            url=comment.get("html_url"),
            in_reply_to=None if reply_to is None else str(reply_to),
            path=comment.get("path"),
            line=line if isinstance(line, int) else None,
            # GitHub: "LEFT" for a deleted line (numbered in the old file), else "RIGHT".
            side="LEFT" if comment.get("side") == "LEFT" else "RIGHT",
        )
    if event == "pull_request_review":
        pull = _get(data, "pull_request")
        review = _get(data, "review")
        state = (
            _str(review.get("state")).lower() if common["action"] != "dismissed" else "dismissed"
        )
        return ReviewEvent(
            **common,
            thread=ThreadRef("github", repo, "pull", int(_get(pull, "number"))),
            review_id=str(_get(review, "id")),
            state=state,
            body=_str(review.get("body")),
            commit_id=review.get("commit_id"),
            url=review.get("html_url"),
        )
    if event == "pull_request_review_thread":
        pull = _get(data, "pull_request")
        comments = _opt(data, "thread", "comments") or []
        if not comments:
            return Ignored("review thread event without comments")
        root = comments[0].get("in_reply_to_id") or comments[0].get("id")
        return ReviewThreadEvent(
            **common,
            thread=ThreadRef("github", repo, "pull", int(_get(pull, "number")), str(root)),
        )
    if event == "issues":
        issue = _get(data, "issue")
        return IssueEvent(
            **common,
            thread=ThreadRef("github", repo, "issue", int(_get(issue, "number"))),
            title=_str(issue.get("title")),
            body=_str(issue.get("body")),
            labels=tuple(_str(lb.get("name")) for lb in issue.get("labels") or []),
            label=_opt(data, "label", "name"),
            assignees=tuple(_str(a.get("login")) for a in issue.get("assignees") or []),
            assignee=_opt(data, "assignee", "login"),
            url=issue.get("html_url"),
        )
    if event == "pull_request":
        pull = _get(data, "pull_request")
        return PullRequestEvent(
            **common,
            thread=ThreadRef("github", repo, "pull", int(_get(pull, "number"))),
            title=_str(pull.get("title")),
            body=_str(pull.get("body")),
            head_sha=_opt(pull, "head", "sha"),
            base_sha=_opt(pull, "base", "sha"),
            url=pull.get("html_url"),
        )
    raise AssertionError(f"unreachable: {event} is in _GITHUB_THREAD_EVENTS")


def _gh_installation(event: str, data: Mapping[str, Any]) -> Event:
    installation = _get(data, "installation")

    def names(key: str) -> tuple[str, ...]:
        return tuple(_str(r.get("full_name")) for r in data.get(key) or [])

    if event == "installation_repositories":
        added = names("repositories_added")
    else:
        # `repositories` is the installation's selection when it is created; other actions
        # may repeat it, but only installation_repositories events change it afterwards.
        added = names("repositories") if data.get("action") == "created" else ()
    return InstallationEvent(
        host="github",
        repo="",
        actor=_gh_actor(data.get("sender")),
        action=_str(data.get("action")),
        installation_id=int(_get(installation, "id")),
        account=_str(_opt(installation, "account", "login")),
        repositories_added=added,
        repositories_removed=names("repositories_removed"),
    )
