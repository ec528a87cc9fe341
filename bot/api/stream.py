"""GET /api/v1/sessions/{id}/events with `Accept: text/event-stream`: the transcript as
server-sent events.

Each event is `id: <event id>` and `data: <the event as JSON>` (the same object the paged
answer lists, its `kind` inside; unnamed, so an EventSource's onmessage gets them all). A client resumes with `Last-Event-ID` (or `?after=`);
the stream ends with `event: end` once the session is closed or failed and everything
up to its end has been sent, and sends a comment line every 15 s while quiet so that
proxies keep the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from bot.api import control
from bot.api.control import Api
from bot.api.schema import EventsRequest
from bot.db.models import LIVE_STATES
from bot.web.auth import VIEWER, Principal

POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
MAX_SECONDS = 6 * 3600.0  # a client reconnects (with Last-Event-ID) after this


def wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def resume_point(request: web.Request, req: EventsRequest) -> int:
    """Where to start: after the Last-Event-ID a reconnecting client sends, or `after`."""
    last = request.headers.get("Last-Event-ID", "").strip()
    if last.isdigit() and len(last) < 19:
        return max(req.after, int(last))
    return req.after


async def events_stream(
    request: web.Request, api: Api, who: Principal, session_id: str, req: EventsRequest
) -> web.StreamResponse:
    control.require(who, VIEWER)
    session = await control.visible(api, who, session_id)  # 404 before the stream starts
    after = resume_point(request, req)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    started = quiet_since = loop.time()
    with contextlib.suppress(ConnectionError):
        await response.write(b"retry: 1000\n\n")
        while loop.time() - started < MAX_SECONDS:
            # The state first: events recorded before a close are committed with it, so
            # a closed state plus an empty read means everything has been sent.
            state = await asyncio.to_thread(api.reads.state, session.id)
            batch = await asyncio.to_thread(api.reads.events_after, session.id, after)
            for row in batch:
                data = json.dumps(control.event_json(row), ensure_ascii=False, default=str)
                await response.write(f"id: {row.id}\ndata: {data}\n\n".encode())
                after = row.id
            if batch:
                quiet_since = loop.time()
                continue
            if state not in LIVE_STATES:
                await response.write(b"event: end\ndata: {}\n\n")
                break
            if loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            await asyncio.sleep(POLL_SECONDS)
    return response
