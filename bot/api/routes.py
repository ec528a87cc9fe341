"""The HTTP API under /api/v1: launch, steer, read and close sessions; agents; health.

Requests are authenticated by bot.web.auth (bootstrap tokens from settings and the
database's tokens, one token system); every answer is JSON and every error has one
shape, {"error": {"code", "message"}}. Launching and prompting go through the same
`SessionService` as comments do (launch with a `Trigger`, feed, close), so
idempotency, capacity and the transcript are the runtime's. Every action is recorded
in the audit trail under the token's name. A token limited to repositories sees other
repositories' sessions as not found.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from bot.api.openapi import OPERATIONS, document
from bot.api.schema import ApiError, launch_request, prompt_request
from bot.api.tokens import TokenStore
from bot.db.models import SessionRow
from bot.events import HEADLESS, ThreadRef
from bot.runtime import Runtime
from bot.sessions.agents import session_options
from bot.sessions.service import SessionService, Trigger
from bot.sessions.store import OPERATOR as CLOSED_BY_OPERATOR
from bot.sessions.store import SessionInfo, SessionStore
from bot.web.auth import OPERATOR, VIEWER, Principal, authenticate
from bot.web.queries import BadCursor, Reads
from bot.web.redact import redact

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
PAGE_LIMIT = 100
TURN_END_KINDS = ("turn_finished", "failed", "closed")
WAIT_POLL_SECONDS = 0.05

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Api:
    """What the handlers share."""

    runtime: Runtime | None
    engine: Engine
    reads: Reads
    tokens: TokenStore
    store: SessionStore

    @property
    def has_service(self) -> bool:
        return self.runtime is not None and self.runtime.has_sessions

    def service(self) -> SessionService:
        if self.runtime is None or not self.has_service:
            raise ApiError(503, "unavailable", "this process runs no sessions (no workers)")
        return self.runtime.sessions


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


def _who(request: web.Request, role: str = VIEWER) -> Principal:
    principal = authenticate(request)
    if principal is None:  # the auth middleware answered already; here for types
        raise ApiError(401, "unauthorized", "authentication required")
    if not principal.at_least(role):
        raise ApiError(403, "forbidden", f"this needs a token with the {role} scope")
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


async def _audit(request: web.Request, who: Principal, action: str, target: str | None) -> None:
    await asyncio.to_thread(_api(request).tokens.audit, who.who, action, target)


def thread_json(session: SessionInfo) -> dict[str, Any] | None:
    """The session's thread; None for a headless session."""
    thread = session.thread
    if thread.host == HEADLESS:
        return None
    return {
        "host": thread.host,
        "repo": thread.repo,
        "kind": thread.target,
        "number": thread.number,
        "reviewThread": thread.thread_id,
    }


def session_json(session: SessionInfo) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "id": session.id,
        "state": session.state,
        "agent": session.agent_id,
        "task": session.task,
        "thread": thread_json(session),
        "startedBy": session.started_by,
        "createdAt": session.created_at.isoformat(),
        "closedAt": session.closed_at.isoformat() if session.closed_at else None,
        "stopReason": session.close_reason,
        "closedBy": session.closed_by,
        "turns": session.turns,
        "usage": {"tokensIn": session.tokens_in, "tokensOut": session.tokens_out},
        "lastOutput": session.output,
        "parent": session.parent_id,
    }


async def _session(request: web.Request, who: Principal) -> SessionInfo:
    """The session named in the path, when this principal may see it (else 404)."""
    sid = request.match_info["id"]
    found = await asyncio.to_thread(_api(request).store.get, sid)
    if found is None or not who.may_touch(found.thread.repo):
        raise ApiError(404, "not_found", f"no session {sid}")
    return found


def _by_request_id(engine: Engine, key: str) -> str | None:
    with Session(engine) as session:
        return session.execute(
            select(SessionRow.id).where(SessionRow.client_request_id == key)
        ).scalar_one_or_none()


def _same_launch(session: SessionInfo, task: str, agent_id: str, thread: ThreadRef) -> bool:
    """Whether a launch asked for what `session` is (a headless one: any headless thread)."""
    if (session.task, session.agent_id) != (task, agent_id):
        return False
    if thread.host == HEADLESS:
        return session.thread.host == HEADLESS
    return session.thread.key == thread.key


# ------------------------------------------------------------------ handlers


