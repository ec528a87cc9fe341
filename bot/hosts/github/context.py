"""GitHub reads for a session's context: the pull request or issue, the newest comments
of a thread (read from the last page back, so a long thread costs a few pages), and the
review comment a review thread starts with."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from bot.events import ThreadRef
from bot.hosts.base import HostError
from bot.hosts.github.reads import Reads
from bot.hosts.github.shapes import _review_thread_root, _thread_vars
from bot.hosts.github.transport import ACCEPT_JSON, PER_PAGE, _header
from bot.hosts.thread import (
    CommentWindow,
    IssueDetails,
    PullDetails,
    ReviewAnchor,
    ThreadComment,
)

_LAST_PAGE = re.compile(r'<([^>]+)>;\s*rel="last"')


def _login(item: Any) -> str:
    user = item.get("user") if isinstance(item, dict) else None
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def _names(items: Any, key: str) -> tuple[str, ...]:
    """Label names (objects or plain strings, as the docs allow) or assignees' logins."""
    if not isinstance(items, list):
        return ()
    out = [str(i.get(key) or "") if isinstance(i, dict) else str(i) for i in items]
    return tuple(name for name in out if name)


def _last_page(link: str | None) -> int:
    """The page number of rel="last" in a Link header; 1 when there is none."""
    found = _LAST_PAGE.search(link or "")
    if found is None:
        return 1
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(found.group(1)).query)
    try:
        return int(query.get("page", ["1"])[0])
    except ValueError:
        return 1


class ContextReads(Reads):
    """What a session's context reads of GitHub."""

    async def pull_details(self, pull: ThreadRef) -> PullDetails:
        # https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request
        data = await self._get("/repos/{owner}/{repo}/pulls/{number}", _thread_vars(pull))
        try:
            head, base = data["head"], data["base"]
            merged = data.get("merged") or data.get("merged_at")
            return PullDetails(
                title=str(data.get("title") or ""),
                body=str(data.get("body") or ""),
                author=_login(data),
                state="merged" if merged else str(data.get("state") or ""),
                draft=bool(data.get("draft")),
                labels=_names(data.get("labels"), "name"),
                base_ref=str(base.get("ref") or ""),
                head_ref=str(head.get("ref") or ""),
                base_sha=str(base["sha"]),
                head_sha=str(head["sha"]),
                url=data.get("html_url"),
            )
        except (AttributeError, KeyError, TypeError) as exc:
            raise HostError(f"GitHub pull request {pull.key} lacks head/base") from exc

    async def issue_details(self, issue: ThreadRef) -> IssueDetails:
        # https://docs.github.com/en/rest/issues/issues#get-an-issue
        data = await self._get("/repos/{owner}/{repo}/issues/{number}", _thread_vars(issue))
        if not isinstance(data, dict):
            raise HostError(f"GitHub answered issue {issue.key} with something else")
        return IssueDetails(
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            author=_login(data),
            state=str(data.get("state") or ""),
            labels=_names(data.get("labels"), "name"),
            assignees=_names(data.get("assignees"), "login"),
            url=data.get("html_url"),
        )

    async def thread_comments(self, thread: ThreadRef, *, newest: int) -> CommentWindow:
        me = (await self._my_login()).lower()
        if thread.thread_id is None:
            # https://docs.github.com/en/rest/issues/comments#list-issue-comments (ascending)
            url = "/repos/{owner}/{repo}/issues/{number}/comments"
            items, count, _ = await self._newest_items(url, _thread_vars(thread), newest)
            total: int | None = count
        else:
            # The pull request's newest review comments narrowed to the thread's root and
            # its replies; the root is read on its own when it is older than those.
            root = _review_thread_root(thread)
            url = "/repos/{owner}/{repo}/pulls/{number}/comments"
            listed, _, complete = await self._newest_items(url, _thread_vars(thread), newest)
            items = [c for c in listed if root in (c.get("id"), c.get("in_reply_to_id"))]
            if all(c.get("id") != root for c in items):
                items.insert(0, await self._review_comment(thread, root))
            total = len(items) if complete else None
        comments = tuple(
            ThreadComment(
                id=str(c.get("id")),
                author=_login(c),
                created_at=str(c.get("created_at") or ""),
                body=str(c.get("body") or ""),
                ours=_login(c).lower() == me,
            )
            for c in items
        )
        return CommentWindow(comments, total if total is not None else len(comments))

    async def review_anchor(self, thread: ThreadRef) -> ReviewAnchor:
        root = await self._review_comment(thread, _review_thread_root(thread))
        line = root.get("line")
        outdated = line is None  # GitHub nulls `line` once the diff moved past it
        if line is None:
            line = root.get("original_line")
        start = root.get("start_line") if not outdated else root.get("original_start_line")
        return ReviewAnchor(
            path=str(root.get("path") or ""),
            line=int(line) if isinstance(line, int) else None,
            start_line=int(start) if isinstance(start, int) else None,
            side=str(root.get("side") or "RIGHT"),
            hunk=str(root.get("diff_hunk") or ""),
            outdated=outdated,
        )

    async def _review_comment(self, thread: ThreadRef, comment_id: int) -> dict[str, Any]:
        # https://docs.github.com/en/rest/pulls/comments#get-a-review-comment-for-a-pull-request
        url = "/repos/{owner}/{repo}/pulls/comments/{comment_id}"
        data = await self._get(url, {**_thread_vars(thread), "comment_id": comment_id})
        if not isinstance(data, dict):
            raise HostError(f"GitHub answered review comment {comment_id} with something else")
        return data

    async def _newest_items(
        self, url: str, url_vars: dict[str, str | int], newest: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """The newest `newest` or so items of an ascending list (whole pages), oldest
        first; how many the list holds; whether every page was read. The first page
        names the last one (Link rel="last"); pages are then read from the last back.
        https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
        """
        template = url + "{?per_page,page}"

        async def page(number: int) -> tuple[list[dict[str, Any]], int]:
            headers, body = await self._get_raw(
                template, {**url_vars, "per_page": PER_PAGE, "page": number}, ACCEPT_JSON
            )
            try:
                items = json.loads(body)
            except ValueError as exc:
                raise HostError(f"GitHub answered {url} with something not JSON") from exc
            if not isinstance(items, list):
                raise HostError(f"GitHub answered {url} with something not a list")
            return [i for i in items if isinstance(i, dict)], _last_page(_header(headers, "link"))

        first, last = await page(1)
        if last <= 1:
            return first, len(first), True
        pages = max(1, -(-newest // PER_PAGE))
        newer: list[list[dict[str, Any]]] = []
        for number in range(last, max(1, last - pages), -1):
            items, _ = await page(number)
            newer.insert(0, items)
        total = (last - 1) * PER_PAGE + len(newer[-1])
        read = [item for chunk in newer for item in chunk]
        complete = last - pages <= 1  # every page after the first was read
        return (first + read if complete else read), total, complete
