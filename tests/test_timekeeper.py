"""The timekeeper's checks: a lone poke is served at once, a burst of pokes by few checks."""

from __future__ import annotations

import asyncio

from sqlalchemy import Connection, Engine

import bot.outbox as ob
from bot.agents.config import Config
from bot.sessions.agents import Agents, session_options
from bot.sessions.service_core import ServiceCore
from bot.sessions.store import SessionInfo, SessionStore
from bot.sessions.timekeeper import Timekeeper


class CountingTimekeeper(Timekeeper):
    """A timekeeper that notes when each of its (real) checks began."""

    def __init__(self, service: ServiceCore, *, spacing_seconds: float) -> None:
        super().__init__(service, spacing_seconds=spacing_seconds)
        self.checks: list[float] = []

    async def check(self) -> list[SessionInfo]:
        self.checks.append(asyncio.get_running_loop().time())
        return await super().check()


def service(engine: Engine) -> ServiceCore:
    config = Config.default()

    def enqueue(write: ob.Write, conn: Connection | None = None) -> int:
        return 0

    async def permission(_host: str, _installation: int | None, _repo: str, _login: str) -> str:
        return "admin"

    return ServiceCore(
        SessionStore(engine),
        agents=Agents(config),
        options=session_options(config.sessions),
        max_live=10,
        enqueue=enqueue,
        permission=permission,
    )


async def test_a_burst_of_pokes_is_served_by_few_checks_and_a_lone_poke_at_once(
    engine: Engine,
) -> None:
    keeper = CountingTimekeeper(service(engine), spacing_seconds=0.5)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    running = asyncio.create_task(keeper.run(stop))
    try:
        poked = loop.time()
        keeper.poke()
        await asyncio.sleep(0.3)
        assert keeper.checks, "a poke brought no check"
        assert keeper.checks[0] - poked < 0.25  # nothing before it: served at once

        for _ in range(20):  # a burst of launches, 0.4 s long
            keeper.poke()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.8)
        # The burst came within 0.5 s of the first check and lasted 0.4 s: one check
        # after the spacing serves it (two if the last pokes came during that check).
        assert 2 <= len(keeper.checks) <= 3, keeper.checks
        gaps = [b - a for a, b in zip(keeper.checks, keeper.checks[1:], strict=False)]
        assert min(gaps) >= 0.45, gaps
    finally:
        stop.set()
        await running
