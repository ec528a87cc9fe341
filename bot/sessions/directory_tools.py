"""The session directory's tools (`sessions_list`, `sessions_history`, `sessions_search`,
`sessions_send`): what one session's agent may see of the others and say to them, within
its agent's `access`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.agents.base import AgentSpec, ToolResult, tool_json
from bot.sessions.ports import ToolService
from bot.sessions.search import SessionDirectory
from bot.sessions.store import SessionInfo

SEND_POLL_SECONDS = 0.2


class DirectoryTools:
    """The directory tools of one session's turn (`SessionTools` routes the calls here)."""

    def __init__(
        self,
        service: ToolService,
        session: SessionInfo,
        agent: AgentSpec,
        directory: SessionDirectory | None,
    ) -> None:
        self.service = service
        self.session = session
        self.agent = agent
        self._directory = directory

    def _dir(self) -> SessionDirectory:
        if self._directory is None:
            raise ValueError("the session directory is not available in this process")
        return self._directory

    async def list(self, args: Mapping[str, Any], key: str) -> ToolResult:
        found = await asyncio.to_thread(
            self._dir().list,
            self.agent.id,
            self.agent.access,
            filter=str(args["filter"]) if args.get("filter") else None,
            limit=int(args.get("limit") or 20),
        )
        return ToolResult(True, tool_json(found))

    async def history(self, args: Mapping[str, Any], key: str) -> ToolResult:
        target = str(args.get("key") or "").strip()
        if not target:
            return ToolResult(False, "sessions_history needs a key (or a session id)")
        found = await asyncio.to_thread(
            self._dir().history,
            self.agent.id,
            self.agent.access,
            target,
            limit=int(args.get("limit") or 20),
            offset=int(args.get("offset") or 0),
        )
        return ToolResult(True, tool_json(found))

    async def search(self, args: Mapping[str, Any], key: str) -> ToolResult:
        query = str(args.get("query") or "").strip()
        if not query:
            return ToolResult(False, "sessions_search needs a query")
        exclude = self.session.id if args.get("exclude_current", True) else None
        found = await asyncio.to_thread(
            self._dir().search,
            self.agent.id,
            self.agent.access,
            query,
            limit=int(args.get("limit") or 5),
            exclude_session=exclude,
        )
        return ToolResult(True, tool_json(found))

    async def send(self, args: Mapping[str, Any], key: str) -> ToolResult:
        target = str(args.get("key") or "").strip()
        message = str(args.get("message") or "").strip()
        if not target or not message:
            return ToolResult(False, "sessions_send needs a key and a message")
        session_id = await asyncio.to_thread(
            self._dir().resolve_live, self.agent.id, self.agent.access, target
        )
        if session_id is None:
            return ToolResult(False, f"session {target!r} is not live: nothing was sent")
        if session_id == self.session.id:
            return ToolResult(False, "a session cannot send to itself")
        store = self.service.store
        input_id = await self.service.calls(
            store.add_input, session_id, kind="message", author=self.session.id, body=message
        )
        if input_id is None:
            return ToolResult(False, f"session {session_id} ended before the message arrived")
        self.service.wake_runner()
        if not args.get("wait_for_reply"):
            return ToolResult(True, f"sent to {session_id}")
        wait = float(args.get("timeout_seconds") or 60.0)
        try:
            async with asyncio.timeout(wait):
                reply = await self._await_reply(session_id, input_id)
        except TimeoutError:
            return ToolResult(False, f"sent to {session_id}; no reply within {wait:g} s")
        return ToolResult(True, reply)

    async def _await_reply(self, session_id: str, input_id: int) -> str:
        """What the target said in the turn that took the message: its messages and replies."""
        store = self.service.store
        while True:
            answer = await self.service.calls(store.answer_to, session_id, input_id)
            if answer is not None:
                return answer
            await asyncio.sleep(SEND_POLL_SECONDS)
