"""The seam between the session runtime and workspaces: open a turn's workspace, record
its commands and its diff, remove it at close.

The service calls `open_for_turn` before a turn (None: the agent has no workspace, or
it could not be made; the reason is in the transcript and the workspace tools say so),
`record_diff` after it, and `close` when the session ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.agents.base import AgentSpec
from bot.config import Settings
from bot.hosts import Hosts
from bot.hosts.base import HostClient, HostError
from bot.sessions.changes import branch_name
from bot.sessions.ports import WorkspaceService
from bot.sessions.store import SessionInfo, SessionStore
from bot.workspaces.access import git_access
from bot.workspaces.sandbox import Limits, Policy
from bot.workspaces.sessions import Checkout, GitAccess, SessionWorkspaces
from bot.workspaces.store import MB, WorkspaceError, WorkspaceStore
from bot.workspaces.tools import Sandboxing, WorkspaceTools

log = logging.getLogger(__name__)

MAX_DIFF_EVENT_BYTES = 200_000
MAX_RESUMED = 100  # sessions of one line of work looked back through for a change set
# (host, repo, installation id) -> where git finds the repository, and the token for it
AccessFor = Callable[[str, str, int | None], Awaitable[GitAccess]]


def last_diff(store: SessionStore, session_id: str, depth: int = 0) -> tuple[str, str] | None:
    """The base and diff recorded after the session's last turn with a workspace (a turn
    undone by a restart passed over); before its first, those of the session it resumes,
    so a resumed line of work carries its pending change set."""
    diffs: list[tuple[Any, str, str]] = []
    undone: set[Any] = set()
    for event in store.transcript(session_id):
        if event.kind == "restarted":
            undone.add(event.data.get("turn"))
        elif event.kind == "worktree_diff" and "diff" in event.data:
            diffs.append((event.data.get("turn"), str(event.data["base"]), str(event.data["diff"])))
    kept = [(base, diff) for turn, base, diff in diffs if turn not in undone]
    if kept:
        return kept[-1]
    session = store.get(session_id)
    if session is not None and session.resumed_from is not None and depth < MAX_RESUMED:
        return last_diff(store, session.resumed_from, depth + 1)
    return None


SETUP_REFUSED = "workspace setup did not run: this workspace holds an outsider's code"
SETUP_FAILED = "workspace setup step `{argv}` failed (exit code {code}); the agent starts anyway"


class WorkspaceRuntime:
    """Workspaces for the sessions of this worker."""

    def __init__(
        self, spaces: SessionWorkspaces, access: AccessFor, *, branch_template: str
    ) -> None:
        self.spaces = spaces
        self.access = access
        self.branch_template = branch_template

    async def checkout(self, session: SessionInfo, host: HostClient) -> Checkout:
        thread = session.thread
        branch = branch_name(self.branch_template, thread, session.id, 0)
        if session.id not in branch:  # the worktree's branch is local, but one per session
            branch = f"{branch}-{session.id}"
        if thread.target == "issue":
            _, sha = await host.default_branch(thread.repo)
            return Checkout(thread.host, thread.repo, sha, branch)
        info = await host.pull_info(thread.conversation)
        # A fork's head is an outsider's code; so is one the host says nothing about. A
        # branch of the repository itself was pushed by someone with write access.
        trusted = info.from_fork is False
        return Checkout(
            thread.host, thread.repo, info.head_sha, branch, pull=thread.number, trusted=trusted
        )

    async def open_for_turn(
        self, service: WorkspaceService, session: SessionInfo, agent: AgentSpec
    ) -> WorkspaceTools | None:
        tools = await self._open(service, session, agent)
        if tools is not None and agent.workspace_setup:
            await self._setup(service, session, agent, tools)
        return tools

    async def _setup(
        self,
        service: WorkspaceService,
        session: SessionInfo,
        agent: AgentSpec,
        tools: WorkspaceTools,
    ) -> None:
        """The agent's `workspace.setup` steps, once per workspace (per machine: a worktree
        rebuilt elsewhere runs them again), with network; the first failure stops them."""
        marker = self.spaces.store.setup_marker(session.id)
        if await asyncio.to_thread(marker.exists):
            return
        for argv in agent.workspace_setup:
            try:
                done = await tools.run_setup(list(argv))
            except PermissionError as exc:
                done, error = None, str(exc)
            else:
                error = "" if done is not None else SETUP_REFUSED
            if done is not None and done.exit_code != 0:
                error = SETUP_FAILED.format(argv=" ".join(argv), code=done.exit_code)
            if error:
                await service.note(session, "workspace", {"turn": session.turns, "error": error})
                return  # not marked: the next turn tries again
        await asyncio.to_thread(marker.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(marker.touch)

    async def _open(
        self, service: WorkspaceService, session: SessionInfo, agent: AgentSpec
    ) -> WorkspaceTools | None:
        if agent.workspace == "none" or service.host_for is None:
            return None

        async def record(event: Mapping[str, Any]) -> None:
            await service.note(session, "command", {"turn": session.turns, **event})

        try:
            checkout = await self.checkout(session, service.host_for(session))
            thread = session.thread
            access = await self.access(thread.host, thread.repo, session.installation_id)
            if not await self.spaces.exists(session.id):
                last = await asyncio.to_thread(last_diff, service.store, session.id)
                if last is not None:
                    # Taken over from a worker whose worktree is gone: its base and diff.
                    base, diff = last
                    return await self.spaces.restore(
                        session.id,
                        agent.workspace,
                        replace(checkout, commit=base),
                        access,
                        diff,
                        record=record,
                        network=agent.workspace_network,
                        run_outsider_code=agent.workspace_outsider_code,
                    )
            return await self.spaces.open(
                session.id,
                agent.workspace,
                checkout,
                access,
                record=record,
                network=agent.workspace_network,
                run_outsider_code=agent.workspace_outsider_code,
            )
        except (WorkspaceError, HostError) as exc:
            log.warning("session %s: no workspace: %s", session.id, exc)
            await service.note(session, "workspace", {"turn": session.turns, "error": str(exc)})
            return None

    async def record_diff(self, service: WorkspaceService, session: SessionInfo) -> None:
        """The worktree's diff against its base, in the transcript after each turn."""
        try:
            found = await self.spaces.diff(session.id)
        except WorkspaceError as exc:
            await service.note(session, "workspace", {"turn": session.turns, "error": str(exc)})
            return
        if found is None:
            return
        base, diff = found
        data: dict[str, Any] = {"turn": session.turns, "base": base}
        if len(diff.encode()) > MAX_DIFF_EVENT_BYTES:
            data["error"] = f"the diff is over {MAX_DIFF_EVENT_BYTES} bytes"
        else:
            data["diff"] = diff
        await service.note(session, "worktree_diff", data)

    async def clean_orphans(self, store: SessionStore) -> list[str]:
        """At start: remove the worktrees of sessions that are no longer live."""
        trees = self.spaces.store.root / "trees"
        names = await asyncio.to_thread(lambda: sorted(p.name for p in trees.glob("*")))

        def live() -> set[str]:
            return {name for name in names if (s := store.get(name)) is not None and s.live}

        alive = await asyncio.to_thread(live)
        removed = await self.spaces.clean(lambda name: name in alive)
        if removed:
            log.info("removed %d orphaned worktrees: %s", len(removed), ", ".join(removed))
        return removed

    async def close(self, session_id: str) -> None:
        try:
            await self.spaces.close(session_id)
        except WorkspaceError as exc:
            log.warning("session %s: its worktree stays until the next start: %s", session_id, exc)


def from_settings(settings: Settings, hosts: Hosts, *, branch_template: str) -> WorkspaceRuntime:
    """The workspaces of this worker, as the settings describe them."""
    uid = settings.sandbox_uid
    store = WorkspaceStore(
        Path(settings.workspace_dir),
        quota_bytes=settings.workspace_quota_mb * MB,
        dir_quota_bytes=settings.workspace_dir_quota_mb * MB,
        owner=uid if os.geteuid() == 0 else None,
    )
    limits = Limits(disk_bytes=settings.workspace_quota_mb * MB)
    sandboxing = Sandboxing(kind=settings.sandbox, policy=Policy(uid=uid), limits=limits)

    async def access(host: str, repo: str, installation_id: int | None) -> GitAccess:
        return await git_access(settings, hosts, host, repo, installation_id)

    return WorkspaceRuntime(
        SessionWorkspaces(store, sandboxing), access, branch_template=branch_template
    )
