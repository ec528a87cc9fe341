"""Recovery (issue 15, part 4): a thread that gets a thousand comments at once, a host
that rate-limits every write for a while, PostgreSQL restarted mid-run. Each through
real `threadline` processes and the fake GitHub; nothing lost, nothing doubled, the
service recovering by itself. The tallies are tests/soak_harness.py's."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Engine

from bot.db import make_engine
from tests.conftest import postgres_schema
from tests.pgcluster import private_cluster, unavailable
from tests.soak_harness import (
    AGENTS,
    MAINTAINER,
    ChaoticGitHub,
    Crew,
    Plan,
    Report,
    SecondaryRateLimit,
    Sender,
    process_env,
    quiesce,
    seed_fake,
    stuck,
    tally,
)

pytestmark = pytest.mark.slow


@dataclass
class Rig:
    gh: ChaoticGitHub
    crew: Crew
    sender: Sender
    engine: Engine
    plan: Plan
    http: aiohttp.ClientSession

    async def finish(self, within: float = 90.0) -> Report:
        report = Report(self.plan)
        report.not_quiescent = await quiesce(self.engine, within)
        if report.not_quiescent:
            report.stuck = await asyncio.to_thread(stuck, self.engine)
        report.crashed = self.crew.dead()
        return await asyncio.to_thread(tally, report, self.engine, self.gh, self.sender.sent)


@asynccontextmanager
async def rig(plan: Plan, url: str, workdir: Path) -> AsyncIterator[Rig]:
    config = workdir / "threadline.yml"
    config.write_text(AGENTS, encoding="utf-8")
    async with ChaoticGitHub() as gh:
        seed_fake(gh, plan)
        crew = Crew(url, workdir, process_env(gh, config, plan), plan)
        engine = make_engine(url)
        try:
            await crew.start(plan)
            async with aiohttp.ClientSession() as http:
                sender = Sender(gh, crew.web_urls(), random.Random(plan.seed))
                yield Rig(gh, crew, sender, engine, plan, http)
        finally:
            await asyncio.to_thread(crew.stop)
            engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.1)


async def test_a_thousand_comments_in_one_thread_arrive_once_each_in_order(
    tmp_path: Path,
) -> None:
    plan = Plan(threads=1, follow_ups=1000, outsiders=0, webs=1, workers=2, fault_rate=0)
    with postgres_schema() as url:
        async with rig(plan, url, tmp_path) as r:
            started = time.monotonic()
            await r.sender.comment(r.http, 1, "@threadline task t1", MAINTAINER, "mention")
            for n in range(1000):
                await r.sender.comment(r.http, 1, f"note {n}", MAINTAINER, "follow_up")
            await r.sender.comment(r.http, 1, "/done", MAINTAINER, "done")
            sending = time.monotonic() - started
            report = await r.finish(within=120)
    assert sending < 60, f"1,000 comments took {sending:.0f} s to send, not a minute"
    assert report.deliveries_stored == 1002
    assert report.sessions == 1
    assert report.writes_intended > 2  # the acknowledgement, the status and replies
    assert not report.problems(), report.render()


async def rate_limited_run(
    tmp_path: Path, *, seconds: int, max_attempts: int
) -> tuple[SecondaryRateLimit, Report, list[Any]]:
    """Four threads' comments while every write is refused with a secondary rate limit
    (Retry-After: 1) for `seconds`; the window, the tally and the write requests."""
    plan = Plan(
        threads=4,
        follow_ups=2,
        outsiders=0,
        webs=1,
        workers=1,
        fault_rate=0,
        extra_env={"THREADLINE_OUTBOX_MAX_ATTEMPTS": str(max_attempts)},
    )
    with postgres_schema() as url:
        async with rig(plan, url, tmp_path) as r:
            window = SecondaryRateLimit(until=time.monotonic() + seconds, retry_after=1)
            r.gh.chaos = window
            for number in range(1, plan.threads + 1):
                await r.sender.comment(
                    r.http, number, f"@threadline task t{number}", MAINTAINER, "mention"
                )
            for n in range(plan.follow_ups):
                for number in range(1, plan.threads + 1):
                    await r.sender.comment(r.http, number, f"note {n}", MAINTAINER, "follow_up")
            for number in range(1, plan.threads):  # the last thread stays open
                await r.sender.comment(r.http, number, "/done", MAINTAINER, "done")
            report = await r.finish(within=60)
            writes = r.gh.requests_to("POST", r"/repos/.*") + r.gh.requests_to(
                "PATCH", r"/repos/.*"
            )
    return window, report, writes


async def test_writes_resume_by_themselves_after_a_secondary_rate_limit(
    tmp_path: Path,
) -> None:
    # GitHub asks for a minute or so; here a second, for five of them.
    window, report, writes = await rate_limited_run(tmp_path, seconds=5, max_attempts=8)
    assert window.refused, "the host refused writes for a while"
    # Retry-After was heeded, for the installation: about one try a second, not a loop.
    assert len(window.refused) <= 10, f"{len(window.refused)} writes refused in 5 s"
    assert any(w.status < 300 for w in writes), "writes went through afterwards"
    assert not report.problems(), report.render()


async def test_waiting_out_a_long_rate_limit_uses_up_no_attempts(tmp_path: Path) -> None:
    """A rate limit that lasts longer than a write's attempts would take: the write was
    refused before anything was done, so waiting for the host is not a failed try, and
    no write fails for good because the host asked to wait."""
    window, report, _ = await rate_limited_run(tmp_path, seconds=6, max_attempts=3)
    assert len(window.refused) >= 4, "the limit outlasted three attempts"
    assert not report.problems(), report.render()


async def readiness(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    try:
        async with http.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, {"error": type(exc).__name__}


async def test_a_postgresql_restart_mid_run_loses_nothing_and_readyz_says_why(
    tmp_path: Path,
) -> None:
    problem = unavailable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to start a private PostgreSQL: {problem}")
        pytest.skip(f"no private PostgreSQL here: {problem}")
    plan = Plan(threads=6, follow_ups=3, outsiders=1, webs=1, workers=1, fault_rate=0)
    with private_cluster() as cluster:
        async with rig(plan, cluster.url, tmp_path) as r:
            base = r.crew.web_urls()[0]
            assert (await readiness(r.http, base))[0] == 200

            async def thread(number: int) -> None:
                await r.sender.comment(
                    r.http, number, f"@threadline task t{number}", MAINTAINER, "mention"
                )
                for n in range(plan.follow_ups):
                    await asyncio.sleep(0.4)
                    await r.sender.comment(r.http, number, f"note {n}", MAINTAINER, "follow_up")
                await r.sender.comment(r.http, number, "aside", "passerby", "outsider")
                if number % 2:
                    await r.sender.comment(r.http, number, "/done", MAINTAINER, "done")

            threads = asyncio.gather(*(thread(n) for n in range(1, plan.threads + 1)))
            await asyncio.sleep(1.0)
            # Writes in flight when the database goes: each is made at the host while
            # the sender cannot record that it was.
            r.gh.delay("POST", r"/repos/.*", 1.5, times=1000)
            r.gh.delay("PATCH", r"/repos/.*", 1.5, times=1000)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.stop, "fast")
            seen: list[tuple[int, dict[str, Any]]] = []

            async def says_why() -> bool:
                seen.append(await readiness(r.http, base))
                return seen[-1][0] == 503

            await eventually(says_why, "/readyz answers 503", within=20)
            assert seen[-1][1]["status"] == "unavailable"
            assert seen[-1][1]["database"].startswith("unreachable: "), seen[-1]
            await asyncio.sleep(3)  # down for a while, deliveries refused meanwhile
            r.gh.faults.clear()
            await asyncio.to_thread(cluster.start)

            async def ready() -> bool:
                return (await readiness(r.http, base))[0] == 200

            await eventually(ready, "/readyz answers 200 again", within=30)
            await threads
            report = await r.finish(within=90)
            restarts = dict(r.crew.incarnation)
    assert restarts == {"web0": 1, "worker0": 1}, "no process was restarted by hand"
    assert report.deliveries_stored == len(r.sender.sent)
    assert not report.problems(), report.render()