async def launch(request: web.Request) -> web.StreamResponse:
    who = _who(request, OPERATOR)
    req = launch_request(await _body(request))
    if not who.may_touch(req.thread.repo):
        raise ApiError(403, "forbidden", f"this token may not touch {req.thread.repo}")
    api = _api(request)
    service = api.service()
    runtime = api.runtime
    assert runtime is not None
    if req.thread.host == HEADLESS:
        config = runtime.config  # no repository: the server's configuration as it is
    else:
        answer = await runtime.repo_config(req.thread.host, req.installation_id, req.thread.repo)
        config = answer.config
    try:
        agent = config.agent(req.agent)
    except KeyError:
        known = ", ".join(sorted(config.agents))
        raise ApiError(
            422, "unknown_agent", f"no agent {req.agent!r} in {req.thread.repo}; known: {known}"
        ) from None
    hold = await service.hold_for(req.thread.host, req.thread.repo)
    if hold is not None:  # paused, or past a daily spending limit: nothing starts
        raise ApiError(409, "held", hold.text)
    key = f"api:{who.who}:{req.client_request_id or uuid.uuid4().hex}"
    task = req.full_task
    before = await asyncio.to_thread(_by_request_id, api.engine, key)
    if before is not None:
        return await _replay(request, before, task, agent.id, req.thread)
    trigger = Trigger(
        client_request_id=key,
        thread=req.thread,
        installation_id=req.installation_id,
        login=who.actor,  # an operator token counts as a maintainer: operator:<name>
        task=task,
        agent_id=agent.id,
        agent=agent,
        options=session_options(config.sessions),
    )
    result = await service.launch(trigger)
    if not result.created:
        mine = await asyncio.to_thread(_by_request_id, api.engine, key)
        if mine is not None:  # a concurrent launch with the same id won
            return await _replay(request, mine, task, agent.id, req.thread)
        raise ApiError(
            409,
            "thread_busy",
            f"{req.thread.key} has a live session already: {result.session.id}",
        )
    await _audit(request, who, "launch", result.session.id)
    return web.json_response(session_json(result.session), status=201)


async def _replay(
    request: web.Request, session_id: str, task: str, agent_id: str, thread: ThreadRef
) -> web.StreamResponse:
    found = await asyncio.to_thread(_api(request).store.get, session_id)
    assert found is not None
    if not _same_launch(found, task, agent_id, thread):
        raise ApiError(
            409,
            "idempotency_conflict",
            "this clientRequestId launched a different session; use a new id",
        )
    return web.json_response(session_json(found), status=200)


async def prompt(request: web.Request) -> web.StreamResponse:
    who = _who(request, OPERATOR)
    session = await _session(request, who)
    req = prompt_request(await _body(request))
    api = _api(request)
    service = api.service()
    mark = await asyncio.to_thread(api.reads.last_event_id, session.id)
    known = {item.id for item in await asyncio.to_thread(api.store.inputs, session.id)}
    if not await service.feed(session, kind="operator", author=who.actor, body=req.input):
        raise ApiError(409, "not_live", f"session {session.id} is {session.state}")
    await _audit(request, who, "prompt", session.id)
    mine = [
        item.id
        for item in await asyncio.to_thread(api.store.inputs, session.id)
        if item.id not in known and item.author == who.actor
    ]
    if not req.wait or not mine:
        return web.json_response({"queued": True, "session": session_json(session)}, status=202)
    events = await _turn_events(api, session.id, mark, mine[0], req.wait)
    fresh = await asyncio.to_thread(api.store.get, session.id)
    assert fresh is not None
    return web.json_response(
        {
            "queued": True,
            "finished": any(e["kind"] in TURN_END_KINDS for e in events),
            "session": session_json(fresh),
            "replies": [
                e["data"]["args"]["body"]
                for e in events
                if e["kind"] == "tool_call"
                and e["data"].get("tool") == "reply"
                and isinstance(e["data"].get("args"), dict)
                and isinstance(e["data"]["args"].get("body"), str)
            ],
            "events": events,
        }
    )


