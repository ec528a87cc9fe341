"""Operator pages beside the inspector: restart a failed session, and the Repositories
page (paused repositories, today's spending against the daily limits; pause, resume).

Every change goes through the same code as the command line (`OperatorActions.restart`,
`Holds.pause`/`resume`), needs an operator, and from a cookie session its CSRF token
(`require` checks it on every POST).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import Engine

from bot.agents.limits_config import Limits
from bot.config import Settings
from bot.sessions.limits import Holds, parse_repo
from bot.sessions.store import RestartRefused
from bot.web.actions import OperatorActions
from bot.web.auth import OPERATOR, authenticate, require
from bot.web.inspector import _session_or_404
from bot.web.render import render

log = logging.getLogger(__name__)

RESTART = (
    "Restart this failed session from its last completed turn. The failed turn's input is "
    "given to it again; what that turn said and changed is passed over. Its time limits "
    "start afresh."
)


class Operator:
    def __init__(self, actions: OperatorActions, holds: Holds) -> None:
        self.actions = actions
        self.holds = holds


OPERATOR_KEY = web.AppKey("operator", Operator)


def _actor(request: web.Request) -> str:
    principal = authenticate(request)
    assert principal is not None  # `require` let the request in
    return principal.actor


async def _restart(request: web.Request) -> tuple[str, str | None]:
    """Restart the session; its id and None, or the reason it was refused."""
    sid = request.match_info["id"]
    actor = _actor(request)
    try:
        await asyncio.to_thread(request.app[OPERATOR_KEY].actions.restart, sid, actor)
    except RestartRefused as exc:
        return sid, str(exc)
    log.info("session %s: restarted by %s", sid, actor)
    return sid, None


@require(OPERATOR)
async def restart_confirm(request: web.Request) -> web.StreamResponse:
    detail = await _session_or_404(request)
    return render(request, "confirm.html", s=detail, action="restart", explanation=RESTART)


@require(OPERATOR)
async def restart_post(request: web.Request) -> web.StreamResponse:
    """POST /inspect/sessions/{id}/restart: restart it, then back to the session page."""
    sid, refused = await _restart(request)
    if refused is not None and refused.startswith("no session"):
        raise web.HTTPNotFound(text=refused)
    done = "restart" if refused is None else "not-restarted"
    return web.Response(status=303, headers={"Location": f"/inspect/sessions/{sid}?done={done}"})


@require(OPERATOR)
async def restart_api(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/restart (operator; a cookie session needs X-CSRF-Token)."""
    sid, refused = await _restart(request)
    if refused is None:
        return web.json_response({"session": sid, "action": "restart", "done": True})
    status = 404 if refused.startswith("no session") else 409
    return web.json_response({"session": sid, "error": refused}, status=status)


async def repos_page(request: web.Request) -> web.StreamResponse:
    """GET /inspect/repos (a viewer or operator): paused repositories and today's spending."""
    holds = request.app[OPERATOR_KEY].holds
    pauses = await asyncio.to_thread(holds.pauses)
    today = await asyncio.to_thread(holds.today)
    held = await asyncio.to_thread(holds.held)
    rows = [
        {
            "usage": u,
            "limit": holds.limits.for_repo(u.repo),
            "held": (h := held.for_repo(u.host, u.repo)) is not None and h.kind == "repository",
        }
        for u in today
    ]
    return render(
        request,
        "repos.html",
        pauses=pauses,
        rows=rows,
        limits=holds.limits,
        total_tokens=sum(u.tokens for u in today),
        total_cost=sum(u.cost_micros for u in today),
        everything=held.everything,
        notice=request.query.get("done"),
    )


@require(OPERATOR)
async def repos_post(request: web.Request) -> web.StreamResponse:
    """POST /inspect/repos/{pause|resume} with `repo` (OWNER/REPO or HOST:OWNER/REPO)."""
    form = await request.post()
    named = parse_repo(str(form.get("repo", "")).strip())
    if named is None:
        return web.Response(status=303, headers={"Location": "/inspect/repos?done=bad-name"})
    host, repo = named
    holds = request.app[OPERATOR_KEY].holds
    if request.match_info["action"] == "pause":
        await asyncio.to_thread(holds.pause, host, repo, _actor(request))
        done = "paused"
    else:
        done = "resumed" if await asyncio.to_thread(holds.resume, host, repo) else "not-paused"
    log.info("repository %s: %s by %s", repo, done, _actor(request))
    return web.Response(status=303, headers={"Location": f"/inspect/repos?done={done}"})


def install_operator(
    app: web.Application,
    settings: Settings,
    engine: Engine,
    limits: Limits | None,
    *,
    show_cost: bool = False,
) -> None:
    """Register the restart action and the Repositories page (under /inspect: guarded)."""
    actions = OperatorActions(engine, settings.public_url, show_cost=show_cost)
    app[OPERATOR_KEY] = Operator(actions, Holds(engine, limits))
    add = app.router
    add.add_get("/inspect/sessions/{id}/restart", restart_confirm)
    add.add_post("/inspect/sessions/{id}/restart", restart_post)
    add.add_post("/api/sessions/{id}/restart", restart_api)
    add.add_get("/inspect/repos", repos_page)
    add.add_post("/inspect/repos/{action:pause|resume}", repos_post)
