"""GitLab client reads: merge requests, files, diffs, permissions, comments found by marker, whoami."""

from __future__ import annotations

import logging

from bot.events import ThreadRef
from bot.hosts.base import (
    ChangedFile,
    Identity,
    Permission,
    Posted,
    PullInfo,
)
from bot.hosts.gitlab.core import ClientCore
from bot.hosts.gitlab.diffs import changed_file, unified_diff
from bot.hosts.gitlab.errors import MR_STATES
from bot.hosts.gitlab.shapes import _diff_refs, _from_fork, _require_pull

log = logging.getLogger(__name__)


class Reads(ClientCore):
    """Reads of merge requests, projects and comments."""

    async def find_comment(self, thread: ThreadRef, marker: str) -> Posted | None:
        if thread.thread_id is None:
            return await self._read("look for a comment", self._find_note, thread, marker)
        return await self._read(
            "look for a comment", self._find_in_discussion, thread, thread.thread_id, marker
        )

    async def pull_info(self, pull: ThreadRef) -> PullInfo:
        _require_pull(pull, "read a merge request")
        mr = await self._read("read the merge request", self._merge_request, pull)
        refs = _diff_refs(mr)
        return PullInfo(
            head_sha=refs["head_sha"],
            base_sha=refs["base_sha"],
            start_sha=refs["start_sha"],
            title=str(mr.get("title") or ""),
            state=MR_STATES.get(str(mr.get("state")), str(mr.get("state"))),
            from_fork=_from_fork(mr),
        )

    async def changed_files(self, pull: ThreadRef) -> list[ChangedFile]:
        _require_pull(pull, "list changed files")
        files = await self._read("read the merge request's diffs", self._diffs, pull)
        return [changed_file(f) for f in files]

    async def pull_diff(self, pull: ThreadRef) -> str:
        _require_pull(pull, "read a diff")
        files = await self._read("read the merge request's diffs", self._diffs, pull)
        return unified_diff(files)

    async def read_file(self, repo: str, path: str, ref: str | None = None) -> bytes:
        # https://docs.gitlab.com/api/repository_files/ (raw file; no ref: the default branch)
        url = f"{self._file_path(repo, path)}/raw"
        params = {} if ref is None else {"ref": ref}
        return await self._read("read a file", self._get_bytes, url, params)

    async def permission(self, repo: str, login: str) -> Permission:
        return await self._read("look up a permission", self._permission, repo, login)

    async def whoami(self) -> Identity:
        return await self._read("say who the token belongs to", self._identity)

    # ------------------------------------------------------------ branches and changes

    async def default_branch(self, repo: str) -> tuple[str, str]:
        return await self._read("read the default branch", self._default_branch, repo)
