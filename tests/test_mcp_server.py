"""Threadline's MCP server, driven by the MCP SDK's own client: over streamable HTTP at
/mcp on a real loopback port (the same tokens as /api/v1), and over stdio by spawning
`threadline mcp`. The tools run the API's operations, so scopes, repository limits,
idempotency and the audit trail hold the same way."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bot.api.tokens import TokenStore
from bot.db import make_engine
from tests.conftest import Running, seed_schema
from tests.test_api import BOOTSTRAP, THREAD
from tests.test_api import api as api  # the fixture: the app with a bootstrap token
from tests.test_api import gh as gh  # the fixture api needs: a second host

EXPECTED_TOOLS = {
    "pm_session",
    "sessions_create",
    "sessions_prompt",
    "sessions_status",
    "sessions_close",
    "sessions_cancel",
    "sessions_approve",
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
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(app.url + "/mcp", http_client=http)) as client,
    ):
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


def stdio_params(database_url: str, workdir: Path, token: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "bot.cli", "mcp"],
        env={
            "THREADLINE_DATABASE_URL": database_url,
            "THREADLINE_MCP_TOKEN": token,
            "THREADLINE_WORKER_POLL_SECONDS": "0.05",
            "THREADLINE_WORKER_LEASE_SECONDS": "5",
        },
        cwd=str(workdir),
    )


@pytest.mark.slow
async def test_stdio_spawns_threadline_mcp_and_runs_launch_send_status_close(
    database_url: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(seed_schema, database_url)
    engine = make_engine(database_url)
    try:
        tokens = TokenStore(engine)
        token, _ = tokens.create("desktop", "operator")
        async with Client(stdio_params(database_url, tmp_path, token)) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == EXPECTED_TOOLS
            launched = answer(
                await client.call_tool(
                    "sessions_create", {"task": "say hello", "clientRequestId": "desk-1"}
                )
            )
            sid = launched["sessionId"]
            assert launched["thread"] is None  # headless
            assert launched["startedBy"] == "operator:desktop"
            sent = answer(
                await client.call_tool(
                    "pm_session",
                    {"action": "send", "sessionId": sid, "message": "and again", "wait": 30},
                )
            )
            assert sent["finished"] is True
            assert "and again" in sent["text"]
            status = answer(await client.call_tool("sessions_status", {"sessionId": sid}))
            assert status["status"] == "idle"
            history = answer(await client.call_tool("sessions_history", {"sessionId": sid}))
            assert "turn_finished" in [e["kind"] for e in history["events"]]
            closed = answer(await client.call_tool("sessions_close", {"sessionId": sid}))
            assert closed["session"]["state"] == "closed"
        actions = [(a.token, a.action, a.target) for a in tokens.audit_lines()]
        assert actions == [
            ("desktop", "close", sid),
            ("desktop", "prompt", sid),
            ("desktop", "launch", sid),
        ]
    finally:
        engine.dispose()


def test_threadline_mcp_refuses_a_bad_token(database_url: str, tmp_path: Path) -> None:
    seed_schema(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(THREADLINE_DATABASE_URL=database_url, THREADLINE_MCP_TOKEN="not-a-token-at-all")
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "mcp"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "the MCP token is not valid" in done.stderr
    assert done.stdout == ""


async def test_a_viewer_token_reads_but_cannot_launch_send_or_close(api: Any) -> None:
    viewer, _ = api.tokens.create("watcher", "viewer")
    async with http_client(api.app, BOOTSTRAP) as operator:
        sid = answer(await operator.call_tool("sessions_create", {"task": "x", "thread": THREAD}))[
            "sessionId"
        ]
    async with http_client(api.app, viewer) as client:
        refused = refusal(
            await client.call_tool("pm_session", {"action": "launch_task", "task": "y"})
        )
        assert (refused["code"], refused["status"]) == ("forbidden", 403)
        assert api.sessions() == 1
        for name, args in (
            ("sessions_prompt", {"sessionId": sid, "prompt": "hi", "wait": 0}),
            ("sessions_close", {"sessionId": sid}),
        ):
            assert refusal(await client.call_tool(name, args))["code"] == "forbidden"
        assert answer(await client.call_tool("sessions_status", {"sessionId": sid}))["id"] == sid
        listed = answer(await client.call_tool("sessions_list", {}))
        assert [s["id"] for s in listed["sessions"]] == [sid]
        agents = answer(await client.call_tool("agents_discover", {}))
        assert "echo" in [agent["id"] for agent in agents["agents"]]
        health = answer(await client.call_tool("bridge_health", {}))
        assert health["database"]["state"] == "ok"
    assert [a.token for a in api.tokens.audit_lines()] == ["operator"]


async def test_a_repository_limited_token_cannot_see_another_repositorys_session(
    api: Any,
) -> None:
    limited, _ = api.tokens.create("octo-bot", "operator", ["octo/other"])
    async with http_client(api.app, BOOTSTRAP) as operator:
        sid = answer(
            await operator.call_tool(
                "sessions_create", {"task": "find the flaky retry", "thread": THREAD}
            )
        )["sessionId"]
        await operator.call_tool(
            "sessions_prompt", {"sessionId": sid, "prompt": "more", "wait": 20}
        )
        found = answer(await operator.call_tool("sessions_search", {"query": "flaky"}))
        assert sid in {hit["session_id"] for hit in found["hits"]}, found
    async with http_client(api.app, limited) as client:
        for name, args in (
            ("sessions_status", {"sessionId": sid}),
            ("sessions_history", {"sessionId": sid}),
            ("sessions_prompt", {"sessionId": sid, "prompt": "hi", "wait": 0}),
            ("sessions_close", {"sessionId": sid}),
            ("pm_session", {"action": "status", "sessionId": sid}),
        ):
            refused = refusal(await client.call_tool(name, args))
            assert refused["code"] == "not_found", (name, refused)
        assert answer(await client.call_tool("sessions_list", {}))["sessions"] == []
        assert answer(await client.call_tool("sessions_search", {"query": "flaky"}))["hits"] == []
        refused = refusal(
            await client.call_tool("sessions_create", {"task": "x", "thread": THREAD})
        )
        assert refused["code"] == "forbidden"
    assert api.sessions() == 1


async def test_mcp_without_a_valid_token_is_refused_before_the_sdk(api: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-entirely"}):
        async with api.app.http.post(
            api.app.url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=headers,
        ) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    token, _ = api.tokens.create("gone", "operator")
    api.tokens.revoke("gone")
    async with api.app.http.post(
        api.app.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 401


async def test_bad_tool_arguments_get_the_apis_error_and_create_nothing(api: Any) -> None:
    async with http_client(api.app, BOOTSTRAP) as client:
        cases = [
            ("pm_session", {"action": "explode"}, "invalid"),
            ("pm_session", {"action": "launch_task"}, "invalid"),
            ("sessions_create", {"task": "x", "agentId": "nobody"}, "unknown_agent"),
            ("sessions_create", {"task": "x", "thread": {"host": "mars"}}, "invalid"),
            ("sessions_create", {"task": "x" * 70000}, "too_large"),
            ("sessions_status", {"sessionId": "s-doesnotexist"}, "not_found"),
            ("sessions_search", {"query": "x", "limit": 0}, "invalid"),
        ]
        for name, args, code in cases:
            assert refusal(await client.call_tool(name, args))["code"] == code, (name, args)
    assert api.sessions() == 0


async def test_tasks_delegate_and_cancel_go_through_the_apis_operations(api: Any) -> None:
    token, _ = api.tokens.create("ci", "operator")
    viewer, _ = api.tokens.create("watcher", "viewer")
    async with http_client(api.app, token) as client:
        done = answer(
            await client.call_tool(
                "tasks_delegate", {"prompt": "summarize the retries", "wait": 30}
            )
        )
        assert done["finished"] is True
        assert "summarize the retries" in done["text"]
        assert done["session"]["state"] == "closed"
        sid = answer(await client.call_tool("sessions_create", {"task": "x", "thread": THREAD}))[
            "sessionId"
        ]
        await client.call_tool("sessions_prompt", {"sessionId": sid, "prompt": "y", "wait": 20})
        idle = answer(await client.call_tool("sessions_cancel", {"sessionId": sid}))
        assert idle["cancelling"] is False  # no turn in flight: nothing to stop
        assert idle["session"]["state"] == "idle"
        nothing = refusal(await client.call_tool("sessions_approve", {"sessionId": sid}))
        assert nothing["code"] == "nothing_to_approve"
    async with http_client(api.app, viewer) as client:
        refused = refusal(await client.call_tool("sessions_cancel", {"sessionId": sid}))
        assert refused["code"] == "forbidden"
        refused = refusal(await client.call_tool("tasks_delegate", {"prompt": "x"}))
        assert refused["code"] == "forbidden"
    actions = [a.action for a in api.tokens.audit_lines() if a.token == "ci"]
    assert "task" in actions
