"""`threadline mcp`: the MCP server over stdin/stdout, for a client that starts it.

Over stdio there is no HTTP request to carry a token, so the process is started with
one (`--token`, or THREADLINE_MCP_TOKEN): a database token (`threadline tokens create`)
or a bootstrap token from the settings. It is checked once at start (a wrong or revoked
token stops the process before it serves anything) and every tool call runs as it, with
its scope and repository list, audited under its name, exactly as over /api/v1 or /mcp.

The process is a worker as well: it opens the database and runs the session runtime
(turn runner, outbox sender, timers and `workers` delivery workers) so that sessions it
launches make progress even when no `threadline serve` runs; with one running, the
processes share the work through the database as workers always do. When the client
closes stdin, the process finishes the work in hand and exits.
"""

from __future__ import annotations

import asyncio
import logging

from mcp.server.stdio import stdio_server

from bot.api.control import Api
from bot.api.tokens import TokenStore
from bot.config import Settings
from bot.mcpserver.server import build_server
from bot.server import StartupError, background, finish, open_services
from bot.sessions.store import SessionStore
from bot.web.auth import Keys
from bot.web.queries import Reads

log = logging.getLogger(__name__)

NEEDS_A_TOKEN = "threadline mcp needs a token: --token TOKEN or THREADLINE_MCP_TOKEN (`threadline tokens create NAME --scope operator|viewer`)"  # noqa: S105 (a message)
NOT_A_TOKEN = "the MCP token is not valid (unknown or revoked)"  # noqa: S105 (a message)


async def serve_stdio(settings: Settings, token: str | None, *, workers: int = 1) -> None:
    """Serve MCP on stdin/stdout as the holder of `token` until stdin closes."""
    if not token:
        raise StartupError(NEEDS_A_TOKEN)
    services = await asyncio.to_thread(open_services, settings, migrate=settings.auto_migrate)
    try:
        tokens = TokenStore(services.engine)
        keys = Keys.from_settings(settings, tokens)
        principal = await asyncio.to_thread(keys.bearer, token)
        if principal is None:
            raise StartupError(NOT_A_TOKEN)
        stop = asyncio.Event()
        async with background(settings, services, max(workers, 1)) as crew:
            tasks = crew.start(stop)
            api = Api(
                services.runtime,
                services.engine,
                Reads(services.engine),
                tokens,
                SessionStore(services.engine),
                settings.hosts,
            )
            server = build_server(api, lambda _ctx: principal, services.scrubber.text)
            log.info("MCP on stdio as %s (%s)", principal.who, principal.role)
            try:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())
            finally:
                stop.set()
                await finish(tasks)
    finally:
        services.engine.dispose()
