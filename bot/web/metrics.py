"""GET /metrics: this process's Prometheus metrics, for an operator or viewer token.

`serve_metrics` runs the same page on THREADLINE_METRICS_ADDRESS without a token, for a
worker process (which has no web server) or a scraper that cannot send a token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy import Engine

from bot.metrics import CONTENT_TYPE, exposition
from bot.web.auth import authenticate

ENGINE = web.AppKey("metrics_engine", Engine)


async def _page(engine: Engine) -> web.Response:
    body = await asyncio.to_thread(exposition, engine)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def metrics_guarded(request: web.Request) -> web.Response:
    """The metrics for a Bearer operator or viewer token (or a signed-in browser)."""
    if authenticate(request) is None:
        return web.json_response(
            {"error": "authentication required: send Authorization: Bearer <token>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="threadline"'},
        )
    return await _page(request.app[ENGINE])


def install_metrics(app: web.Application, engine: Engine) -> None:
    """Add GET /metrics behind the inspector's tokens (install_auth first)."""
    app[ENGINE] = engine
    app.router.add_get("/metrics", metrics_guarded)


async def _open(request: web.Request) -> web.Response:
    return await _page(request.app[ENGINE])


def split_address(address: str) -> tuple[str, int]:
    """("::1", 9100) from "[::1]:9100"; ("0.0.0.0", 9100) from "0.0.0.0:9100"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def serve_metrics(address: str, engine: Engine) -> AsyncIterator[str]:
    """GET /metrics (no token) on `address` while the block runs; yields its URL."""
    app = web.Application()
    app[ENGINE] = engine
    app.router.add_get("/metrics", _open)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        host, port = split_address(address)
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}/metrics"
    finally:
        await runner.cleanup()
