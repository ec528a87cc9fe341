"""The inspector's Schedules page: each schedule with its last and next run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy import Engine

from bot.agents.schedule_config import ScheduleSpec
from bot.clock import utcnow
from bot.schedules import FireLog, overview
from bot.web.render import render


def install_schedules_page(
    app: web.Application, engine: Engine, specs: Sequence[ScheduleSpec]
) -> None:
    """/inspect/schedules (guarded like every /inspect page by bot.web.auth)."""
    fires = FireLog(engine)

    async def schedules_page(request: web.Request) -> web.StreamResponse:
        shown = await asyncio.to_thread(overview, specs, fires, utcnow())
        return render(request, "schedules.html", schedules=shown)

    app.router.add_get("/inspect/schedules", schedules_page)
