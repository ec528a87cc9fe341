"""The HTTP API under /api/v1: thin aiohttp wrappers over the operations in control.py.

Requests are authenticated by bot.web.auth (bootstrap tokens from settings and the
database's tokens, one token system); every answer is JSON and every error has one
shape, {"error": {"code", "message"}}. A handler reads the body or the query into a
typed request (schema.py), calls its operation with the caller's `Principal`, and maps
the answer to a status code; scopes, repository limits, idempotency, the audit trail
and the transcript are the operations' business, so the MCP server gets the same.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from bot.api import control, stream
from bot.api.control import Api, close_as, session_json, thread_json
from bot.api.openapi import OPERATIONS, document
from bot.api.schema import (
    ApiError,
    approve_request,
    cancel_request,
    events_request,
    launch_request,
    list_request,
    prompt_request,
    task_request,
)
from bot.api.tokens import TokenStore
from bot.runtime import Runtime
from bot.sessions.store import SessionStore
from bot.web.auth import Principal, authenticate
from bot.web.queries import Reads

__all__ = ["API", "PREFIX", "Api", "close_as", "install_api", "session_json", "thread_json"]

PREFIX = "/api/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = web.AppKey("api_v1", Api)


# ------------------------------------------------------------------ plumbing


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiError and aiohttp's own HTTP errors under /api/v1 as the one error shape."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        return web.json_response(
            {"error": {"code": code, "message": exc.reason}}, status=exc.status
        )


def _api(request: web.Request) -> Api:
    return request.app[API]


def _who(request: web.Request) -> Principal:
    principal = authenticate(request)
    if principal is None:  # the auth middleware answered already; here for types
        raise ApiError(401, "unauthorized", "authentication required")
    return principal


async def _body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", "the body is too large") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def _json(body: Any, status: int = 200) -> web.StreamResponse:
    return web.json_response(body, status=status)


# ------------------------------------------------------------------ handlers


async def launch(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = launch_request(await _body(request))
    launched = await control.launch(_api(request), who, req)
    return _json(launched.session, 201 if launched.created else 200)


async def prompt(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = prompt_request(await _body(request))
    answer = await control.prompt(_api(request), who, request.match_info["id"], req)
    return _json(answer, 200 if "finished" in answer else 202)


async def get_session(request: web.Request) -> web.StreamResponse:
    return _json(await control.status(_api(request), _who(request), request.match_info["id"]))


async def list_sessions(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    return _json(await control.list_sessions(_api(request), who, list_request(request.query)))


async def session_events(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = events_request(request.query)
    sid = request.match_info["id"]
    if stream.wants_stream(request):
        return await stream.events_stream(request, _api(request), who, sid, req)
    return _json(await control.events(_api(request), who, sid, req))


async def _optional_body(request: web.Request) -> Any:
    """A body that may be left out (None then)."""
    if not request.can_read_body:
        return None
    return await _body(request)


async def cancel(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = cancel_request(await _optional_body(request))
    answer = await control.cancel(_api(request), who, request.match_info["id"], req)
    return _json(
        answer, 202 if answer["cancelling"] and answer["session"]["state"] == "busy" else 200
    )


async def approve(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = approve_request(await _optional_body(request))
    return _json(await control.approve(_api(request), who, request.match_info["id"], req))


async def tasks(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    req = task_request(await _body(request))
    return _json(await control.delegate_task(_api(request), who, req))


async def close_session(request: web.Request) -> web.StreamResponse:
    return _json(await control.close(_api(request), _who(request), request.match_info["id"]))


async def agents(request: web.Request) -> web.StreamResponse:
    return _json(await control.agents(_api(request), _who(request)))


async def health(request: web.Request) -> web.StreamResponse:
    answer = await control.health(_api(request), _who(request))
    return _json(answer, 503 if answer["state"] == "failing" else 200)


def install_api(
    app: web.Application,
    *,
    engine: Engine,
    tokens: TokenStore,
    runtime: Runtime | None,
    hosts: tuple[str, ...] = (),
) -> Api:
    """Add /api/v1 (after install_auth: the auth middleware guards it). `hosts`: the
    hosts this server is set up for, which health reports."""
    api = Api(runtime, engine, Reads(engine), tokens, SessionStore(engine), hosts)
    app[API] = api
    app.middlewares.append(errors)
    handlers: dict[tuple[str, str], Handler] = {
        ("POST", "/sessions"): launch,
        ("GET", "/sessions"): list_sessions,
        ("GET", "/sessions/{id}"): get_session,
        ("DELETE", "/sessions/{id}"): close_session,
        ("POST", "/sessions/{id}/prompt"): prompt,
        ("GET", "/sessions/{id}/events"): session_events,
        ("POST", "/sessions/{id}/cancel"): cancel,
        ("POST", "/sessions/{id}/approve"): approve,
        ("POST", "/tasks"): tasks,
        ("GET", "/agents"): agents,
        ("GET", "/health"): health,
    }
    if set(handlers) != set(OPERATIONS):
        raise RuntimeError("the /api/v1 routes and their OpenAPI operations differ")
    for (method, path), handler in handlers.items():
        app.router.add_route(method, PREFIX + path, handler)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    return api


async def openapi(request: web.Request) -> web.StreamResponse:
    _who(request)
    return web.json_response(document(PREFIX))
