"""GitLab reads for a session's context: the merge request or issue, the newest notes of
a thread (newest first, so a long thread costs a few pages), and where a diff
discussion sits, with the hunk cut from the merge request's diffs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.events import ThreadRef
from bot.hosts.base import HostError
from bot.hosts.gitlab.errors import MR_STATES, project_id
from bot.hosts.gitlab.reads import Reads
from bot.hosts.gitlab.shapes import _json, _require_pull
from bot.hosts.thread import (
    CommentWindow,
    IssueDetails,
    PullDetails,
    ReviewAnchor,
    ThreadComment,
    hunk_at,
)


def _username(entity: Any) -> str:
    return str(entity.get("username") or "") if isinstance(entity, Mapping) else ""


def _strings(items: Any) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(str(i.get("name") if isinstance(i, Mapping) else i) for i in items if i)


class ContextReads(Reads):
    """What a session's context reads of GitLab."""

    async def pull_details(self, pull: ThreadRef) -> PullDetails:
        _require_pull(pull, "read a merge request")
        # https://docs.gitlab.com/api/merge_requests/#get-single-mr
        mr = await self._read("read the merge request", self._merge_request, pull)
        refs = mr.get("diff_refs") if isinstance(mr.get("diff_refs"), Mapping) else {}
        assert isinstance(refs, Mapping)
        draft = mr.get("draft", mr.get("work_in_progress"))
        return PullDetails(
            title=str(mr.get("title") or ""),
            body=str(mr.get("description") or ""),
            author=_username(mr.get("author")),
            state=MR_STATES.get(str(mr.get("state")), str(mr.get("state") or "")),
            draft=bool(draft),
            labels=_strings(mr.get("labels")),
            base_ref=str(mr.get("target_branch") or ""),
            head_ref=str(mr.get("source_branch") or ""),
            base_sha=str(refs.get("base_sha") or ""),
            head_sha=str(refs.get("head_sha") or mr.get("sha") or ""),
            url=mr.get("web_url"),
        )

    async def issue_details(self, issue: ThreadRef) -> IssueDetails:
        # https://docs.gitlab.com/api/issues/#single-project-issue
        path = f"/projects/{project_id(issue.repo)}/issues/{issue.number}"
        data = await self._read("read the issue", self._get, path)
        return IssueDetails(
            title=str(data.get("title") or ""),
            body=str(data.get("description") or ""),
            author=_username(data.get("author")),
            state=MR_STATES.get(str(data.get("state")), str(data.get("state") or "")),
            labels=_strings(data.get("labels")),
            assignees=tuple(_username(a) for a in data.get("assignees") or () if _username(a)),
            url=data.get("web_url"),
        )

    async def thread_comments(self, thread: ThreadRef, *, newest: int) -> CommentWindow:
        if thread.thread_id is None:
            return await self._read("read the thread's notes", self._newest_notes, thread, newest)
        return await self._read("read the discussion", self._discussion_notes, thread)

    async def review_anchor(self, thread: ThreadRef) -> ReviewAnchor:
        _require_pull(thread, "read a diff discussion")
        return await self._read("read the discussion", self._anchor, thread)

    # ------------------------------------------------------------ blocking bodies

    def _comment(self, note: Mapping[str, Any]) -> ThreadComment:
        author = _username(note.get("author"))
        return ThreadComment(
            id=str(note.get("id")),
            author=author,
            created_at=str(note.get("created_at") or ""),
            body=str(note.get("body") or ""),
            ours=author == self._me(),
        )

    def _newest_notes(self, thread: ThreadRef, newest: int) -> CommentWindow:
        # https://docs.gitlab.com/api/notes/#list-all-merge-request-notes: newest first
        # when asked; system notes ("added 1 commit") and notes on diff lines (they
        # belong to their own discussions) are left out.
        listing = self._gl.http_list(
            f"{self._noteable(thread)}/notes",
            query_data={"per_page": 100, "sort": "desc", "order_by": "created_at"},
            iterator=True,
            obey_rate_limit=False,
            max_retries=0,
        )
        total = getattr(listing, "total", None)
        picked: list[ThreadComment] = []
        examined = 0
        for item in listing:
            if examined >= newest:
                break
            examined += 1
            note = _json(item)
            if note.get("system") or note.get("type") == "DiffNote":
                continue
            picked.append(self._comment(note))
        picked.reverse()
        unread = max(0, int(total) - examined) if total is not None else 0
        return CommentWindow(tuple(picked), len(picked) + unread)

    def _discussion(self, thread: ThreadRef) -> list[dict[str, Any]]:
        # https://docs.gitlab.com/api/discussions/ (one discussion, its notes oldest first)
        assert thread.thread_id is not None
        path = f"{self._noteable(thread)}/discussions/{quote(thread.thread_id, safe='')}"
        notes = self._get(path).get("notes") or []
        return [n for n in notes if isinstance(n, dict)]

    def _discussion_notes(self, thread: ThreadRef) -> CommentWindow:
        notes = [self._comment(n) for n in self._discussion(thread) if not n.get("system")]
        return CommentWindow(tuple(notes), len(notes))

    def _anchor(self, thread: ThreadRef) -> ReviewAnchor:
        notes = self._discussion(thread)
        position = next(
            (n["position"] for n in notes if isinstance(n.get("position"), Mapping)), None
        )
        if position is None:
            raise HostError(f"GitLab discussion {thread.thread_id} is not on a diff line")
        new_line, old_line = position.get("new_line"), position.get("old_line")
        side = "RIGHT" if new_line is not None else "LEFT"
        line = new_line if new_line is not None else old_line
        path = str(position.get("new_path") or position.get("old_path") or "")
        start = None
        span = position.get("line_range")
        if isinstance(span, Mapping) and isinstance(span.get("start"), Mapping):
            first = span["start"]
            start = first.get("new_line") if side == "RIGHT" else first.get("old_line")
        hunk = ""
        for diff in self._diffs(thread):
            if diff.get("new_path") == path or diff.get("old_path") == path:
                hunk = hunk_at(str(diff.get("diff") or ""), line, side)
                break
        return ReviewAnchor(
            path=path,
            line=int(line) if isinstance(line, int) else None,
            start_line=int(start) if isinstance(start, int) and start != line else None,
            side=side,
            hunk=hunk,
            # No hunk of the current diffs holds the line: the diff moved past it.
            outdated=not hunk,
        )
