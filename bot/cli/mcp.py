"""`threadline mcp`: Threadline's MCP server over stdin/stdout (bot/mcpserver/stdio.py).

Registered on the main parser by `register` (bot/cli/__init__.py calls it once).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.config import Settings


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from bot.mcpserver.stdio import serve_stdio

    asyncio.run(serve_stdio(settings, args.token or settings.mcp_token, workers=args.workers))
    return 0


def register(commands: Any) -> None:
    """Add `mcp` to the main parser's subcommands."""
    mcp = commands.add_parser(
        "mcp",
        help="serve MCP over stdin/stdout (for an MCP client that starts Threadline)",
        description="Serve Threadline's MCP tools (pm_session, sessions_*, tasks_delegate, "
        "agents_discover, bridge_health) over stdio. Every call acts as the token given "
        "(its scope and repositories; audited under its name). The process also runs the "
        "session runtime, like `threadline worker`, so launched sessions make progress. "
        "Over HTTP, the same tools are at /mcp of `threadline serve`.",
    )
    mcp.add_argument(
        "--token",
        help="the API token to act as (default: THREADLINE_MCP_TOKEN); prefer the "
        "variable: a command line is visible to other users of the machine",
    )
    mcp.add_argument(
        "--workers", type=int, default=1, metavar="N", help="delivery workers (default 1)"
    )
    mcp.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema at start")
    mcp.set_defaults(func=cmd_mcp)
