"""GitLab webhook payloads as host-neutral events (pure: a payload in, an event out)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.events.types import (
    Actor,
    CommentEvent,
    Event,
    Ignored,
    IssueEvent,
    PayloadError,
    PullRequestEvent,
    ReviewEvent,
    Target,
    ThreadRef,
    _get,
    _opt,
    _str,
)

# Bot users GitLab makes for project and group access tokens: project_<id>_bot..., group_<id>_bot...
# https://docs.gitlab.com/user/project/settings/project_access_tokens/#bot-users-for-projects
_GITLAB_TOKEN_BOT = re.compile(r"(project|group)_\d+_bot")


def _gl_actor(user: Mapping[str, Any] | None) -> Actor:
    if not user:
        return Actor("ghost")
    login = _str(user.get("username")) or "ghost"
    token_bot = _GITLAB_TOKEN_BOT.match(login) is not None
    return Actor(
        login=login,
        id=user.get("id") if isinstance(user.get("id"), int) else None,
        is_bot=token_bot or bool(user.get("bot")),
    )


# GitLab's past-tense spellings, so handlers see one vocabulary on both hosts.
_GITLAB_ACTIONS = {
    "open": "opened",
    "close": "closed",
    "reopen": "reopened",
    "update": "edited",
    "merge": "merged",
    "create": "created",
}


def normalize_gitlab(event: str, data: Mapping[str, Any]) -> Event | Ignored:
    """Turn one GitLab webhook payload into an event, or say why it carries none.

    https://docs.gitlab.com/user/project/integrations/webhook_events/
    """
    kind = data.get("object_kind")
    repo = _str(_opt(data, "project", "path_with_namespace"))
    attributes = data.get("object_attributes")
    if isinstance(attributes, Mapping):
        # Some senders (seen in client libraries' sample hooks) pad key names with spaces.
        attributes = {str(k).strip(): v for k, v in attributes.items()}
    if kind not in ("note", "issue", "merge_request"):
        return Ignored(f"GitLab event {event!r} is not handled")
    if not repo or not isinstance(attributes, Mapping):
        raise PayloadError(
            f"{event} payload lacks project.path_with_namespace or object_attributes"
        )
    raw_action = _str(attributes.get("action"))
    common: dict[str, Any] = {
        "host": "gitlab",
        "repo": repo,
        "actor": _gl_actor(data.get("user")),
        "action": _GITLAB_ACTIONS.get(raw_action, raw_action),
    }
    if kind == "note":
        return _gl_note(data, attributes, common)
    if kind == "issue":
        thread = ThreadRef("gitlab", repo, "issue", int(_get(attributes, "iid")))
        labels = tuple(_str(lb.get("title")) for lb in data.get("labels") or [])
        assignees = tuple(_str(a.get("username")) for a in data.get("assignees") or [])
        changes = data.get("changes") or {}
        action, label, assignee = common["action"], None, None
        if action == "edited":
            # GitLab reports labels and assignees as an update; say what was added.
            before_labels = {
                _str(lb.get("title")) for lb in _opt(changes, "labels", "previous") or []
            }
            before_people = {
                _str(a.get("username")) for a in _opt(changes, "assignees", "previous") or []
            }
            new_labels = [lb for lb in labels if lb not in before_labels]
            new_people = [a for a in assignees if a not in before_people]
            if "labels" in changes and new_labels:
                action, label = "labeled", new_labels[0]
            elif "assignees" in changes and new_people:
                action, assignee = "assigned", new_people[0]
        common["action"] = action
        return IssueEvent(
            **common,
            thread=thread,
            title=_str(attributes.get("title")),
            body=_str(attributes.get("description")),
            labels=labels,
            label=label,
            assignees=assignees,
            assignee=assignee,
            url=attributes.get("url"),
        )
    thread = ThreadRef("gitlab", repo, "pull", int(_get(attributes, "iid")))
    if raw_action in ("approval", "unapproval"):
        # One person's approval given or taken back: GitLab's equivalent of a review.
        return ReviewEvent(
            **{**common, "action": "submitted" if raw_action == "approval" else "dismissed"},
            thread=thread,
            review_id=None,
            state="approved" if raw_action == "approval" else "unapproved",
            commit_id=_opt(attributes, "last_commit", "id"),
            url=attributes.get("url"),
        )
    if raw_action == "update" and _opt(attributes, "oldrev"):
        common["action"] = "synchronize"  # new commits pushed: the head moved
    return PullRequestEvent(
        **common,
        thread=thread,
        title=_str(attributes.get("title")),
        body=_str(attributes.get("description")),
        head_sha=_opt(attributes, "last_commit", "id"),
        base_sha=None,
        url=attributes.get("url"),
    )


def _gl_note(
    data: Mapping[str, Any], note: Mapping[str, Any], common: dict[str, Any]
) -> Event | Ignored:
    noteable = note.get("noteable_type")
    if noteable == "Issue":
        target: Target = "issue"
        number = _get(data, "issue", "iid")
    elif noteable == "MergeRequest":
        target = "pull"
        number = _get(data, "merge_request", "iid")
    else:
        return Ignored(f"GitLab note on a {noteable or 'unknown object'} is not handled")
    # Individual notes ("type": null) belong to the conversation; a discussion
    # (a thread started on the diff or in the conversation) is a thread of its own.
    discussion = (
        note.get("discussion_id") if note.get("type") in ("DiffNote", "DiscussionNote") else None
    )
    raw_position = note.get("position")
    position: Mapping[str, Any] = raw_position if isinstance(raw_position, Mapping) else {}
    line = position.get("new_line") or position.get("old_line")
    # GitLab gives a deleted line only its old_line: that is GitHub's LEFT side.
    side = None if not position else "RIGHT" if position.get("new_line") else "LEFT"
    if not common["action"]:
        common["action"] = "created"
    return CommentEvent(
        **common,
        thread=ThreadRef("gitlab", common["repo"], target, int(number), discussion or None),
        comment_id=str(_get(note, "id")),
        body=_str(note.get("note")),
        url=note.get("url"),
        path=position.get("new_path") or position.get("old_path"),
        line=line if isinstance(line, int) else None,
        side=side if isinstance(line, int) else None,
        system=bool(note.get("system")),
    )