async def _turn_events(
    api: Api, session_id: str, after: int, input_id: int, wait: float
) -> list[dict[str, Any]]:
    """The transcript of the turn that reads input `input_id`, from its start to its end
    (or what there is of it when `wait` seconds have passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    turn: list[dict[str, Any]] = []
    while True:
        for row in await asyncio.to_thread(api.reads.events_after, session_id, after):
            after = row.id
            event = {**row.summary(), "data": redact(row.data)}
            if turn or (
                event["kind"] == "turn_started" and input_id in event["data"].get("inputs", ())
            ):
                turn.append(event)
            elif event["kind"] in ("closed", "failed"):
                return [event]  # the session ended before the input was read
            if turn and event["kind"] in TURN_END_KINDS:
                return turn
        if loop.time() >= deadline:
            return turn
        await asyncio.sleep(WAIT_POLL_SECONDS)


async def get_session(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    return web.json_response(session_json(await _session(request, who)))


async def list_sessions(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    query = request.query
    try:
        limit = min(max(int(query.get("limit", "50")), 1), PAGE_LIMIT)
    except ValueError:
        raise ApiError(422, "invalid", "limit must be an integer") from None
    try:
        page = await asyncio.to_thread(
            _api(request).reads.sessions,
            state=query.get("state") or None,
            repo=query.get("repo") or None,
            agent=query.get("agent") or None,
            before=query.get("before") or None,
            limit=limit,
            repos=who.repos,
        )
    except BadCursor:
        raise ApiError(422, "invalid", "before is not a cursor this API gave") from None
    store = _api(request).store
    sessions = []
    for line in page.rows:
        found = await asyncio.to_thread(store.get, line.id)
        if found is not None:
            sessions.append(session_json(found))
    return web.json_response({"sessions": sessions, "next": page.older})


async def session_events(request: web.Request) -> web.StreamResponse:
    who = _who(request)
    session = await _session(request, who)
    try:
        after = int(request.query.get("after", "0"))
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        raise ApiError(422, "invalid", "after and limit must be integers") from None
    page = await asyncio.to_thread(_api(request).reads.events, session.id, after=after, limit=limit)
    events = [{**row.summary(), "data": redact(row.data)} for row in page.events]
    return web.json_response(
        {"events": events, "next": events[-1]["id"] if page.has_after and events else None}
    )


async def close_session(request: web.Request) -> web.StreamResponse:
    who = _who(request, OPERATOR)
    session = await _session(request, who)
    closed = await close_as(_api(request), session, who)
    if closed is None:
        raise ApiError(409, "not_live", f"session {session.id} is {session.state} already")
    return web.json_response(session_json(closed))


async def close_as(api: Api, session: SessionInfo, who: Principal) -> SessionInfo | None:
    """Close `session` for `who` through the session service (its delegations and its
    workspace close too), recorded in the audit trail; None if it was not live. The
    inspector's close (pages and /api/sessions/{id}/close) comes here as well."""
    closed = await api.service().close(session, CLOSED_BY_OPERATOR, by=who.actor)
    if closed is not None:
        await asyncio.to_thread(api.tokens.audit, who.who, "close", session.id)
    return closed


async def agents(request: web.Request) -> web.StreamResponse:
    _who(request)
    runtime = _api(request).runtime
    if runtime is None:
        raise ApiError(503, "unavailable", "no configuration in this process")
    config = runtime.config
    listed = [
        {
            "id": agent.id,
            "engine": agent.engine,
            "description": agent.description,
            "tools": list(agent.tools),
            "default": agent.id == config.default_agent,
        }
        for agent in config.agents.values()
    ]
    return web.json_response({"agents": listed})


async def health(request: web.Request) -> web.StreamResponse:
    _who(request)
    api = _api(request)

    def ping() -> None:
        with api.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await asyncio.to_thread(ping)
        database = {"state": "ok"}
    except Exception as exc:  # any failure is the answer
        database = {"state": "failing", "error": type(exc).__name__}
    sessions = {"state": "ok" if api.runtime is not None and api.runtime.has_sessions else "absent"}
    ok = database["state"] == "ok"
    return web.json_response(
        {"state": "ok" if ok else "failing", "database": database, "sessions": sessions},
        status=200 if ok else 503,
    )


def install_api(
    app: web.Application, *, engine: Engine, tokens: TokenStore, runtime: Runtime | None
) -> Api:
    """Add /api/v1 (after install_auth: the auth middleware guards it)."""
    api = Api(runtime, engine, Reads(engine), tokens, SessionStore(engine))
    app[API] = api
    app.middlewares.append(errors)
    handlers: dict[tuple[str, str], Handler] = {
        ("POST", "/sessions"): launch,
        ("GET", "/sessions"): list_sessions,
        ("GET", "/sessions/{id}"): get_session,
        ("DELETE", "/sessions/{id}"): close_session,
        ("POST", "/sessions/{id}/prompt"): prompt,
        ("GET", "/sessions/{id}/events"): session_events,
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
