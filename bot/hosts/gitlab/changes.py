"""GitLab client change sets: commit_files, actions, branches, open_pull."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from urllib.parse import quote

from gitlab.exceptions import GitlabHttpError

from bot.hosts.base import (
    EXECUTABLE,
    REGULAR,
    SYMLINK,
    Conflict,
    FileChange,
    HostError,
    NotFound,
    Opened,
    check_change_set,
)
from bot.hosts.gitlab.core import ClientCore
from bot.hosts.gitlab.errors import project_id
from bot.hosts.gitlab.shapes import _commit_id, _opened

log = logging.getLogger(__name__)


class ChangeSets(ClientCore):
    """Commits, branches and merge requests made from a change set."""

    async def commit_files(
        self,
        repo: str,
        *,
        branch: str,
        base_sha: str,
        changes: Sequence[FileChange],
        message: str,
        existing: bool = False,
    ) -> str:
        """One commit with an action per file, on a new branch started at `base_sha`
        (`existing`: on top of the branch, which must be at `base_sha`).

        https://docs.gitlab.com/api/commits/#create-a-commit-with-multiple-files-and-actions
        With `start_sha`, GitLab creates `branch` from that commit, and refuses (400) when
        the branch exists already. Each file's action is `create` or `update` by whether
        it exists at `base_sha` (GitLab refuses the other), `delete` for a removal.
        Contents go base64-encoded, so any bytes pass unchanged. Without a mode an update
        leaves an executable executable; a change's own mode becomes a `chmod` action
        (`execute_filemode`, which GitLab reads for that action only). The API has no way
        to write a symbolic link, so a change set holding one is refused.
        """
        check_change_set(branch, changes)
        links = [c.path for c in changes if c.mode == SYMLINK]
        if links:
            raise HostError(
                "GitLab's commits API cannot write symbolic links; the change set makes "
                + ", ".join(links)
                + " one: replace the link by a file, or commit it by hand"
            )
        if existing:
            await self._read("look at the branch", self._branch_at, repo, branch, base_sha)
        actions = await self._read(
            "look at the files to change", self._actions, repo, base_sha, changes
        )
        payload: dict[str, object] = {
            "branch": branch,
            "commit_message": message,
            "actions": actions,
        }
        if not existing:
            payload["start_sha"] = base_sha
        path = f"/projects/{project_id(repo)}/repository/commits"
        try:
            made = await self._write("create a commit", self._post, path, payload)
        except HostError as exc:
            if exc.status != 400 and not exc.ambiguous:
                raise
            found = await self._read(
                "look at the existing branch", self._built_alike, repo, branch, base_sha, changes
            )
            if found is None:
                raise
            return found
        sha = made.get("id")
        if not isinstance(sha, str) or not sha:
            raise HostError("GitLab created a commit but did not name it", ambiguous=True)
        return sha

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """https://docs.gitlab.com/api/merge_requests/#create-mr; GitLab refuses a second
        open merge request from the same source branch (409), so one is looked for first,
        and again after a refusal or an answer that was lost."""
        found = await self._read(
            "look for an open merge request", self._open_mr_for, repo, head, base
        )
        if found is not None:
            return found
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
        }
        path = f"/projects/{project_id(repo)}/merge_requests"
        try:
            made = await self._write("open a merge request", self._post, path, payload)
        except HostError as exc:
            if exc.status != 409 and not exc.ambiguous:
                raise
            found = await self._read(
                "look for an open merge request", self._open_mr_for, repo, head, base
            )
            if found is None:
                raise
            return found
        return _opened(made, ambiguous=True)

    async def create_issue(self, repo: str, *, title: str, body: str) -> Opened:
        """https://docs.gitlab.com/api/issues/#new-issue (POST /projects/:id/issues)."""
        path = f"/projects/{project_id(repo)}/issues"
        made = await self._write(
            "open an issue", self._post, path, {"title": title, "description": body}
        )
        return _opened(made, ambiguous=True)

    def _actions(
        self, repo: str, base_sha: str, changes: Sequence[FileChange]
    ) -> list[dict[str, object]]:
        """The commit's actions: create or update by whether the file is at `base_sha`,
        and a chmod after it when the change gives a mode."""
        # https://docs.gitlab.com/api/commits/#get-a-single-commit
        try:
            self._get(f"/projects/{project_id(repo)}/repository/commits/{quote(base_sha, safe='')}")
        except GitlabHttpError as exc:
            if exc.response_code == 404 and "project" not in str(exc.error_message).lower():
                raise NotFound(f"GitLab {repo} has no commit {base_sha} to build on") from exc
            raise
        actions: list[dict[str, object]] = []
        for change in changes:
            exists = self._file_exists(repo, change.path, base_sha)
            if change.content is None:
                if not exists:
                    raise HostError(
                        f"cannot delete {change.path}: {repo} has no such file at {base_sha[:12]}"
                    )
                actions.append({"action": "delete", "file_path": change.path})
                continue
            actions.append(
                {
                    "action": "update" if exists else "create",
                    "file_path": change.path,
                    "content": base64.b64encode(change.content).decode("ascii"),
                    "encoding": "base64",
                }
            )
            if change.mode == EXECUTABLE or (change.mode == REGULAR and exists):
                # https://docs.gitlab.com/api/commits/: `chmod` with `execute_filemode`
                actions.append(
                    {
                        "action": "chmod",
                        "file_path": change.path,
                        "execute_filemode": change.mode == EXECUTABLE,
                    }
                )
        return actions

    def _branch_at(self, repo: str, branch: str, sha: str) -> None:
        """Conflict unless `branch` points at `sha` (someone else pushed meanwhile)."""
        try:
            found = _commit_id(self._get(self._branch_path(repo, branch)), f"branch {branch}")
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                raise NotFound(f"GitLab {repo} has no branch {branch} to push to") from exc
            raise
        if found != sha:
            raise Conflict(
                f"branch {branch} of {repo} moved to {found[:12]} (expected {sha[:12]})",
                status=409,
            )

    def _file_exists(self, repo: str, path: str, ref: str) -> bool:
        # https://docs.gitlab.com/api/repository_files/#get-file-metadata-only (HEAD)
        try:
            self._gl.http_head(
                self._file_path(repo, path),
                query_data={"ref": ref},
                obey_rate_limit=False,
                max_retries=0,
            )
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return False
            raise
        return True

    def _file_at(self, repo: str, path: str, ref: str) -> bytes | None:
        try:
            return self._get_bytes(self._file_path(repo, path) + "/raw", {"ref": ref})
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return None
            raise

    def _built_alike(
        self, repo: str, branch: str, base_sha: str, changes: Sequence[FileChange]
    ) -> str | None:
        """The commit `branch` points at if it is this change on `base_sha` (an earlier
        try whose answer was lost); None when there is no such branch; Conflict when it
        holds anything else.

        Alike: its one parent is `base_sha`, its diff against it touches only the
        changed paths (https://docs.gitlab.com/api/commits/#get-the-diff-of-a-commit),
        and each changed path has the wanted content there (or is gone).
        """
        try:
            found = self._get(self._branch_path(repo, branch))
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return None
            raise
        sha = _commit_id(found, f"branch {branch} of {repo}")
        if sha == base_sha:
            return None  # nothing was written: the first answer stands
        commit = self._get(f"/projects/{project_id(repo)}/repository/commits/{sha}")
        alike = list(commit.get("parent_ids") or []) == [base_sha]
        if alike:
            diff = self._pages(f"/projects/{project_id(repo)}/repository/commits/{sha}/diff", {})
            touched = {str(d.get(key)) for d in diff for key in ("old_path", "new_path")}
            alike = touched <= {c.path for c in changes} and all(
                self._file_at(repo, c.path, sha) == c.content for c in changes
            )
        if not alike:
            raise Conflict(
                f"GitLab {repo} already has a branch {branch} (at {sha[:12]}) "
                "that is not this change on this base",
                status=400,
            )
        return sha

    def _open_mr_for(self, repo: str, head: str, base: str) -> Opened | None:
        # https://docs.gitlab.com/api/merge_requests/#list-project-merge-requests
        query = {"source_branch": head, "target_branch": base, "state": "opened"}
        for mr in self._pages(f"/projects/{project_id(repo)}/merge_requests", query):
            if (mr.get("source_branch"), mr.get("target_branch")) == (head, base):
                return _opened(mr, ambiguous=False)
        return None
