"""MCP over streamable HTTP at /mcp, inside the aiohttp application.

The SDK's transport is an ASGI application (`StreamableHTTPSessionManager.handle_request`).
Rather than a second listener, `/mcp` is an aiohttp route that hands each request to it
through a small ASGI bridge: the request's method, path, headers and body stream in as
ASGI `receive` messages, the application's `send` messages become an aiohttp
`StreamResponse` (streamed, so server-sent events pass as they are written). One port,
one process, one shutdown, and the Bearer token is checked by the same `Keys` as
/api/v1 before the SDK sees the request. The app's scrubber middleware rewrites whole
responses only, so tool results are scrubbed by the MCP server itself (server.py).

The manager runs stateless (a fresh MCP transport per HTTP request): every request
carries its own token, so nothing about a caller outlives its request, any web process
behind a load balancer can answer any request, and there is no session table to bound.
The manager's task group lives in a task of its own for the app's lifetime (anyio needs
a task group entered and left in one task; aiohttp's start-up and clean-up hooks may run
in different ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import Any

from aiohttp import web
from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from bot.api.control import Api
from bot.mcpserver.server import build_server
from bot.web.auth import KEYS, Principal, json_error
from bot.web.redact import SCRUBBER

log = logging.getLogger(__name__)

PATH = "/mcp"
STATE_KEY = "threadline_principal"
MAX_BODY_BYTES = 4 * 1024 * 1024

Message = MutableMapping[str, Any]

MANAGER = web.AppKey("mcp_manager", StreamableHTTPSessionManager)
_RUNNING = web.AppKey("mcp_manager_task", asyncio.Task[None])


def principal_of_request(ctx: ServerRequestContext[Any]) -> Principal | None:
    """The principal the /mcp handler resolved for the HTTP request behind `ctx`."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    found = scope.get("state", {}).get(STATE_KEY)
    return found if isinstance(found, Principal) else None


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _scope(request: web.Request, principal: Principal) -> dict[str, Any]:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    sock = transport.get_extra_info("sockname") if transport is not None else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {STATE_KEY: principal},
    }


async def _bridge(request: web.Request, scope: dict[str, Any]) -> web.StreamResponse:
    """Run the SDK's ASGI handler for `request`, streaming its answer back."""
    manager = request.app[MANAGER]
    finished = asyncio.Event()
    response: web.StreamResponse | None = None
    body_done = False

    async def receive() -> Message:
        nonlocal body_done
        if body_done:
            await finished.wait()  # no more body: the next message is the disconnect
            return {"type": "http.disconnect"}
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", []):
                key = name.decode("latin-1")
                if key.lower() in ("content-length", "transfer-encoding"):
                    continue  # aiohttp frames the body itself
                response.headers.add(key, value.decode("latin-1"))
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            body = message.get("body", b"")
            if body:
                await response.write(body)
            if not message.get("more_body", False):
                await response.write_eof()

    try:
        await manager.handle_request(scope, receive, send)
    finally:
        finished.set()
    if response is None:
        return web.Response(status=500, text="the MCP transport gave no answer")
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    token = _bearer(request)
    principal = None
    if token is not None:
        keys = request.app[KEYS]
        principal = keys.bootstrap(token) or await asyncio.to_thread(keys.stored, token)
    if principal is None:
        return json_error(
            request,
            401,
            "unauthorized",
            "authentication required: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="threadline"'},
        )
    return await _bridge(request, _scope(request, principal))


def install_mcp(app: web.Application, api: Api) -> None:
    """Serve MCP at /mcp (after install_auth and install_api: it uses their tokens and
    the API's operations)."""
    scrubber = app[SCRUBBER]
    server = build_server(api, principal_of_request, scrubber.text)
    manager = StreamableHTTPSessionManager(
        app=server,
        json_response=True,
        stateless=True,
        max_request_body_size=MAX_BODY_BYTES,
    )
    app[MANAGER] = manager

    async def on_startup(app: web.Application) -> None:
        started = asyncio.Event()

        async def run() -> None:
            async with manager.run():
                started.set()
                await asyncio.Event().wait()  # until cancelled at clean-up

        task = asyncio.create_task(run(), name="mcp-session-manager")
        app[_RUNNING] = task
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait((task, waiting), return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done():
            task.result()  # it failed to start: say why

    async def on_cleanup(app: web.Application) -> None:
        task = app[_RUNNING]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, PATH, handle)
