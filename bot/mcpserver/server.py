"""The MCP server: the official SDK's low-level `Server` with Threadline's tools.

`build_server(api, principal_for, scrub)` answers tools/list from bot.mcpserver.tools'
catalogue and tools/call by running the tool as the caller. `principal_for(ctx)` says
who the caller is: over streamable HTTP the Bearer token of that very HTTP request
(bot.mcpserver.http put it in the request's ASGI scope), over stdio the token
`threadline mcp` was started with. A call without a principal is refused. Results are
JSON (structured content, and the same as text for clients that read only text), passed
through the process's secret scrubber.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from bot import __version__
from bot.api.control import Api
from bot.api.schema import ApiError
from bot.mcpserver import tools
from bot.web.auth import Principal

log = logging.getLogger(__name__)

NAME = "threadline"
INSTRUCTIONS = (
    "Threadline runs AI agent sessions bound to code review threads (or headless). "
    "Use agents_discover to find agents, pm_session or sessions_create to launch one, "
    "sessions_prompt to steer it, sessions_status to read it and sessions_close to end it. "
    "Launches with a clientRequestId are safe to retry."
)

PrincipalFor = Callable[[ServerRequestContext[Any]], Principal | None]
Scrub = Callable[[str], str]


def _error(status: int, code: str, message: str) -> types.CallToolResult:
    body = {"error": {"code": code, "message": message, "status": status}}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(body))],
        structured_content=body,
        is_error=True,
    )


def build_server(api: Api, principal_for: PrincipalFor, scrub: Scrub) -> Server[Any]:
    """An MCP server whose tools run the control plane's operations."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=description, input_schema=schema)
                for name, (description, schema) in tools.TOOLS.items()
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        who = principal_for(ctx)
        if who is None:
            return _error(401, "unauthorized", "no token: this call is not authenticated")
        args = params.arguments or {}
        try:
            answer = await tools.call(api, who, params.name, args)
        except ApiError as exc:
            return _error(exc.status, exc.code, scrub(exc.message))
        text = scrub(json.dumps(answer, ensure_ascii=False, default=str))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=json.loads(text),
        )

    return Server(
        NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
