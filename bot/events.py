"""Host-neutral events, and the pure functions that turn GitHub, GitLab and playground
payloads into them.

A thread is where a conversation lives: the conversation of an issue or a pull/merge
request, or one review thread on its diff (GitHub: the replies under one review
comment; GitLab: one discussion). `ThreadRef.key` names it the same way on both hosts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# local: the playground (bot/hosts/local.py); headless: a session launched through the API
# with no host thread (bot/api), whose replies and status live only in its transcript.
Host = Literal["github", "gitlab", "local", "headless"]
HEADLESS: Host = "headless"
Target = Literal["issue", "pull"]  # "pull" is a GitHub pull request or a GitLab merge request


@dataclass(frozen=True)
class Actor:
    login: str
    id: int | None = None
    is_bot: bool = False


@dataclass(frozen=True)
class ThreadRef:
    host: Host
    repo: str  # owner/name on GitHub, the project's full path on GitLab
    target: Target
    number: int  # issue or PR number; the iid on GitLab
    thread_id: str | None = None  # review thread root comment id / GitLab discussion id

    @property
    def conversation(self) -> ThreadRef:
        """The issue or PR/MR conversation this thread belongs to."""
        return ThreadRef(self.host, self.repo, self.target, self.number)

    @property
    def key(self) -> str:
        kind = "issues" if self.target == "issue" else "pulls"
        base = f"{self.host}:{self.repo}/{kind}/{self.number}"
        return f"{base}/threads/{self.thread_id}" if self.thread_id else base


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event has. `installation_id` is GitHub's; GitLab's is None."""

    host: Host
    repo: str
    actor: Actor
    action: str
    installation_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class CommentEvent(Event):
    """A comment created, edited or deleted in a thread."""

    thread: ThreadRef
    comment_id: str
    body: str
    url: str | None = None
    in_reply_to: str | None = None
    path: str | None = None  # file, for comments on a diff line
    line: int | None = None
    system: bool = False  # GitLab system notes ("added 1 commit", ...)


@dataclass(frozen=True, kw_only=True)
class ReviewEvent(Event):
    """A review submitted or dismissed on a PR, or an approval given or taken back on an MR."""

    thread: ThreadRef
    review_id: str | None
    state: str  # approved | changes_requested | commented | dismissed | unapproved
    body: str = ""
    commit_id: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReviewThreadEvent(Event):
    """A review thread resolved or unresolved (GitHub only)."""

    thread: ThreadRef


@dataclass(frozen=True, kw_only=True)
class IssueEvent(Event):
    """An issue opened, edited, closed, reopened, labeled or assigned."""

    thread: ThreadRef
    title: str
    body: str
    labels: tuple[str, ...] = ()
    label: str | None = None  # the label added or removed, for labeled/unlabeled
    assignees: tuple[str, ...] = ()
    assignee: str | None = None  # the person (un)assigned, for assigned/unassigned
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class PullRequestEvent(Event):
    """A pull or merge request opened, updated (new head), closed, merged or reopened."""

    thread: ThreadRef
    title: str
    body: str
    head_sha: str | None = None
    base_sha: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class InstallationEvent(Event):
    """A GitHub App installed, removed, suspended or given repositories."""

    account: str
    repositories_added: tuple[str, ...] = field(default=())
    repositories_removed: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Ignored:
    """A delivery that carries nothing for Threadline, and why."""

    reason: str


class PayloadError(ValueError):
    """A payload that claims to be an event we handle but lacks what that event has."""


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise PayloadError(f"payload has no {'.'.join(path)}")
        value = value[key]
    return value


def _opt(data: Mapping[str, Any], *path: str) -> Any:
    try:
        return _get(data, *path)
    except PayloadError:
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


# ---------------------------------------------------------------- GitHub


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


# ---------------------------------------------------------------- GitLab

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
        system=bool(note.get("system")),
    )


# ---------------------------------------------------------------- the playground (local)

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
                     "path": null | "src/x.py", "line": null | 12}}

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


def normalize(host: str, event: str, data: Mapping[str, Any]) -> Event | Ignored:
    """Normalize a stored delivery's payload; raises PayloadError on a broken payload."""
    if host == "github":
        return normalize_github(event, data)
    if host == "gitlab":
        return normalize_gitlab(event, data)
    if host == "local":
        return normalize_local(event, data)
    raise PayloadError(f"unknown host {host!r}")


# ---------------------------------------------------------------- order within a thread

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
