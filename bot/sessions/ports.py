"""What a turn's tools may ask of the session runtime.

`SessionTools` (tools.py) works through this protocol rather than `SessionService`
itself, so that the runtime (service.py; turns.py builds the tools) is imported by them
neither at run time nor for type checking. `WorkspaceService` does the same for the
workspace runtime (bot/workspaces/runtime.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bot import outbox as ob
from bot.agents.base import AgentSpec
from bot.db.calls import StoreCalls
from bot.hosts.base import HostClient
from bot.sessions.approvals import ApprovalStore
from bot.sessions.store import SessionInfo, SessionStore


class ToolService(Protocol):
    """The part of `SessionService` that `SessionTools` uses."""

    store: SessionStore
    approvals: ApprovalStore
    wake_runner: Callable[[], None]
    calls: StoreCalls  # its short store calls (bot.db.calls)

    async def note(self, session: SessionInfo, kind: str, data: dict[str, Any]) -> None: ...

    async def reply(self, session: SessionInfo, key: str, body: str) -> None: ...

    async def write(self, session: SessionInfo, write: ob.Write) -> int: ...

    async def write_in_turn(
        self,
        session: SessionInfo,
        owner: str,
        call: dict[str, Any],
        write: ob.Write | None,
        result: dict[str, Any],
    ) -> bool: ...

    async def publish_status(self, session: SessionInfo) -> None: ...

    def check_budget(self, session: SessionInfo, agent: AgentSpec) -> None:
        """Raise BudgetExceeded when the session is past its agent's turns or minutes."""
        ...


class WorkspaceService(Protocol):
    """The part of `SessionService` that the workspace runtime (bot/workspaces) uses."""

    store: SessionStore

    @property
    def host_for(self) -> Callable[[SessionInfo], HostClient] | None: ...

    async def note(self, session: SessionInfo, kind: str, data: dict[str, Any]) -> None: ...
