"""External MCP servers as an LLM agent's tools: a small MCP server built with the SDK
(tests/fakes/mcp_server.py), reached over streamable HTTP (a real loopback port, with a
bearer token from a named variable) and over stdio (a program Threadline starts inside
the bubblewrap sandbox). The fake LLM calls their tools; the calls and results are in the
transcript like any tool call; active_tools filters them; a repository file can only
remove servers; config errors are reported."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.agents.base import AgentSpec, McpServer
from bot.agents.config import parse_config
from bot.agents.repo_config import narrow, parse_repo_config
from bot.agents.yamlcheck import ConfigFileError
from bot.config import Settings
from bot.sessions.mcp_tools import McpToolbox
from bot.sessions.store import SessionStore
from tests.conftest import needs_bwrap, run_app, with_settings
from tests.fakes.llm import Call, FakeOpenAI, LLMRequest, Reply
from tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "fakes" / "mcp_server.py"
# The sandbox runs the system's python3 (the test's own may live where the sandbox's user
# cannot read) with the SDK from this environment's site-packages.
SITE = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
OPENAI_KEY = "sk-openai-test-mcp-0a1b2c3d4e5f"
GLOSSARY_TOKEN = "glossary-bearer-token-7f6e5d4c3b2a"
GLOSSARY_KEY = "stdio-key-0123456789"
OPERATOR = "operator-token-for-the-mcp-agent-tests"

AGENTS = """
providers:
  fake:
    kind: openai
    baseUrl: {openai}
    apiKeyEnv: TL_TEST_OPENAI_KEY
    timeoutSeconds: 10
    defaults: {{model: fake-model}}
agents:
  researcher:
    engine: llm
    provider: fake
    description: looks words up
    mcpServers:
      glossary:
        url: http://127.0.0.1:{port}/mcp
        bearerTokenEnv: TL_GLOSSARY_TOKEN
      local:
        command: [/usr/bin/python3, {server}, stdio]
        envFrom: {{GLOSSARY_KEY: TL_GLOSSARY_KEY, PROBE_PORT: TL_PROBE_PORT, PYTHONPATH: TL_SITE}}
        readOnlyPaths: [{site}, {fakes}]
  trusting:
    engine: llm
    provider: fake
    active_tools: [reply, task_completed, mcp__mine__lookup]
    mcpServers:
      mine:
        command: [{python}, {server}, stdio]
        envFrom: {{GLOSSARY_KEY: TL_GLOSSARY_KEY, PROBE_PORT: TL_PROBE_PORT}}
        trusted: true
  narrow:
    engine: llm
    provider: fake
    active_tools: [reply, task_completed, mcp__glossary__shout]
    mcpServers:
      glossary: {{url: "http://127.0.0.1:{port}/mcp", bearerTokenEnv: TL_GLOSSARY_TOKEN}}
