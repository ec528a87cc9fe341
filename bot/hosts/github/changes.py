"""GitHub client change sets: commit_files, trees and modes, branches, open_pull."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

from bot.hosts.base import (
    EXECUTABLE,
    REGULAR,
    Conflict,
    FileChange,
    HostError,
    NotFound,
    Opened,
    check_change_set,
)
from bot.hosts.github.core import ClientCore
from bot.hosts.github.shapes import _opened, _quote_path, _sha_of, _split
from bot.hosts.github.transport import PER_PAGE

log = logging.getLogger(__name__)


class ChangeSets(ClientCore):
    """Commits, branches and pull requests made from a change set."""

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
        """A new branch at a new commit, through the Git Data API, without a clone
        (`existing`: a new commit on top of the branch, which must be at `base_sha`).

        https://docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-your-git-database
        Reads first (the base commit, then the tree levels the changed paths pass
        through), so an unknown base or a change that does not fit fails before
        anything is written; then a blob per new content, a tree on the base's tree, a
        commit whose one parent is the base, and last the branch's ref. Blobs, trees
        and commits are invisible until a ref names them, and trees are named by their
        content, so calling again after any failure repeats no visible write.
        """
        check_change_set(branch, changes)
        names = _split(repo)
        if existing:
            await self._branch_at(repo, branch, base_sha)
        base_tree = await self._commit_tree(repo, base_sha)
        modes = await self._modes(repo, base_tree, [c.path for c in changes])
        entries: list[dict[str, Any]] = []
        for change in changes:
            mode = modes.get(change.path)
            if change.content is None:
                if mode is None:
                    raise HostError(
                        f"cannot delete {change.path}: {repo} has no such file at {base_sha[:12]}"
                    )
                entries.append({"path": change.path, "mode": mode, "type": "blob", "sha": None})
                continue
            # https://docs.github.com/en/rest/git/blobs#create-a-blob
            blob = await self._write(
                "POST",
                "/repos/{owner}/{repo}/git/blobs",
                names,
                {"content": base64.b64encode(change.content).decode("ascii"), "encoding": "base64"},
            )
            # The change's own mode (a symlink's blob is its target); without one, an
            # executable stays executable and anything else written is a plain file.
            kept = change.mode or (EXECUTABLE if mode == EXECUTABLE else REGULAR)
            entries.append(
                {"path": change.path, "mode": kept, "type": "blob", "sha": _sha_of(blob, "blob")}
            )
        # https://docs.github.com/en/rest/git/trees#create-a-tree: entries replace (or, with
        # sha null, remove) those of base_tree at their paths; the rest is kept.
        tree = await self._write(
            "POST",
            "/repos/{owner}/{repo}/git/trees",
            names,
            {"base_tree": base_tree, "tree": entries},
        )
        tree_sha = _sha_of(tree, "tree")
        # https://docs.github.com/en/rest/git/commits#create-a-commit
        commit = await self._write(
            "POST",
            "/repos/{owner}/{repo}/git/commits",
            names,
            {"message": message, "tree": tree_sha, "parents": [base_sha]},
        )
        if existing:
            return await self._move_branch(
                repo, branch, _sha_of(commit, "commit"), base_sha, tree_sha
            )
        return await self._create_branch(
            repo, branch, _sha_of(commit, "commit"), base_sha, tree_sha
        )

    async def _branch_at(self, repo: str, branch: str, sha: str) -> None:
        """Conflict unless `branch` points at `sha` (someone else pushed meanwhile)."""
        found = await self._branch_sha(repo, branch)
        if found is None:
            raise NotFound(f"GitHub {repo} has no branch {branch} to push to")
        if found != sha:
            raise Conflict(
                f"branch {branch} of {repo} moved to {found[:12]} (expected {sha[:12]})",
                status=409,
            )

    async def _move_branch(
        self, repo: str, branch: str, commit_sha: str, base_sha: str, tree_sha: str
    ) -> str:
        """Fast-forward refs/heads/`branch` from `base_sha` to `commit_sha`.

        https://docs.github.com/en/rest/git/refs#update-a-reference (without `force`,
        GitHub refuses anything but a fast-forward with 422). After a refusal or a lost
        answer, a branch already at a commit built alike counts as done.
        """
        try:
            await self._write(
                "PATCH",
                "/repos/{owner}/{repo}/git/refs/{+ref}",
                {**_split(repo), "ref": "heads/" + _quote_path(branch)},
                {"sha": commit_sha, "force": False},
            )
            return commit_sha
        except HostError as exc:
            if exc.status != 422 and not exc.ambiguous:
                raise
            failure = exc
        found = await self._branch_sha(repo, branch)
        if found == commit_sha:
            return commit_sha
        if found is not None:
            url = "/repos/{owner}/{repo}/git/commits/{commit_sha}"
            data = await self._get(url, {**_split(repo), "commit_sha": found})
            parents = [p.get("sha") for p in data.get("parents") or [] if isinstance(p, dict)]
            if parents == [base_sha] and (data.get("tree") or {}).get("sha") == tree_sha:
                return found
        raise Conflict(
            f"branch {branch} of {repo} moved while this change was pushed", status=422
        ) from failure

    async def _commit_tree(self, repo: str, sha: str) -> str:
        # https://docs.github.com/en/rest/git/commits#get-a-commit-object
        url = "/repos/{owner}/{repo}/git/commits/{commit_sha}"
        try:
            data = await self._get(url, {**_split(repo), "commit_sha": sha})
        except HostError as exc:
            if isinstance(exc, NotFound) or exc.status == 422:  # 422: not a commit id at all
                raise NotFound(f"GitHub {repo} has no commit {sha} to build on") from exc
            raise
        try:
            return str(data["tree"]["sha"])
        except (KeyError, TypeError) as exc:
            raise HostError(f"GitHub answered commit {sha} of {repo} without its tree") from exc

    async def _modes(self, repo: str, root: str, paths: list[str]) -> dict[str, str]:
        """The git mode of each of `paths` that is a file in tree `root` (absent: no file).

        https://docs.github.com/en/rest/git/trees#get-a-tree lists one level per call, so
        only the directories on the way to a changed path are read. A path that is a
        directory or a submodule there, or runs through a file, is refused.
        """
        levels: dict[str, dict[str, dict[str, Any]] | None] = {}

        async def level(directory: str) -> dict[str, dict[str, Any]] | None:
            if directory in levels:
                return levels[directory]
            sha: str | None = root
            if directory:
                parent, _, name = directory.rpartition("/")
                upper = await level(parent)
                entry = None if upper is None else upper.get(name)
                if entry is not None and entry.get("type") != "tree":
                    raise HostError(f"{directory} is a file in {repo}, not a directory")
                sha = None if entry is None else str(entry["sha"])
            found = None
            if sha is not None:
                url = "/repos/{owner}/{repo}/git/trees/{tree_sha}"
                data = await self._get(url, {**_split(repo), "tree_sha": sha})
                listed = data.get("tree") if isinstance(data, dict) else None
                found = {
                    str(e["path"]): e
                    for e in listed or []
                    if isinstance(e, dict) and "path" in e and "sha" in e
                }
            levels[directory] = found
            return found

        modes: dict[str, str] = {}
        for path in paths:
            directory, _, name = path.rpartition("/")
            entries = await level(directory)
            entry = None if entries is None else entries.get(name)
            if entry is None:
                continue
            if entry.get("type") != "blob":
                raise HostError(f"{path} is a {entry.get('type')} in {repo}, not a file")
            modes[path] = str(entry.get("mode") or "100644")
        return modes

    async def _create_branch(
        self, repo: str, branch: str, commit_sha: str, base_sha: str, tree_sha: str
    ) -> str:
        """Point the new ref refs/heads/`branch` at `commit_sha`; the commit it names.

        https://docs.github.com/en/rest/git/refs#create-a-reference answers 422 when the
        ref exists. An existing branch at a commit built alike (parent `base_sha`, tree
        `tree_sha`: an earlier call whose answer was lost) counts as done.
        """
        try:
            await self._write(
                "POST",
                "/repos/{owner}/{repo}/git/refs",
                _split(repo),
                {"ref": "refs/heads/" + branch, "sha": commit_sha},
            )
            return commit_sha
        except HostError as exc:
            if exc.status != 422 and not exc.ambiguous:
                raise
            failure = exc
        existing = await self._branch_sha(repo, branch)
        if existing is None:
            raise failure
        if existing == commit_sha:
            return commit_sha
        url = "/repos/{owner}/{repo}/git/commits/{commit_sha}"
        data = await self._get(url, {**_split(repo), "commit_sha": existing})
        parents = [p.get("sha") for p in data.get("parents") or [] if isinstance(p, dict)]
        if parents == [base_sha] and (data.get("tree") or {}).get("sha") == tree_sha:
            return existing
        raise Conflict(
            f"GitHub {repo} already has a branch {branch} (at {existing[:12]}) "
            "that is not this change on this base",
            status=422,
        ) from failure

    async def open_pull(self, repo: str, *, head: str, base: str, title: str, body: str) -> Opened:
        """https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request; GitHub refuses a
        second open pull request for the same branches with 422, so one is looked for first,
        and again after a refusal or an answer that was lost."""
        found = await self._open_pull_for(repo, head, base)
        if found is not None:
            return found
        payload = {"title": title, "head": head, "base": base, "body": body}
        try:
            made = await self._write("POST", "/repos/{owner}/{repo}/pulls", _split(repo), payload)
        except HostError as exc:
            if exc.status != 422 and not exc.ambiguous:
                raise
            found = await self._open_pull_for(repo, head, base)
            if found is None:
                raise
            return found
        return _opened(made)

    async def _open_pull_for(self, repo: str, head: str, base: str) -> Opened | None:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests: `head` as owner:branch
        names = _split(repo)
        url = "/repos/{owner}/{repo}/pulls{?head,base,state,per_page}"
        listed = await self._get(
            url,
            {
                **names,
                "head": f"{names['owner']}:{head}",
                "base": base,
                "state": "open",
                "per_page": PER_PAGE,
            },
        )
        for pull in listed if isinstance(listed, list) else []:
            if not isinstance(pull, dict):
                continue
            refs = ((pull.get("head") or {}).get("ref"), (pull.get("base") or {}).get("ref"))
            if refs == (head, base):
                return _opened(pull)
        return None

    # -------------------------------------------------------------- commit state
