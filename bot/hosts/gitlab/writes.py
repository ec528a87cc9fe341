"""GitLab client writes: comments, reactions, reviews, resolving threads, commit state."""

from __future__ import annotations

import logging
from urllib.parse import quote

from bot.events import ThreadRef
from bot.hosts.base import (
    CommitState,
    DiffComment,
    HostError,
    Posted,
    Unsupported,
    check_comment_paths,
)
from bot.hosts.gitlab.core import ClientCore
from bot.hosts.gitlab.diffs import position_for
from bot.hosts.gitlab.errors import COMMIT_STATES, REACTION_NAMES, project_id
from bot.hosts.gitlab.shapes import _diff_refs, _file_of, _require_pull

log = logging.getLogger(__name__)


class Writes(ClientCore):
    """Writes on threads and commits."""

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        note = await self._write(
            "post a comment", self._post, self._notes_path(thread), {"body": body}
        )
        return self._posted(thread, note, thread.thread_id)

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        path = f"{self._notes_path(thread)}/{quote(comment_id, safe='')}"
        await self._write("edit a comment", self._put, path, {"body": body})

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        # https://docs.gitlab.com/api/emoji_reactions/ ("award emoji"), on a comment
        path = f"{self._noteable(thread)}/notes/{quote(comment_id, safe='')}/award_emoji"
        name = REACTION_NAMES.get(reaction, reaction)
        await self._write("add a reaction", self._award, path, name)

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """One discussion per comment, then `body` (if any) as a note on the merge request.

        If a later write fails after earlier ones succeeded, the error is `ambiguous`, so
        the caller looks for the first comment's marker before trying the review again.
        """
        _require_pull(pull, "create a review")
        check_comment_paths(comments)
        mr = await self._read("read the merge request", self._merge_request, pull)
        refs = _diff_refs(mr)
        if commit_sha != refs["head_sha"]:
            raise HostError(
                f"the review is for {commit_sha[:12]} but the merge request's head is now "
                f"{refs['head_sha'][:12]}; its line numbers may no longer fit"
            )
        files = (
            await self._read("read the merge request's diffs", self._diffs, pull)
            if comments
            else []
        )
        payloads = [
            {"body": c.body, "position": position_for(c, _file_of(files, c.path), refs)}
            for c in comments
        ]
        posted: list[Posted] = []
        path = f"{self._noteable(pull)}/discussions"
        try:
            for payload in payloads:
                discussion = await self._write("open a review thread", self._post, path, payload)
                posted.append(self._posted(pull, discussion["notes"][0], str(discussion["id"])))
            if body:
                await self._write(
                    "post the review summary", self._post, self._notes_path(pull), {"body": body}
                )
        except HostError as exc:
            exc.ambiguous = exc.ambiguous or bool(posted)
            raise
        return posted

    async def resolve_thread(self, thread: ThreadRef) -> None:
        # https://docs.gitlab.com/api/discussions/#resolve-a-merge-request-thread; issue
        # threads cannot be resolved.
        if thread.target != "pull":
            raise Unsupported("GitLab resolves threads on merge requests only, not on issues")
        if thread.thread_id is None:
            raise HostError("resolve_thread needs a discussion, not the whole conversation")
        path = f"{self._noteable(thread)}/discussions/{quote(thread.thread_id, safe='')}"
        await self._write("resolve a thread", self._put, path, None, {"resolved": "true"})

    async def set_commit_state(self, repo: str, state: CommitState) -> None:
        # https://docs.gitlab.com/api/commits/ (commit status)
        target = COMMIT_STATES[state.state]
        payload = {"state": target, "name": state.name}
        if state.summary:
            payload["description"] = state.summary
        if state.url:
            payload["target_url"] = state.url
        path = f"/projects/{project_id(repo)}/statuses/{quote(state.sha, safe='')}"
        await self._write("set a commit status", self._post_status, path, payload, target)
