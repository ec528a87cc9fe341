"""GitHub payload shapes: small pure helpers between GitHub's JSON and bot.hosts.base values."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from bot.events import ThreadRef
from bot.hosts.base import (
    DiffComment,
    HostError,
    Opened,
    Posted,
)

log = logging.getLogger(__name__)


def _split(repo: str) -> dict[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name:
        raise HostError(f"GitHub repository must be owner/name, got {repo!r}")
    return {"owner": owner, "repo": name}


def _quote_path(path: str) -> str:
    """A path (or branch name) for a URL: each part quoted, the slashes kept."""
    return "/".join(urllib.parse.quote(part, safe="") for part in path.split("/"))


def _sha_of(answer: Any, what: str) -> str:
    if not isinstance(answer, dict) or not isinstance(answer.get("sha"), str):
        raise HostError(f"GitHub created a {what} but did not name it", ambiguous=True)
    return str(answer["sha"])


def _opened(pull: Any) -> Opened:
    if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
        raise HostError("GitHub answered a pull request without its number", ambiguous=True)
    return Opened(number=int(pull["number"]), url=pull.get("html_url"))


def _thread_vars(thread: ThreadRef) -> dict[str, str | int]:
    return {**_split(thread.repo), "number": thread.number}


def _review_thread_root(thread: ThreadRef) -> int:
    if thread.thread_id is None or thread.target != "pull":
        raise HostError(f"{thread.key} is not a review thread")
    try:
        return int(thread.thread_id)
    except ValueError:
        raise HostError(f"GitHub review thread ids are numbers, got {thread.thread_id!r}") from None


def _posted(comment: Any, thread_id: str | None) -> Posted:
    if not isinstance(comment, dict) or "id" not in comment:
        raise HostError("GitHub answered a comment write without the comment", retryable=False)
    return Posted(id=str(comment["id"]), url=comment.get("html_url"), thread_id=thread_id)


def _in_thread(comment: dict[str, Any], root: int) -> bool:
    return comment.get("id") == root or comment.get("in_reply_to_id") == root


def _review_comment(comment: DiffComment) -> dict[str, Any]:
    # https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request:
    # line/side place the comment; start_line/start_side open a multi-line range.
    shaped: dict[str, Any] = {"path": comment.path, "line": comment.line, "side": comment.side}
    if comment.start_line is not None and comment.start_line != comment.line:
        shaped["start_line"] = comment.start_line
        shaped["start_side"] = comment.side
    shaped["body"] = comment.body
    return shaped


def _pair_review_comments(wanted: list[DiffComment], listed: list[Any]) -> list[Posted]:
    """Each posted comment's id, in the order asked: by path and body, then by order."""
    pool = sorted((c for c in listed if isinstance(c, dict)), key=lambda c: int(c["id"]))
    found: list[dict[str, Any] | None] = []
    for want in wanted:
        match = next(
            (c for c in pool if (c.get("path"), c.get("body")) == (want.path, want.body)), None
        )
        if match is not None:
            pool.remove(match)
        found.append(match)
    posted = []
    for match in found:
        if match is None:
            if not pool:
                raise HostError(
                    "GitHub created the review but lists fewer comments than were sent",
                    ambiguous=True,
                )
            match = pool.pop(0)
        posted.append(_posted(match, str(match["id"])))
    return posted


def _body(comment: Any) -> str:
    return str(comment.get("body") or "") if isinstance(comment, dict) else ""


def _newest(comments: Any) -> dict[str, Any] | None:
    newest: dict[str, Any] | None = None
    for comment in comments:
        if newest is None or int(comment["id"]) > int(newest["id"]):
            newest = comment
    return newest


def _from_fork(data: dict[str, Any]) -> bool | None:
    """A pull request's head is a fork's when its repository is not the base's; a head
    repository of null is a deleted fork.
    https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request"""
    head, base = data.get("head"), data.get("base")
    if not isinstance(head, dict) or not isinstance(base, dict) or "repo" not in head:
        return None
    head_repo, base_repo = head.get("repo"), base.get("repo")
    if head_repo is None:
        return True
    if not isinstance(head_repo, dict) or not isinstance(base_repo, dict):
        return None
    return bool(head_repo.get("full_name") != base_repo.get("full_name"))
