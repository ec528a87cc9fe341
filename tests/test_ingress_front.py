"""`webhooks_first`: webhook POSTs skip the app's other middlewares; nothing else does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.ingress.routes import SETTINGS, Handler, github_webhook, webhooks_first
from tests.conftest import with_settings


async def _other(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[str, list[str]]]:
    """A bare app: webhooks_first, then a middleware that records what reaches it. No
    GitHub secret, so the webhook handler answers 404 without needing a database."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app = web.Application(middlewares=[webhooks_first, record])
    app[SETTINGS] = with_settings(settings, github_webhook_secret=None)
    app.router.add_post("/webhooks/github", github_webhook)
    app.router.add_get("/other", _other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_webhook_post_goes_straight_to_its_handler(
    served: tuple[str, list[str]],
) -> None:
    url, seen = served
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/webhooks/github", data=b"{}") as resp,
    ):
        assert resp.status == 404
        assert "not enabled" in (await resp.json())["error"]
    assert seen == []


async def test_every_other_request_passes_the_middlewares(
    served: tuple[str, list[str]],
) -> None:
    url, seen = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/other") as resp:
            assert resp.status == 200
        async with http.get(f"{url}/webhooks/github") as resp:  # wrong method: 405
            assert resp.status == 405
        async with http.post(f"{url}/webhooks/nothing", data=b"{}") as resp:
            assert resp.status == 404
    assert seen == ["GET /other", "GET /webhooks/github", "POST /webhooks/nothing"]
