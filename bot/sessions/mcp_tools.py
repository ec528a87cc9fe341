"""An agent's external MCP servers, connected for one turn: their tools join the turn's.

`McpToolbox.open(agent, stack, workdir)` connects to each of the agent's `mcpServers`
(bot/agents/mcp_config.py) with the MCP SDK's own client, lists their tools and keeps
those the agent's `active_tools` allow, named `mcp__<server>__<tool>`. The connections
close with `stack`, when the turn ends. A server that cannot be reached, or a program
that cannot start, leaves its tools out of the turn and says why in `problems` (the
turn runner records each in the transcript); the turn goes on without them.

Streamable HTTP: the configured headers (credentials read from named variables) go to
that server's URL only (the SDK follows a redirect only within the URL's origin).

stdio: the program runs inside the bubblewrap sandbox (bot/workspaces/sandbox.py): the
session's worktree read-only at /workspace when it has one, else an empty folder; the
system's program folders and `readOnlyPaths` read-only; network only with `network:
true`; an environment built from nothing but `envFrom`; the sandbox's user and limits.
Only a server marked `trusted: true` runs outside it, as a plain child process (still
without Threadline's own environment). Without bubblewrap an untrusted program does not
start.

Calls are carried out by `SessionTools`, which records them (`tool_call`, `tool_result`)
like any other tool's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bot.agents import mcp_config as mc
from bot.agents.base import AgentSpec, McpServer, ToolResult
from bot.agents.providers.base import ToolSpec
from bot.workspaces import sandbox as sb

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 100_000
TOOL_NAME_CHARS = 64  # what the providers accept for a tool's name
NO_SANDBOX = (
    "the MCP server {name!r} is a program and bubblewrap is not installed: it is not "
    "started (install bubblewrap, or mark the server `trusted: true` to run it unsandboxed)"
)
SETPRIV = "/usr/bin/setpriv"


class McpUnavailable(Exception):
    """A server that cannot be used in this turn; the message says why."""


@dataclass
class McpToolbox:
    """The turn's external tools: their specs for the model, and where each call goes."""

    specs: list[ToolSpec] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    _routes: dict[str, tuple[Client, str]] = field(default_factory=dict)

    @classmethod
    async def open(
        cls, agent: AgentSpec, stack: contextlib.AsyncExitStack, workdir: Path | None
    ) -> McpToolbox:
        box = cls()
        for server in agent.mcp_servers:
            try:
                client = await _connect(server, stack, workdir)
                listed = await client.list_tools()
            except Exception as exc:  # whatever went wrong, the turn goes on without it
                reason = _reason(exc)
                log.warning("MCP server %s unavailable: %s", server.name, reason)
                box.problems.append({"server": server.name, "error": reason})
                continue
            box._add(agent, server, client, listed.tools)
        return box

    def _add(
        self, agent: AgentSpec, server: McpServer, client: Client, listed: list[types.Tool]
    ) -> None:
        for tool in listed:
            name = mc.tool_name(server.name, tool.name)
            if len(name) > TOOL_NAME_CHARS or not mc.TOOL_CHARS.fullmatch(tool.name):
                error = f"tool {tool.name!r} has a name models cannot call; left out"
                self.problems.append({"server": server.name, "error": error})
                continue
            if not mc.active(name, agent.tools):
                continue
            schema = dict(tool.input_schema or {"type": "object", "properties": {}})
            self.specs.append(ToolSpec(name, tool.description or "", schema))
            self._routes[name] = (client, tool.name)

    def handles(self, name: str) -> bool:
        return name in self._routes

    async def call(self, name: str, args: dict[str, Any]) -> ToolResult:
        client, tool = self._routes[name]
        try:
            result = await client.call_tool(tool, args)
        except Exception as exc:  # the server's failure is the tool's answer
            return ToolResult(False, f"{name} failed: {exc or type(exc).__name__}")
        text = _text_of(result)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"\n[... cut at {MAX_RESULT_CHARS} characters]"
        return ToolResult(not result.is_error, text)


def _reason(exc: BaseException) -> str:
    """What went wrong, in words: the first real error inside task groups' wrappers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text_of(result: types.CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{block.type} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


async def _enter(stack: contextlib.AsyncExitStack, client: Client, name: str) -> Client:
    """Enter `client`; its exit (at the turn's end) logs a failure instead of raising it,
    so a server that went away cannot fail a turn that is over."""
    inner = contextlib.AsyncExitStack()
    await inner.enter_async_context(client)

    async def close(*_exc: object) -> bool:
        try:
            await inner.aclose()
        except Exception:
            log.warning("MCP server %s did not close cleanly", name, exc_info=True)
        return False

    stack.push_async_exit(close)
    return client


async def _connect(
    server: McpServer, stack: contextlib.AsyncExitStack, workdir: Path | None
) -> Client:
    timeout = server.timeout_seconds
    if server.url is not None:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=dict(server.headers), timeout=timeout)
        )
        transport = streamable_http_client(server.url, http_client=http)
        return await _enter(stack, Client(transport, read_timeout_seconds=timeout), server.name)
    if workdir is None:
        folder = tempfile.mkdtemp(prefix="threadline-mcp-")
        os.chmod(folder, 0o755)  # noqa: S103 (empty; the sandbox's user must reach it)
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        workdir = Path(folder)
    params = _stdio_params(server, workdir)
    return await _enter(stack, Client(params, read_timeout_seconds=timeout), server.name)


def _stdio_params(server: McpServer, workdir: Path) -> StdioServerParameters:
    argv = list(server.command)
    if server.trusted:
        return StdioServerParameters(
            command=argv[0], args=argv[1:], env=dict(server.env), cwd=str(workdir)
        )
    bwrap = sb.bwrap_path()
    if bwrap is None:
        raise McpUnavailable(NO_SANDBOX.format(name=server.name))
    policy = sb.Policy(
        writable=False,
        network=server.network,
        env=dict(server.env),
        binds=tuple((path, path, False) for path in server.read_only_paths),
    )
    limits = sb.Limits()
    full = [*sb.prlimit_argv(limits), *sb.bwrap_argv(bwrap, workdir, argv, policy)]
    if os.geteuid() == 0:  # as root: bubblewrap starts as the sandbox's user (see sandbox.py)
        uid = str(policy.uid)
        full = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *full]
    return StdioServerParameters(
        command=full[0],
        args=full[1:],
        env={"PATH": sb.SANDBOX_PATH, "LANG": "C.UTF-8"},
        cwd="/",
    )
