"""GitHub client writes: comments, reactions, reviews, resolving threads, commit state."""

from __future__ import annotations

import logging
from typing import Any

from bot.events import ThreadRef
from bot.hosts.base import (
    CommitState,
    DiffComment,
    HostError,
    NotFound,
    Opened,
    Posted,
    check_comment_paths,
)
from bot.hosts.github.core import ClientCore
from bot.hosts.github.credentials import _iso
from bot.hosts.github.shapes import (
    _pair_review_comments,
    _posted,
    _review_comment,
    _review_thread_root,
    _split,
    _thread_vars,
)
from bot.hosts.github.transport import (
    _CHECK_RUN,
    _COMMIT_STATUS,
    CHECK_SUMMARY_LIMIT,
    PER_PAGE,
    REACTION_CONTENTS,
    RESOLVE_THREAD_MUTATION,
    REVIEW_THREADS_QUERY,
    STATUS_DESCRIPTION_LIMIT,
)

log = logging.getLogger(__name__)


class Writes(ClientCore):
    """Writes on threads and commits."""

    async def post_comment(self, thread: ThreadRef, body: str) -> Posted:
        if thread.thread_id is None:
            # https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
            url = "/repos/{owner}/{repo}/issues/{number}/comments"
            answer = await self._write("POST", url, _thread_vars(thread), {"body": body})
            return _posted(answer, None)
        # https://docs.github.com/en/rest/pulls/comments#create-a-reply-for-a-review-comment
        root = _review_thread_root(thread)
        url = "/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies"
        url_vars = {**_thread_vars(thread), "comment_id": root}
        answer = await self._write("POST", url, url_vars, {"body": body})
        return _posted(answer, thread.thread_id)

    async def edit_comment(self, thread: ThreadRef, comment_id: str, body: str) -> None:
        # https://docs.github.com/en/rest/issues/comments#update-an-issue-comment
        # https://docs.github.com/en/rest/pulls/comments#update-a-review-comment-for-a-pull-request
        url = (
            "/repos/{owner}/{repo}/issues/comments/{comment_id}"
            if thread.thread_id is None
            else "/repos/{owner}/{repo}/pulls/comments/{comment_id}"
        )
        await self._write(
            "PATCH", url, {**_split(thread.repo), "comment_id": comment_id}, {"body": body}
        )

    async def add_reaction(self, thread: ThreadRef, comment_id: str, reaction: str) -> None:
        # https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-an-issue-comment
        # https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-a-pull-request-review-comment
        # GitHub answers 200 instead of 201 when the reaction is already there.
        if reaction not in REACTION_CONTENTS:
            raise HostError(f"GitHub has no reaction {reaction!r}")
        url = (
            "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
            if thread.thread_id is None
            else "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"
        )
        url_vars = {**_split(thread.repo), "comment_id": comment_id}
        await self._write("POST", url, url_vars, {"content": reaction})

    # -------------------------------------------------------------- reviews

    async def create_review(
        self, pull: ThreadRef, commit_sha: str, comments: list[DiffComment], body: str = ""
    ) -> list[Posted]:
        """One review (event COMMENT) holding every comment; one Posted per comment.

        https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request
        The review's answer does not carry its comments, so they are listed afterwards
        (https://docs.github.com/en/rest/pulls/reviews#list-comments-for-a-pull-request-review).
        """
        check_comment_paths(comments)
        if not comments and not body.strip():
            return []  # GitHub refuses an empty review, and there is nothing to open
        url_vars = _thread_vars(pull)
        review = await self._write(
            "POST",
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            url_vars,
            {
                "commit_id": commit_sha,
                "body": body,
                "event": "COMMENT",
                "comments": [_review_comment(c) for c in comments],
            },
        )
        if not isinstance(review, dict) or "id" not in review:
            raise HostError("GitHub created a review but did not name it", ambiguous=True)
        if not comments:
            return []
        try:
            listed = await self._list(
                "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments",
                {**url_vars, "review_id": review["id"]},
            )
        except HostError as exc:
            # The review exists: a retry must look for it rather than post it again.
            raise HostError(
                f"review {review['id']} was created, but listing its comments failed: {exc}",
                status=exc.status,
                retryable=True,
                ambiguous=True,
                retry_after=exc.retry_after,
            ) from exc
        return _pair_review_comments(comments, listed)

    async def resolve_thread(self, thread: ThreadRef) -> None:
        """Resolve through GraphQL (REST has no such call); already resolved is fine."""
        root = _review_thread_root(thread)
        node = await self._thread_node(thread, root)
        if node is None:
            raise NotFound(
                f"GitHub has no review thread starting at comment {root} in {thread.key}"
            )
        if node.get("isResolved"):
            return
        await self._graphql(RESOLVE_THREAD_MUTATION, {"threadId": node["id"]}, write=True)

    async def _thread_node(self, thread: ThreadRef, root: int) -> dict[str, Any] | None:
        names = _split(thread.repo)
        variables: dict[str, Any] = {
            "owner": names["owner"],
            "name": names["repo"],
            "number": thread.number,
            "cursor": None,
        }
        while True:
            data = await self._graphql(REVIEW_THREADS_QUERY, variables, write=False)
            threads = ((data.get("repository") or {}).get("pullRequest") or {}).get("reviewThreads")
            if not threads:
                raise NotFound(f"GitHub has no pull request {thread.repo}#{thread.number}")
            for node in threads.get("nodes") or []:
                first = (node.get("comments") or {}).get("nodes") or []
                if first and first[0].get("databaseId") == root:
                    return dict(node)
            page = threads.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return None
            variables["cursor"] = page.get("endCursor")

    async def create_issue(self, repo: str, *, title: str, body: str) -> Opened:
        # https://docs.github.com/en/rest/issues/issues#create-an-issue
        answer = await self._write(
            "POST", "/repos/{owner}/{repo}/issues", _split(repo), {"title": title, "body": body}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("number"), int):
            raise HostError("GitHub created an issue but did not number it", ambiguous=True)
        return Opened(number=answer["number"], url=answer.get("html_url"))

    # -------------------------------------------------------------- pull requests

    async def set_commit_state(self, repo: str, state: CommitState) -> None:
        if self._app is None:
            await self._commit_status(repo, state)
        else:
            await self._check_run(repo, state, self._app.app_id)

    async def _check_run(self, repo: str, state: CommitState, app_id: int) -> None:
        # https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
        names = _split(repo)
        listed = await self._get(
            "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,app_id,per_page}",
            {
                **names,
                "ref": state.sha,
                "check_name": state.name,
                "app_id": app_id,
                "per_page": PER_PAGE,
            },
        )
        runs = listed.get("check_runs", []) if isinstance(listed, dict) else []
        existing = next((r for r in runs if r.get("name") == state.name), None)
        status, conclusion, title = _CHECK_RUN[state.state]
        payload: dict[str, Any] = {"status": status}
        if conclusion is not None:
            payload["conclusion"] = conclusion
            payload["completed_at"] = _iso(self._transport.clock())
        if state.url:
            payload["details_url"] = state.url
        payload["output"] = {
            "title": title,
            "summary": (state.summary or title)[:CHECK_SUMMARY_LIMIT],
        }
        if existing is not None:
            # https://docs.github.com/en/rest/checks/runs#update-a-check-run
            url = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
            await self._write("PATCH", url, {**names, "check_run_id": existing["id"]}, payload)
            return
        # https://docs.github.com/en/rest/checks/runs#create-a-check-run
        payload = {"name": state.name, "head_sha": state.sha, **payload}
        await self._write("POST", "/repos/{owner}/{repo}/check-runs", names, payload)

    async def _commit_status(self, repo: str, state: CommitState) -> None:
        # https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        payload: dict[str, Any] = {
            "state": _COMMIT_STATUS[state.state],
            "context": state.name,
            "description": state.summary[:STATUS_DESCRIPTION_LIMIT],
        }
        if state.url:
            payload["target_url"] = state.url
        url = "/repos/{owner}/{repo}/statuses/{sha}"
        await self._write("POST", url, {**_split(repo), "sha": state.sha}, payload)

    # -------------------------------------------------------------- identity
