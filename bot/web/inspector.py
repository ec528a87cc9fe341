"""The session inspector: pages under /inspect, a JSON API under /api, a live event stream.

Handlers parse the request, ask `Reads` (bot/web/queries.py) for one page of rows in a
thread, and render. Nothing here writes SQL; the two operator actions go through
`OperatorActions`. Every page and answer passes the app's scrubber (bot.web.redact),
so no configured secret leaves the server, and JSON data is shown with credential-named
keys hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from bot.api.control import close_as
from bot.api.routes import API
from bot.config import Settings
from bot.events import ThreadRef
from bot.web.actions import OperatorActions
from bot.web.auth import OPERATOR, Principal, authenticate, require
from bot.web.links import thread_url
from bot.web.prompt import shown_prompt
from bot.web.queries import (
    CHANGE_PROPOSED,
    LIVE,
    BadCursor,
    EventRow,
    Page,
    Reads,
    SessionLine,
)
from bot.web.redact import redact, scrub
from bot.web.render import environment, render

log = logging.getLogger(__name__)

STATES = ("live", "active", "busy", "idle", "closed", "failed")
DELIVERY_STATUSES = ("pending", "processing", "done", "ignored", "failed")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "superseded")
# Transcript kinds of approval gates, shown on the session page when present.
APPROVAL_KINDS = ("approval_requested", "approved", "changes_requested")
API_EVENT_LIMIT = 1000

# How the live stream behaves: how often it looks for new events, how often it says it
# is still there when there are none, and how long one connection may last (the
# browser reconnects on its own, from the last event it got).
STREAM_POLL_SECONDS = 0.25
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 30 * 60.0

ThreadLink = Callable[[ThreadRef], str | None]


@dataclass
class Inspector:
    """What the handlers share: settings, the read model, the operator actions."""

    settings: Settings
    reads: Reads
    actions: OperatorActions
    # Links for hosts without web pages of their own (the playground registers "local").
    thread_links: dict[str, ThreadLink] = field(default_factory=dict)
    poll_seconds: float = STREAM_POLL_SECONDS
    # Set when the server shuts down: open event streams end instead of holding it up.
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def thread_url(self, thread: ThreadRef) -> str | None:
        custom = self.thread_links.get(thread.host)
        return custom(thread) if custom is not None else thread_url(self.settings, thread)


INSPECTOR = web.AppKey("inspector", Inspector)


def register_thread_link(app: web.Application, host: str, link: ThreadLink) -> None:
    """Let the inspector link threads of `host` (e.g. the playground's) to `link(thread)`."""
    app[INSPECTOR].thread_links[host] = link


# ----------------------------------------------------------------------- helpers


def _inspector(request: web.Request) -> Inspector:
    return request.app[INSPECTOR]


def _principal(request: web.Request) -> Principal:
    found = authenticate(request)
    assert found is not None  # the middleware let the request in
    return found


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise web.HTTPBadRequest(text=f"{name} must be one of {', '.join(allowed)}")
    return value


def _text_param(request: web.Request, name: str) -> str | None:
    value = (request.query.get(name) or "").strip()
    if len(value) > 400:
        raise web.HTTPBadRequest(text=f"{name} is too long")
    return value or None


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number")
    return int(raw)


def _json(request: web.Request, data: Any, *, status: int = 200) -> web.Response:
    """A JSON answer (the app's scrubber takes any configured secret out on the way)."""
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _session_or_404(request: web.Request) -> Any:
    sid = request.match_info["id"]
    detail = await asyncio.to_thread(_inspector(request).reads.session, sid)
    if detail is None:
        raise web.HTTPNotFound(text=f"no session {sid}")
    return detail


# ------------------------------------------------------------ transcript items


@dataclass
class Item:
    """One entry of a rendered transcript: an event, or a run of one turn's deltas."""

    id: int
    last_id: int
    at: datetime
    kind: str
    turn: Any
    data: dict[str, Any]
    text: str | None = None
    parts: int = 1


def _delta_text(data: Mapping[str, Any]) -> str:
    text = data.get("text")
    return text if isinstance(text, str) else ""


def build_items(events: list[EventRow]) -> list[Item]:
    """Events in order, consecutive deltas of one turn joined into one growing message."""
    items: list[Item] = []
    for e in events:
        data = redact(e.data)
        turn = data.get("turn") if isinstance(data, dict) else None
        if e.kind == "delta":
            last = items[-1] if items else None
            if last is not None and last.kind == "delta" and last.turn == turn:
                last.text = (last.text or "") + _delta_text(data)
                last.last_id = e.id
                last.parts += 1
                continue
            items.append(Item(e.id, e.id, e.at, e.kind, turn, data, _delta_text(data)))
            continue
        text = data.get("text") if e.kind == "message" else None
        items.append(
            Item(e.id, e.id, e.at, e.kind, turn, data, text if isinstance(text, str) else None)
        )
    return items


def render_item(item: Item, session_id: str) -> str:
    return environment().get_template("_event.html").render(item=item, session_id=session_id)


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (css class, line) pairs: file, hunk, add, del or ''."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = ""
        out.append((cls, line))
    return out


# ------------------------------------------------------------------- sessions


def _sessions_page(
    inspector: Inspector, request: web.Request, filters: Mapping[str, str | None]
) -> Page[SessionLine]:
    return inspector.reads.sessions(
        state=filters["state"],
        repo=filters["repo"],
        agent=filters["agent"],
        before=request.query.get("before"),
        after=request.query.get("after"),
    )


async def sessions_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    filters = {
        "state": _choice(request, "state", STATES),
        "repo": _text_param(request, "repo"),
        "agent": _text_param(request, "agent"),
    }
    try:
        page = await asyncio.to_thread(_sessions_page, inspector, request, filters)
    except BadCursor:
        raise web.HTTPBadRequest(text="that page link is not valid") from None
    repos, agents = await asyncio.to_thread(inspector.reads.filter_choices)
    return render(
        request,
        "sessions.html",
        page=page,
        filters=filters,
        states=STATES,
        repos=repos,
        agents=agents,
        query={k: v for k, v in filters.items() if v},
    )


async def session_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    detail = await _session_or_404(request)
    sid = detail.line.id
    inputs = await asyncio.to_thread(inspector.reads.inputs, sid)
    approvals = await asyncio.to_thread(
        lambda: inspector.reads.events(sid, kinds=APPROVAL_KINDS, limit=50).events
    )
    prompt = await asyncio.to_thread(shown_prompt, inspector.reads, sid, detail.spec)
    return render(
        request,
        "session.html",
        s=detail,
        inputs=inputs,
        approvals=build_items(approvals),
        thread_url=inspector.thread_url(detail.line.thread),
        spec=redact(detail.spec) if detail.spec else None,
        prompt=prompt,
        launched=redact(detail.launched),
        notice=request.query.get("done"),
    )


async def transcript_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    sid = request.match_info["id"]
    state = await asyncio.to_thread(inspector.reads.state, sid)
    if state is None:
        raise web.HTTPNotFound(text=f"no session {sid}")
    after, before = _int_param(request, "after"), _int_param(request, "before")
    last = request.query.get("last") == "1"
    page = await asyncio.to_thread(
        lambda: inspector.reads.events(sid, after=after, before=before, last=last)
    )
    items = build_items(page.events)
    last_id = page.events[-1].id if page.events else (after or 0)
    # Live updates only where new events would land: the end of the transcript.
    live = state in LIVE and not page.has_after
    return render(
        request,
        "transcript.html",
        session_id=sid,
        state=state,
        page=page,
        items=items,
        first_id=page.events[0].id if page.events else None,
        last_id=last_id,
        live=live,
        render_item=render_item,
    )


async def changes_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    sid = request.match_info["id"]
    state = await asyncio.to_thread(inspector.reads.state, sid)
    if state is None:
        raise web.HTTPNotFound(text=f"no session {sid}")
    page = await asyncio.to_thread(
        lambda: inspector.reads.events(sid, kinds=(CHANGE_PROPOSED,), limit=50)
    )
    if not page.events:
        raise web.HTTPNotFound(text=f"session {sid} has proposed no changes")
    changes = []
    for e in page.events:
        data = redact(e.data)
        diff = data.get("diff")
        changes.append(
            {
                "id": e.id,
                "at": e.at,
                "title": str(data.get("title") or "Proposed change"),
                "lines": diff_lines(diff if isinstance(diff, str) else ""),
            }
        )
    return render(request, "changes.html", session_id=sid, changes=changes)


# ------------------------------------------------------------ operator actions

_ACTIONS = {
    "close": "Close this session. The agent stops; its status comment says it was closed by an operator.",
    "purge": "Purge this session: close it if it is live and delete its transcript and inputs for good. Only a note of who purged it stays.",
}


@require(OPERATOR)
async def confirm_page(request: web.Request) -> web.StreamResponse:
    detail = await _session_or_404(request)
    action = request.match_info["action"]
    return render(request, "confirm.html", s=detail, action=action, explanation=_ACTIONS[action])


@require(OPERATOR)
async def action_post(request: web.Request) -> web.StreamResponse:
    """POST /inspect/sessions/{id}/{close|purge}: do it, then back to the session page."""
    sid = request.match_info["id"]
    action = request.match_info["action"]
    done = await _act(request, sid, action)
    if done is None:
        raise web.HTTPNotFound(text=f"no session {sid}")
    return web.Response(
        status=303,
        headers={"Location": f"/inspect/sessions/{sid}?done={action if done else 'nothing'}"},
    )


async def _act(request: web.Request, sid: str, action: str) -> bool | None:
    """True: done; False: nothing to do (already closed); None: no such session."""
    inspector = _inspector(request)
    principal = _principal(request)
    actor = principal.actor
    api = request.app.get(API)
    if api is not None and api.has_service:
        # The one path: the session service closes it, as DELETE /api/v1/sessions/{id}.
        found = await asyncio.to_thread(api.store.get, sid)
        if found is None:
            return None
        closed_now = await close_as(api, found, principal) if found.live else None
        if action == "close":
            return closed_now is not None
    if action == "close":
        if await asyncio.to_thread(inspector.reads.state, sid) is None:
            return None
        closed = await asyncio.to_thread(inspector.actions.close, sid, actor)
        outcome = closed is not None
    else:
        outcome = await asyncio.to_thread(inspector.actions.purge, sid, actor)
        if not outcome:
            return None
    log.info(
        "session %s: %s by %s (%s)", sid, action, actor, "done" if outcome else "nothing to do"
    )
    return outcome


# ------------------------------------------------------------- live events


def _stream_message(event: EventRow, session_id: str, app: web.Application) -> bytes:
    item = build_items([event])[0]
    payload: dict[str, Any] = {
        "id": event.id,
        "kind": event.kind,
        "turn": item.turn,
        "html": render_item(item, session_id),
    }
    if event.kind == "delta":
        payload["text"] = item.text or ""
    data = scrub(app, json.dumps(payload, ensure_ascii=False, default=str))
    return f"id: {event.id}\ndata: {data}\n\n".encode()


async def events_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each new transcript event as it is recorded, until the session
    is closed and every event has been sent, or the client goes away."""
    inspector = _inspector(request)
    sid = request.match_info["id"]
    if await asyncio.to_thread(inspector.reads.state, sid) is None:
        raise web.HTTPNotFound(text=f"no session {sid}")
    after = _int_param(request, "after") or 0
    resumed = request.headers.get("Last-Event-ID", "")
    if resumed.isdigit() and len(resumed) < 19:
        after = max(after, int(resumed))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # proxies: pass each event on at once
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    started = quiet_since = loop.time()
    with contextlib.suppress(ConnectionError):
        await response.write(b"retry: 1000\n\n")
        while loop.time() - started < STREAM_MAX_SECONDS and not inspector.closing.is_set():
            # The state first: events recorded before a close are committed with it,
            # so a closed state plus an empty read means everything has been sent.
            state = await asyncio.to_thread(inspector.reads.state, sid)
            batch = await asyncio.to_thread(inspector.reads.events_after, sid, after)
            for event in batch:
                await response.write(_stream_message(event, sid, request.app))
                after = event.id
            if batch:
                quiet_since = loop.time()
                continue
            if state not in LIVE:
                await response.write(b"event: end\ndata: {}\n\n")
                break
            if loop.time() - quiet_since >= STREAM_KEEPALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            await asyncio.sleep(inspector.poll_seconds)
    return response


# ------------------------------------------------------- deliveries and outbox


async def deliveries_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    status = _choice(request, "status", DELIVERY_STATUSES)
    host = _text_param(request, "host")
    try:
        page = await asyncio.to_thread(
            lambda: inspector.reads.deliveries(
                status=status, host=host, before=request.query.get("before")
            )
        )
    except BadCursor:
        raise web.HTTPBadRequest(text="that page link is not valid") from None
    return render(
        request,
        "deliveries.html",
        page=page,
        chosen=status,
        host=host,
        statuses=DELIVERY_STATUSES,
        query={k: v for k, v in (("status", status), ("host", host)) if v},
    )


async def outbox_page(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    status = _choice(request, "status", OUTBOX_STATUSES)
    try:
        page = await asyncio.to_thread(
            lambda: inspector.reads.outbox(status=status, before=request.query.get("before"))
        )
    except BadCursor:
        raise web.HTTPBadRequest(text="that page link is not valid") from None
    return render(
        request,
        "outbox.html",
        page=page,
        chosen=status,
        statuses=OUTBOX_STATUSES,
        query={"status": status} if status else {},
    )


# ------------------------------------------------------------------ JSON API


def _api_line(inspector: Inspector, line: SessionLine) -> dict[str, Any]:
    return {**line.summary(), "thread_url": inspector.thread_url(line.thread)}


async def api_sessions(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    try:
        filters = {
            "state": _choice(request, "state", STATES),
            "repo": _text_param(request, "repo"),
            "agent": _text_param(request, "agent"),
        }
        page = await asyncio.to_thread(_sessions_page, inspector, request, filters)
    except (BadCursor, web.HTTPBadRequest) as exc:
        return _json(request, {"error": getattr(exc, "text", None) or "bad cursor"}, status=400)
    return _json(
        request,
        {
            "sessions": [_api_line(inspector, r) for r in page.rows],
            "older": page.older,
            "newer": page.newer,
        },
    )


async def api_session(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    sid = request.match_info["id"]
    detail = await asyncio.to_thread(inspector.reads.session, sid)
    if detail is None:
        return _json(request, {"error": f"no session {sid}"}, status=404)
    inputs = await asyncio.to_thread(inspector.reads.inputs, sid)
    prompt = await asyncio.to_thread(shown_prompt, inspector.reads, sid, detail.spec)
    return _json(
        request,
        {
            **_api_line(inspector, detail.line),
            "task": detail.task,
            "output": detail.output,
            "options": detail.options,
            "spec": redact(detail.spec) if detail.spec else None,
            "system_prompt": prompt.text if prompt else None,
            "system_prompt_sent": bool(prompt and prompt.sent),
            "progress": detail.progress,
            "updated_at": detail.updated_at.isoformat(),
            "closed_at": detail.closed_at.isoformat() if detail.closed_at else None,
            "time_limit_at": detail.time_limit_at.isoformat(),
            "idle_deadline_at": detail.idle_deadline_at.isoformat()
            if detail.idle_deadline_at
            else None,
            "lifetime_at": detail.lifetime_at.isoformat(),
            "delegations": detail.delegations,
            "parent": detail.parent.id if detail.parent else None,
            "resumed_from": detail.line.resumed_from,
            "resumed_by": detail.resumed_by,
            "children": [c.id for c in detail.children],
            "events": detail.event_count,
            "change_sets": detail.change_sets,
            "inputs": [
                {
                    "id": i.id,
                    "kind": i.kind,
                    "author": i.author,
                    "body": i.body,
                    "url": i.url,
                    "status": i.status,
                    "turn": i.turn,
                    "created_at": i.created_at.isoformat(),
                }
                for i in inputs
            ],
        },
    )


async def api_transcript(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request)
    sid = request.match_info["id"]
    try:
        after = _int_param(request, "after")
        limit = _int_param(request, "limit") or 200
    except web.HTTPBadRequest as exc:
        return _json(request, {"error": exc.text}, status=400)
    limit = max(1, min(limit, API_EVENT_LIMIT))
    if await asyncio.to_thread(inspector.reads.state, sid) is None:
        return _json(request, {"error": f"no session {sid}"}, status=404)
    page = await asyncio.to_thread(lambda: inspector.reads.events(sid, after=after, limit=limit))
    events = [{**e.summary(), "data": redact(e.data)} for e in page.events]
    return _json(
        request,
        {
            "session": sid,
            "events": events,
            "total": page.total,
            "next_after": events[-1]["id"] if events and page.has_after else None,
        },
    )


@require(OPERATOR)
async def api_action(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/{close|purge} (operator; a cookie session needs X-CSRF-Token)."""
    sid = request.match_info["id"]
    action = request.match_info["action"]
    done = await _act(request, sid, action)
    if done is None:
        return _json(request, {"error": f"no session {sid}"}, status=404)
    return _json(request, {"session": sid, "action": action, "done": done})


# -------------------------------------------------------------------- wiring


async def inspect_root(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": "/inspect/sessions"})


def install_inspector(app: web.Application, settings: Settings, engine: Engine) -> Inspector:
    """Register the inspector's routes; auth (bot.web.auth.install_auth) guards them."""
    inspector = Inspector(settings, Reads(engine), OperatorActions(engine, settings.public_url))
    app[INSPECTOR] = inspector

    async def end_streams(app: web.Application) -> None:
        inspector.closing.set()

    app.on_shutdown.append(end_streams)
    add = app.router
    add.add_get("/inspect", inspect_root)
    add.add_get("/inspect/sessions", sessions_page)
    add.add_get("/inspect/sessions/{id}", session_page)
    add.add_get("/inspect/sessions/{id}/transcript", transcript_page)
    add.add_get("/inspect/sessions/{id}/events", events_stream)
    add.add_get("/inspect/sessions/{id}/changes", changes_page)
    add.add_get("/inspect/sessions/{id}/{action:close|purge}", confirm_page)
    add.add_post("/inspect/sessions/{id}/{action:close|purge}", action_post)
    add.add_get("/inspect/deliveries", deliveries_page)
    add.add_get("/inspect/outbox", outbox_page)
    add.add_get("/api/sessions", api_sessions)
    add.add_get("/api/sessions/{id}", api_session)
    add.add_get("/api/sessions/{id}/transcript", api_transcript)
    add.add_post("/api/sessions/{id}/{action:close|purge}", api_action)
    return inspector
