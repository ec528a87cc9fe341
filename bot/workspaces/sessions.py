"""A session's workspace: made on its first turn, kept between turns, removed at close.

The session runtime gives what it knows of the session (repository, pull/merge request
number, the commit to start at, whether that code comes from someone with write
access) and how to reach the host's git (`GitAccess`); this module turns it into a
worktree and the `WorkspaceTools` of a turn. Code from an outsider gets a read-only
workspace whose commands do not run, unless the server configuration allows them.

The worktree's base commit and branch are kept beside it (`bases/<session id>`), so a
later turn in another process of this machine finds the same worktree; a worker on
another machine rebuilds it from the mirror and the stored diff (`restore`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bot.workspaces.git import Credential
from bot.workspaces.store import WorkspaceError, WorkspaceStore, Worktree
from bot.workspaces.tools import READ_ONLY, READ_WRITE, Record, Sandboxing, WorkspaceTools


@dataclass(frozen=True)
class GitAccess:
    """Where the host serves the repository over HTTP, and the token that may go there."""

    clone_url: str
    credential: Credential | None


@dataclass(frozen=True)
class Checkout:
    """What a session's worktree starts from."""

    host: str
    repo: str
    commit: str  # the PR/MR head, or the default branch's head for an issue
    branch: str  # the session's own branch (from branchTemplate)
    pull: int | None = None  # fetched by the host's PR/MR ref (forks' commits included)
    trusted: bool = True  # False: the head was written by someone without write access


class SessionWorkspaces:
    """Every session's workspace on this worker."""

    def __init__(
        self, store: WorkspaceStore, sandboxing: Sandboxing, *, run_untrusted: bool = False
    ) -> None:
        self.store = store
        self.sandboxing = sandboxing
        self.run_untrusted = run_untrusted  # the server configuration's per-agent choice

    def _base_file(self, session_id: str) -> Path:
        return self.store.root / "bases" / f"{self.store.tree_path(session_id).name}.json"

    def _known(self, session_id: str) -> Worktree | None:
        path = self.store.tree_path(session_id)
        try:
            data = json.loads(self._base_file(session_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not (path / ".git").is_file():
            return None
        git_dir = Path(str(data["git_dir"]))
        return Worktree(session_id, path, str(data["base"]), str(data["branch"]), git_dir)

    async def open(
        self,
        session_id: str,
        mode: str,
        checkout: Checkout,
        access: GitAccess,
        *,
        record: Record | None = None,
        network: bool = False,
        run_outsider_code: bool = False,
    ) -> WorkspaceTools:
        """The session's workspace tools; the worktree is made on first use and kept.

        `network` lets commands use the network; `run_outsider_code` runs them on code
        from someone without write access too (both per agent, server configuration).
        """
        tree = await asyncio.to_thread(self._known, session_id)
        if tree is None:
            tree = await self._make(session_id, checkout, access)
        if not checkout.trusted:
            mode = READ_ONLY
        sandboxing = self.sandboxing
        if network:
            sandboxing = replace(sandboxing, policy=replace(sandboxing.policy, network=True))
        if not checkout.trusted and not (self.run_untrusted or run_outsider_code):
            sandboxing = replace(sandboxing, commands_allowed=False)
        return WorkspaceTools(self.store, tree, mode, sandboxing, record=record)

    async def _make(self, session_id: str, checkout: Checkout, access: GitAccess) -> Worktree:
        pulls = [checkout.pull] if checkout.pull is not None else []
        mirror = await self.store.fetch(
            checkout.host, checkout.repo, access.clone_url, access.credential, pulls=pulls
        )
        try:
            found = await self.store.resolve(mirror, checkout.commit)
        except WorkspaceError:
            raise WorkspaceError(
                f"commit {checkout.commit[:12]} is not in {checkout.repo} as fetched"
            ) from None
        tree = await self.store.add_worktree(session_id, mirror, found, checkout.branch)
        base = self._base_file(session_id)
        await asyncio.to_thread(base.parent.mkdir, parents=True, exist_ok=True)
        text = json.dumps(
            {
                "base": tree.base_sha,
                "branch": tree.branch,
                "git_dir": str(tree.git_dir),
                "repo": checkout.repo,
            }
        )
        await asyncio.to_thread(base.write_text, text, encoding="utf-8")
        return tree

    async def exists(self, session_id: str) -> bool:
        return await asyncio.to_thread(self._known, session_id) is not None

    async def diff(self, session_id: str) -> tuple[str, str] | None:
        """(base commit, the worktree's diff against it), or None without a worktree."""
        tree = await asyncio.to_thread(self._known, session_id)
        if tree is None:
            return None
        return tree.base_sha, await self.store.diff(tree)

    async def restore(
        self,
        session_id: str,
        mode: str,
        checkout: Checkout,
        access: GitAccess,
        diff: str,
        *,
        record: Record | None = None,
        network: bool = False,
        run_outsider_code: bool = False,
    ) -> WorkspaceTools:
        """Take-over: the worktree at `checkout.commit` with `diff` applied again."""
        tools = await self.open(session_id, READ_WRITE, checkout, access, record=record)
        if diff.strip():
            await self.store.apply(tools.tree, diff)
        return await self.open(
            session_id,
            mode,
            checkout,
            access,
            record=record,
            network=network,
            run_outsider_code=run_outsider_code,
        )

    async def close(self, session_id: str) -> None:
        await self.store.remove_worktree(session_id)
        await asyncio.to_thread(self._base_file(session_id).unlink, missing_ok=True)

    async def clean(self, live: Callable[[str], bool]) -> list[str]:
        """At start: remove the worktrees of sessions that are no longer live."""
        removed = await self.store.clean_orphans(live)
        for session_id in removed:
            await asyncio.to_thread(self._base_file(session_id).unlink, missing_ok=True)
        return removed