"""


@pytest.fixture
def glossary_http() -> Iterator[int]:
    """The test MCP server over streamable HTTP, as a subprocess on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        env={"GLOSSARY_TOKEN": GLOSSARY_TOKEN, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("the test MCP server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def researcher(request: LLMRequest) -> Reply:
    """Call one tool of each server; then report what they said and finish."""
    results = request.tool_results
    if not results:
        if "mcp__local__lookup" in request.tool_names:
            return Reply(
                calls=[
                    Call("mcp__glossary__lookup", {"term": "idempotent"}),
                    Call("mcp__local__lookup", {"term": "sandbox"}),
                ]
            )
        if "mcp__mine__lookup" in request.tool_names:
            return Reply(calls=[Call("mcp__mine__lookup", {"term": "trust"})])
        return Reply(calls=[Call("mcp__glossary__shout", {"text": "quiet"})])
    said = " | ".join(str(r["content"]) for r in results)
    return Reply(calls=[Call("reply", {"body": said}), Call("task_completed", {"output": said})])


@pytest.fixture
async def rig(
    settings: Settings,
    glossary_http: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Any, FakeOpenAI]]:
    monkeypatch.setenv("TL_TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TL_GLOSSARY_TOKEN", GLOSSARY_TOKEN)
    monkeypatch.setenv("TL_GLOSSARY_KEY", GLOSSARY_KEY)
    monkeypatch.setenv("TL_SITE", str(SITE))
    async with FakeOpenAI(api_key=OPENAI_KEY) as openai:
        monkeypatch.setenv("TL_PROBE_PORT", str(openai.url.rsplit(":", 1)[1].split("/")[0]))
        openai.responder = researcher
        path = tmp_path / "threadline.yml"
        path.write_text(
            AGENTS.format(
                openai=openai.base_url,
                port=glossary_http,
                server=SERVER,
                site=SITE,
                python=sys.executable,
                fakes=SERVER.parent,
            ),
            encoding="utf-8",
        )
        changed = with_settings(settings, config=str(path), operator_token=OPERATOR)
        async with run_app(changed) as app:
            yield app, openai


async def launch_and_finish(app: Any, agent: str) -> list[Any]:
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    async with app.http.post(
        app.url + "/api/v1/sessions", json={"agent": agent, "task": "look it up"}, headers=headers
    ) as response:
        assert response.status == 201, await response.text()
        sid = (await response.json())["id"]
    store = SessionStore(app.engine)
    deadline = time.monotonic() + 60
    while True:
        found = await asyncio.to_thread(store.get, sid)
        assert found is not None
        if found.state in ("closed", "failed", "idle"):
            break
        assert time.monotonic() < deadline, found.state
        await asyncio.sleep(0.1)
    assert found.state == "closed", found
    return await asyncio.to_thread(store.transcript, sid)


def tool_events(events: list[Any], kind: str) -> dict[str, dict[str, Any]]:
    return {e.data["tool"]: e.data for e in events if e.kind == kind}


@needs_bwrap
@pytest.mark.slow
async def test_an_llm_agent_calls_tools_of_an_http_and_a_sandboxed_stdio_mcp_server(
    rig: tuple[Any, FakeOpenAI],
) -> None:
    app, openai = rig
    events = await launch_and_finish(app, "researcher")
    offered = openai.requests[0].tool_names
    for name in ("mcp__glossary__lookup", "mcp__glossary__shout", "mcp__local__lookup"):
        assert name in offered, offered
    assert not [name for name in offered if "bad" in name]
    calls = tool_events(events, "tool_call")
    results = tool_events(events, "tool_result")
    assert calls["mcp__glossary__lookup"]["args"] == {"term": "idempotent"}
    assert calls["mcp__local__lookup"]["args"] == {"term": "sandbox"}
    http = results["mcp__glossary__lookup"]
    assert http["ok"] is True
    assert "idempotent: a word from the glossary (auth=ok" in http["content"]
    local = results["mcp__local__lookup"]
    assert local["ok"] is True
    # The stdio server got its variable, ran as the sandbox's user, could not read the
    # machine's files nor reach the network, and never saw the HTTP server's token.
    assert f"key={GLOSSARY_KEY}" in local["content"], local
    assert "uid=64000" in local["content"]
    assert "shadow=unreadable" in local["content"]
    assert "network=unreachable" in local["content"]
    assert "auth=none" in local["content"]
    problems = [e.data for e in events if e.kind == "mcp_problem"]
    assert {p["server"] for p in problems} == {"glossary", "local"}  # bad.name, each
    assert all("bad.name" in p["error"] for p in problems)
    # The model got both answers back.
    contents = [r["content"] for r in openai.requests[1].tool_results]
    assert any("auth=ok" in str(c) for c in contents)


async def test_active_tools_filters_a_servers_tools(rig: tuple[Any, FakeOpenAI]) -> None:
    app, openai = rig
    events = await launch_and_finish(app, "narrow")
    offered = [name for name in openai.requests[0].tool_names if name.startswith("mcp__")]
    assert offered == ["mcp__glossary__shout"]
    assert tool_events(events, "tool_result")["mcp__glossary__shout"]["content"] == "QUIET"


BASE = """
providers:
  fake: {kind: openai, baseUrl: "http://127.0.0.1:9/v1", apiKeyEnv: KEY}
agents:
  a:
    engine: llm
    provider: fake
    model: m
    mcpServers:
      docs: {url: "https://docs.example/mcp", bearerTokenEnv: DOCS}
      lint: {command: [/usr/bin/lint-mcp], network: true}
"""


def test_config_check_reports_mcp_server_mistakes() -> None:
    bad = """
providers:
  fake: {kind: openai, baseUrl: "http://127.0.0.1:9/v1", apiKeyEnv: KEY}
agents:
  a:
    engine: llm
    provider: fake
    model: m
    active_tools: [reply, mcp__nowhere__x]
    mcpServers:
      both: {url: "https://x.example/mcp", command: [x]}
      ftp: {url: "ftp://x.example"}
      mixed: {command: [x], bearerTokenEnv: DOCS}
      unset: {url: "https://x.example/mcp", bearerTokenEnv: NOT_SET_ANYWHERE}
      Bad Name: {url: "https://x.example/mcp"}
      slow: {command: [x], timeoutSeconds: 0}
  s:
    engine: script
    mcpServers: {x: {command: [x]}}
"""
    with pytest.raises(ConfigFileError) as caught:
        parse_config(bad, "threadline.yml", {"KEY": "k", "DOCS": "d"})
    text = "\n".join(caught.value.problems)
    for expected in (
        "agents.a.active_tools[1]: no MCP server 'nowhere'",
        "agents.a.mcpServers.both: give exactly one of url",
        "agents.a.mcpServers.ftp.url: expected an http:// or https:// URL",
        "agents.a.mcpServers.mixed.bearerTokenEnv: bearerTokenEnv goes with url",
        "agents.a.mcpServers.unset.bearerTokenEnv: the environment variable NOT_SET_ANYWHERE",
        "agents.a.mcpServers.Bad Name: a server name is",
        "agents.a.mcpServers.slow.timeoutSeconds: expected seconds between 1 and 600",
        "agents.s.mcpServers: only agents with engine llm use MCP servers",
    ):
        assert expected in text, text
    assert "d" not in [p.rsplit(" ", 1)[-1] for p in caught.value.problems]
    good = parse_config(BASE, "threadline.yml", {"KEY": "k", "DOCS": "secret-docs-token"})
    docs = good.agents["a"].mcp_servers[0]
    assert docs.headers == {"Authorization": "Bearer secret-docs-token"}
    assert "secret-docs-token" not in repr(good.agents["a"])


def test_a_repository_file_can_remove_servers_but_not_add_them() -> None:
    server = parse_config(BASE, "threadline.yml", {"KEY": "k", "DOCS": "d"})
    kept = narrow(
        server, parse_repo_config("agentSettings: {a: {mcpServers: [docs]}}", "r", server)
    )
    assert [s.name for s in kept.agents["a"].mcp_servers] == ["docs"]
    assert "mcp__lint" not in kept.agents["a"].tools
    dropped = narrow(
        server, parse_repo_config("agentSettings: {a: {active_tools: [reply]}}", "r", server)
    )
    assert [t for t in dropped.agents["a"].tools if t.startswith("mcp__")] == []
    with pytest.raises(ConfigFileError) as caught:
        parse_repo_config("agentSettings: {a: {mcpServers: [docs, evil]}}", "r", server)
    assert "no MCP server 'evil'" in caught.value.problems[0]
    with pytest.raises(ConfigFileError):
        parse_repo_config("agentSettings: {a: {mcpServers: {evil: {url: x}}}}", "r", server)


async def test_a_trusted_stdio_server_runs_outside_the_sandbox(rig: tuple[Any, FakeOpenAI]) -> None:
    app, openai = rig
    events = await launch_and_finish(app, "trusting")
    offered = [name for name in openai.requests[0].tool_names if name.startswith("mcp__")]
    assert offered == ["mcp__mine__lookup"]
    result = tool_events(events, "tool_result")["mcp__mine__lookup"]
    assert result["ok"] is True
    # This process's user and network, and the variable it was given.
    assert f"uid={os.getuid()}" in result["content"], result
    assert "network=reachable" in result["content"]
    assert f"key={GLOSSARY_KEY}" in result["content"]


async def test_a_server_that_dies_mid_call_fails_that_call_and_nothing_else() -> None:
    server = McpServer(
        "mine", command=(sys.executable, str(SERVER), "stdio"), trusted=True, timeout_seconds=10
    )
    agent = AgentSpec("a", "llm", tools=("reply", "mcp__mine"), mcp_servers=(server,))
    async with contextlib.AsyncExitStack() as stack:
        box = await McpToolbox.open(agent, stack, None)
        assert [spec.name for spec in box.specs] == [
            "mcp__mine__lookup",
            "mcp__mine__shout",
            "mcp__mine__crash",
        ]
        crashed = await box.call("mcp__mine__crash", {})
        assert not crashed.ok
        assert "mcp__mine__crash failed" in crashed.content
        after = await box.call("mcp__mine__shout", {"text": "x"})
        assert not after.ok  # the server is gone; each later call says so
    # ...and the turn's task was neither cancelled nor failed by the dead connection.
    await asyncio.sleep(0)


async def test_an_unreachable_server_leaves_its_tools_out_and_says_why() -> None:
    server = McpServer("gone", url=f"http://127.0.0.1:{free_port()}/mcp", timeout_seconds=5)
    agent = AgentSpec("a", "llm", tools=("mcp__gone",), mcp_servers=(server,))
    async with contextlib.AsyncExitStack() as stack:
        box = await McpToolbox.open(agent, stack, None)
    assert box.specs == []
    [problem] = box.problems
    assert problem["server"] == "gone"
    assert "Connect" in problem["error"] or "connect" in problem["error"], problem
