"""Sessions across real processes: several workers share the sessions without running two
turns of one at once, and a killed process's session carries on after a restart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine

from bot.db import make_engine
from bot.sessions.store import SessionStore
from tests import payloads as p
from tests.fakes.github import FakeGitHub
from tests.procs import Proc, start
from tests.test_sessions import REPO, strip

pytestmark = pytest.mark.slow

AGENTS = """
agents:
  helper:
    engine: script
    script:
      - match: task
        do:
          - reply: "task: {input}"
      - when: '(?i)^slow'
        do:
          - sleep: 2.5
          - reply: "slow done: {input}"
      - do:
          - sleep: 0.2
          - reply: "heard: {input}"
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {maxDurationMinutes: TIME_LIMIT}
  idleExpiryMinutes: 10
"""


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        for number in (7, 8, 9):
            gh.add_issue(REPO, number)
        gh.set_permission(REPO, "maintainer", "write")
        yield gh


def env_for(gh: FakeGitHub, config: Path) -> dict[str, str]:
    return {
        "THREADLINE_GITHUB_APP_ID": str(gh.app_id),
        "THREADLINE_GITHUB_PRIVATE_KEY": gh.private_key_pem,
        "THREADLINE_GITHUB_API_URL": gh.url,
        "THREADLINE_GITHUB_REDELIVERY_MINUTES": "0",
        "THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS": "0",
        "THREADLINE_CONFIG": str(config),
    }


async def comment(gh: FakeGitHub, base: str, number: int, body: str) -> None:
    made = gh.add_issue_comment(REPO, number, body, login="maintainer")
    raw = p.encode(p.issue_comment(body, number=number, comment_id=made["id"]))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/webhooks/github", data=raw, headers=p.github_headers("issue_comment", raw)
        ) as resp,
    ):
        assert resp.status == 202, await resp.text()


def replies(gh: FakeGitHub, number: int) -> list[str]:
    return [
        strip(c["body"])
        for c in sorted(gh.issue_comments.values(), key=lambda c: c["id"])
        if c["_number"] == number
        and c["user"]["login"].endswith("[bot]")
        and not c["body"].startswith("**Threadline**")
    ]


async def eventually(check: Callable[[], bool], what: str, within: float = 40.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def turns_never_overlap(store: SessionStore, session_id: str) -> None:
    running = None
    for event in store.transcript(session_id):
        if event.kind == "turn_started":
            # The same turn again is a takeover of a dead runner's turn, not a second turn.
            assert running in (None, event.data["turn"]), (
                f"turn {event.data['turn']} began while turn {running} ran"
            )
            running = event.data["turn"]
        elif event.kind in ("turn_finished", "closed", "failed"):
            running = None


async def test_two_workers_share_sessions_one_turn_at_a_time(
    database_url: str, tmp_path: Path, procs: list[Proc], github: FakeGitHub
) -> None:
    config = tmp_path / "threadline.yml"
    config.write_text(AGENTS.replace("TIME_LIMIT", "10"), encoding="utf-8")
    env = env_for(github, config)
    web = start(procs, ["serve", "--workers", "0"], database_url, tmp_path, "web", env)
    base = web.wait_for(r"listening on (http://[\d.]+:\d+)").group(1)
    for name in ("worker-a", "worker-b"):
        start(procs, ["worker"], database_url, tmp_path, name, env)
    engine: Engine = make_engine(database_url)
    store = SessionStore(engine)
    try:
        for number in (7, 8, 9):
            await comment(github, base, number, f"@threadline task {number}")
        for n in range(4):
            await asyncio.gather(
                *(comment(github, base, number, f"note {n}") for number in (7, 8, 9))
            )
        for number in (7, 8, 9):
            await eventually(
                lambda number=number: len(replies(github, number)) >= 5,
                f"issue {number} answered",
            )
            # The four notes came in order, whichever worker ran which turn.
            heard = [r for r in replies(github, number) if r.startswith("heard")]
            assert heard == [f"heard: note {n}" for n in range(4)]
        # Two people say /done at once, twice: each session closes exactly once.
        await asyncio.gather(
            *(comment(github, base, number, "/done") for number in (7, 8, 9) for _ in range(2))
        )
        await eventually(lambda: store.count_live() == 0, "all sessions closed")
        await asyncio.sleep(0.5)
        sessions = store.recent()
        assert len(sessions) == 3
        runners = set()
        for session in sessions:
            assert (session.state, session.close_reason) == ("closed", "user_signal")
            turns_never_overlap(store, session.id)
            events = store.transcript(session.id)
            assert [e.kind for e in events].count("closed") == 1
            runners |= {e.data["runner"] for e in events if e.kind == "turn_started"}
        assert len(runners) >= 1
    finally:
        engine.dispose()


async def test_a_killed_process_s_session_carries_on_after_restart(
    database_url: str, tmp_path: Path, procs: list[Proc], github: FakeGitHub
) -> None:
    config = tmp_path / "threadline.yml"
    # The time limit counts working time now; idle expiry counts the calendar: 18 s.
    agents = AGENTS.replace("TIME_LIMIT", "10").replace(
        "idleExpiryMinutes: 10", "idleExpiryMinutes: 0.3"
    )
    config.write_text(agents, encoding="utf-8")
    env = env_for(github, config)
    first = start(procs, ["serve"], database_url, tmp_path, "first", env)
    base = first.wait_for(r"listening on (http://[\d.]+:\d+)").group(1)
    engine = make_engine(database_url)
    store = SessionStore(engine)
    try:
        await comment(github, base, 7, "@threadline keep going")
        await eventually(lambda: replies(github, 7) == ["task: keep going"], "the task reply")
        await eventually(lambda: store.recent()[0].state == "idle", "the first turn ends")
        await comment(github, base, 7, "slow one")
        await eventually(lambda: store.recent()[0].state == "busy", "the slow turn runs")
        await comment(github, base, 7, "queued meanwhile")
        await asyncio.sleep(0.3)
        first.stop(signal.SIGKILL)  # mid-turn, with a comment queued

        second = start(procs, ["serve"], database_url, tmp_path, "second", env)
        second.wait_for(r"listening on")
        await eventually(lambda: len(replies(github, 7)) >= 3, "the session carries on")
        await eventually(lambda: store.recent()[0].state != "busy", "the turns finish")
        assert replies(github, 7) == [
            "task: keep going",
            "slow done: slow one",
            "heard: queued meanwhile",
        ], "nothing lost, nothing doubled"
        [session] = store.recent()
        turns_never_overlap(store, session.id)
        # Its deadlines, kept in the database, still hold after the restart.
        await eventually(lambda: store.recent()[0].close_reason == "idle_expiry", "idle expiry")
        # In a thread: the fake GitHub it may still be writing to runs on this loop.
        assert await asyncio.to_thread(second.stop) == 0
    finally:
        engine.dispose()
