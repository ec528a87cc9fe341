"""Threadline's MCP server, driven by the MCP SDK's own client: over streamable HTTP at
/mcp on a real loopback port (the same tokens as /api/v1), and over stdio by spawning
`threadline mcp`. The tools run the API's operations, so scopes, repository limits,
idempotency and the audit trail hold the same way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from bot.api.tokens import TokenStore
from bot.config import Settings
from bot.hosts.local_seed import DEMO_PULL, DEMO_REPO
from tests.conftest import Running
from tests.test_api import BOOTSTRAP, OTHER, THREAD
from tests.test_api import api as api  # the fixture: the app with a bootstrap token

EXPECTED_TOOLS = {
    "pm_session",
    "sessions_create",
    "sessions_prompt",
    "sessions_status",
    "sessions_close",
    "sessions_cancel",
    "tasks_delegate",
    "agents_discover",
    "bridge_health",
    "sessions_list",
    "sessions_history",
    "sessions_search",
}


@asynccontextmanager
async def http_client(app: Running, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(app.url + "/mcp", http_client=http)) as client:
            yield client


def answer(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return dict(result.structured_content)


def refusal(result: Any) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    return dict(result.structured_content["error"])


async def test_http_lists_tools_and_runs_launch_send_status_close(api: Any) -> None:
    token, _ = api.tokens.create("orchestrator", "operator")
    async with http_client(api.app, token) as client:
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == EXPECTED_TOOLS
        launch = {
            "action": "launch_task",
            "task": "restate this",
            "thread": THREAD,
            "clientRequestId": "plan-42",
        }
        first = answer(await client.call_tool("pm_session", launch))
        assert first["created"] is True
        assert first["startedBy"] == "operator:orchestrator"
        sid = first["sessionId"]
        again = answer(await client.call_tool("pm_session", launch))
        assert (again["sessionId"], again["created"]) == (sid, False)
        other = refusal(await client.call_tool("pm_session", {**launch, "task": "other"}))
        assert other["code"] == "idempotency_conflict"
        sent = answer(
            await client.call_tool(
                "pm_session",
                {"action": "send", "sessionId": sid, "message": "what now?", "wait": 20},
            )
        )
        assert sent["finished"] is True
        assert "what now?" in sent["text"]
        status = answer(
            await client.call_tool("pm_session", {"action": "status", "sessionId": sid})
        )
        assert status["state"] == "idle"
        closed = answer(await client.call_tool("pm_session", {"action": "close", "sessionId": sid}))
        assert closed["closed"] is True
        assert closed["session"]["state"] == "closed"
    actions = [(a.token, a.action, a.target) for a in api.tokens.audit_lines()]
    assert actions == [
        ("orchestrator", "close", sid),
        ("orchestrator", "prompt", sid),
        ("orchestrator", "launch", sid),
    ]
