"""Ingress routes: POST /webhooks/{github,gitlab} (and /webhooks/local with the playground
on), GET /healthz, GET /readyz.

Every webhook goes size check -> verify -> store -> answer. It is answered 2xx only
once the raw delivery is committed; if it cannot be stored the answer is 503, so the
host records a failure that it (or an operator) can redeliver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from bot import __version__
from bot.config import MAX_BODY_BYTES, Settings
from bot.db import ping
from bot.db.outage import database_trouble
from bot.delivery import IncomingDelivery
from bot.inbox import Inbox
from bot.ingress.verify import (
    WebhookRejected,
    accept_github,
    accept_gitlab,
    accept_local,
)
from bot.ingress.writer import DeliveryWriter
from bot.metrics import received

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
INBOX = web.AppKey("inbox", Inbox)
WRITER = web.AppKey("writer", DeliveryWriter)
LOCAL_SECRET: web.AppKey[Callable[[], str | None]] = web.AppKey("local_secret")

Accept = Callable[[Mapping[str, str], bytes, str], IncomingDelivery]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _receive(
    request: web.Request, host: str, accept: Accept, secret: str | None
) -> web.Response:
    if secret is None:
        return _error(404, f"{host} webhooks are not enabled on this server")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return await store_verified(
        request.app, host, accept, request.headers, body, secret, request.remote
    )


async def store_verified(
    app: web.Application,
    host: str,
    accept: Accept,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    remote: str | None,
) -> web.Response:
    """Verify, store and answer one delivery: the part of ingress after reading the body."""
    try:
        incoming = accept(headers, body, secret)
    except WebhookRejected as exc:
        log.warning("refused %s webhook from %s: %s", host, remote, exc.reason)
        # No event label: an unverified request's headers are anyone's text.
        received(host, "", "refused").inc()
        return _error(exc.status, exc.reason)
    try:
        stored = await app[WRITER].store(incoming)
    except Exception:
        log.exception("could not store %s delivery %s", host, incoming.delivery_id)
        received(host, incoming.event, "unavailable").inc()
        return _error(503, "the delivery could not be stored; please redeliver it")
    if stored.duplicate:
        return _stored_answer("duplicate", 200, stored.pk, incoming)
    if incoming.event == "ping":
        return _stored_answer("pong", 200, stored.pk, incoming)
    if not incoming.handled:
        return _stored_answer("ignored", 202, stored.pk, incoming)
    return _stored_answer("queued", 202, stored.pk, incoming)


def _stored_answer(status: str, code: int, pk: int, incoming: IncomingDelivery) -> web.Response:
    """{"status", "id", "delivery"} as JSON; orjson, as this is every delivery's answer."""
    received(incoming.host, incoming.event, status).inc()
    body = orjson.dumps({"status": status, "id": pk, "delivery": incoming.delivery_id})
    return web.Response(body=body, status=code, content_type="application/json")


async def github_webhook(request: web.Request) -> web.Response:
    return await _receive(
        request, "github", accept_github, request.app[SETTINGS].github_webhook_secret
    )


async def gitlab_webhook(request: web.Request) -> web.Response:
    return await _receive(
        request, "gitlab", accept_gitlab, request.app[SETTINGS].gitlab_webhook_token
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, request.app[INBOX].engine), timeout=5)
    except Exception as exc:
        trouble = database_trouble(exc)
        log.warning("readiness check failed: database %s", trouble)
        return web.json_response({"status": "unavailable", "database": trouble}, status=503)
    return web.json_response({"status": "ready", "database": "ok"})


def _local_secret(app: web.Application) -> str | None:
    found = app.get(LOCAL_SECRET)
    return None if found is None else found()


async def local_webhook(request: web.Request) -> web.Response:
    return await _receive(request, "local", accept_local, _local_secret(request.app))


_WEBHOOK_HANDLERS = frozenset({github_webhook, gitlab_webhook, local_webhook})


async def ingest_local(
    app: web.Application, headers: Mapping[str, str], body: bytes
) -> web.Response:
    """A playground page's delivery, through the same verify -> store -> answer path."""
    secret = _local_secret(app)
    if secret is None:
        return _error(503, "the playground is still starting")
    return await store_verified(app, "local", accept_local, headers, body, secret, "playground")


@web.middleware
async def webhooks_first(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send a webhook POST straight to its handler, past the app's other middlewares.

    Those are the scrubber, the inspector's auth and /api/v1's error shape; none has
    anything to do on a webhook. Its path is under no protected prefix and not under
    /api/v1, and its answer can carry no secret: it is either one of this module's fixed
    error texts or {"status", "id", "delivery"}, whose delivery id is the sender's own
    header (echoed only after its signature or token checked out). Every other request
    (a 404 or 405 under /webhooks too) goes through the chain as before. Install it
    first (`app.middlewares.insert(0, webhooks_first)`) once the others are in.
    """
    route_handler = request.match_info.handler
    if route_handler in _WEBHOOK_HANDLERS:
        return await route_handler(request)
    return await handler(request)


def install_ingress(
    app: web.Application,
    settings: Settings,
    *,
    inbox: Inbox,
    on_stored: Callable[[], None] | None = None,
    local_secret: Callable[[], str | None] | None = None,
) -> None:
    """Add the webhook routes, /healthz and /readyz, and the writer's start and stop.

    `local_secret` gives the playground's signing secret (None while it starts); with it,
    /webhooks/local is served too, and `ingest_local` takes the playground's deliveries."""
    app[SETTINGS] = settings
    app[INBOX] = inbox
    app[WRITER] = DeliveryWriter(inbox, on_stored=on_stored)

    async def start_writer(app: web.Application) -> None:
        app[WRITER].start()

    async def stop_writer(app: web.Application) -> None:
        await app[WRITER].close()

    app.on_startup.append(start_writer)
    app.on_cleanup.append(stop_writer)
    app.router.add_post("/webhooks/github", github_webhook)
    app.router.add_post("/webhooks/gitlab", gitlab_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if local_secret is not None:
        app[LOCAL_SECRET] = local_secret
        app.router.add_post("/webhooks/local", local_webhook)
