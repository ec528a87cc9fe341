"""The timekeeper: closes overdue sessions at their deadlines (APScheduler plus a sweep)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.loops import nap
from bot.sessions.service_core import ServiceCore
from bot.sessions.store import (
    SessionInfo,
)

log = logging.getLogger(__name__)


class Timekeeper:
    """Closes overdue sessions. The deadlines live in the database; APScheduler holds one
    job, set for the next deadline, and a sweep every `sweep_seconds`. A job only wakes
    this timekeeper's loop, which runs the check (a conditional UPDATE per session, so
    when several processes check at once each session closes exactly once); pokes that
    come in a burst are served by one check: a check follows the one before it by at
    least `spacing_seconds` (every launch pokes, and a check is two queries)."""

    JOB = "session-deadlines"

    def __init__(
        self, service: ServiceCore, *, sweep_seconds: float = 30.0, spacing_seconds: float = 0.5
    ) -> None:
        self.service = service
        self.sweep_seconds = sweep_seconds
        self.spacing_seconds = spacing_seconds
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.wakeup = asyncio.Event()

    async def start(self) -> None:
        """Rebuild the timer from the database: overdue sessions (say, after a restart)
        close right away, and the job is set for the next deadline."""
        began = time.perf_counter()
        self.scheduler.start()
        self.scheduler.add_job(self._wake, "interval", seconds=self.sweep_seconds, id="sweep")
        closed = await self.check()
        live = await asyncio.to_thread(self.service.store.count_live)
        log.info(
            "session timers rebuilt in %.1f ms: %d live sessions, %d overdue closed",
            (time.perf_counter() - began) * 1000,
            live,
            len(closed),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Check whenever woken, until `stop`; a check in progress finishes first."""
        loop = asyncio.get_running_loop()
        last = loop.time() - self.spacing_seconds
        while not stop.is_set():
            await nap(self.wakeup, stop, self.sweep_seconds)
            if stop.is_set():
                break
            # Pokes within `spacing_seconds` of the last check wait for the next one (a
            # deadline is minutes away: closing a fraction of a second late is harmless).
            spacing = last + self.spacing_seconds - loop.time()
            if spacing > 0:
                await nap(asyncio.Event(), stop, spacing)
            self.wakeup.clear()  # before the check: a poke during it brings another
            last = loop.time()
            try:
                await self.check()
            except Exception:
                log.exception("session deadline check failed")

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def poke(self) -> None:
        """A deadline may have moved earlier: check again soon."""
        self.wakeup.set()

    async def _wake(self) -> None:
        self.wakeup.set()

    async def check(self) -> list[SessionInfo]:
        closed = await asyncio.to_thread(self.service.store.expire_due)
        for session in closed:
            await self.service.publish_status(session)
        self._schedule_next(await asyncio.to_thread(self.service.store.next_deadline))
        return closed

    def _schedule_next(self, deadline: datetime | None) -> None:
        if deadline is None or not self.scheduler.running:
            return
        when = max(deadline, datetime.now(UTC)) + timedelta(milliseconds=10)
        self.scheduler.add_job(
            self._wake, "date", run_date=when, id=self.JOB, replace_existing=True
        )
