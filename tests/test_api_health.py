"""`GET /api/v1/health` over real HTTP: each host's state from the outbox (a host that
refuses every write is failing, and the whole answer degraded, not down), each
provider's from this process's model calls (a failing fake LLM, then a working one), and
the OpenAPI document's shape of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select

from bot.db.models import OutboxItem
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Failure, Reply
from tests.test_api import BOOTSTRAP, OTHER, THREAD
from tests.test_api import gh as gh  # the fixture rig needs: a second host
from tests.test_api_control import Rig, launch
from tests.test_api_control import llm as llm  # the fixture: the fake OpenAI server
from tests.test_api_control import rig as rig  # the fixture: the app with an LLM agent
from tests.test_sessions import eventually


async def health(rig: Rig) -> tuple[int, Any]:
    return await rig.call("GET", "/health", BOOTSTRAP)


def sent_to(rig: Rig, host: str) -> int:
    where = (OutboxItem.host == host, OutboxItem.status == "sent")
    with rig.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(*where)).scalar_one())


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def test_hosts_from_the_outbox(rig: Rig, gh: FakeGitHub) -> None:
    status, before = await health(rig)
    assert status == 200, before
    assert {"github", "local"} <= set(before["hosts"])  # what the settings set up
    assert before["hosts"]["github"]["state"] == "ok"
    assert before["hosts"]["github"]["waiting"] == 0

    # The playground takes its writes: "ok", with the time of the last one.
    await launch(rig, {"agent": "helper", "task": "hello", "thread": THREAD})
    await eventually(lambda: sent_to(rig, "local") > 0, "a playground write")
    _, now = await health(rig)
    assert now["hosts"]["local"]["state"] == "ok"
    assert now["hosts"]["local"]["last_sent_at"] is not None

    # GitHub refuses every comment write with a 502: they wait in retry, nothing has gone
    # through since, so GitHub is failing and the whole answer degraded (still 200).
    gh.fail("POST", r"/repos/.*/issues/\d+/comments$", 502, times=1000)
    await launch(rig, {"agent": "helper", "task": "hello", "thread": OTHER})

    async def github_failing() -> bool:
        _, answer = await health(rig)
        return bool(answer["hosts"]["github"]["state"] == "failing")

    await until(github_failing, "GitHub reported failing")
    status, answer = await health(rig)
    assert status == 200
    assert answer["state"] == "degraded"
    github = answer["hosts"]["github"]
    assert github["waiting"] >= 1  # the newest status version, never sent

    async def in_retry() -> bool:
        _, answer = await health(rig)
        return bool(answer["hosts"]["github"]["retrying"] >= 1)

    # Between a newer edit superseding an erring one and its own first error, nothing
    # is in retry for a moment; the host stays failing meanwhile.
    await until(in_retry, "a write waits in retry")
    assert github["oldest_waiting_since"] is not None
    assert github["last_sent_at"] is None
    assert answer["hosts"]["local"]["state"] == "ok"
    assert answer["database"] == {"state": "ok"}


async def test_providers_from_their_last_call(rig: Rig) -> None:
    _, before = await health(rig)
    assert set(before["providers"]) == {"fake", "other"}  # every configured provider
    calls = before["providers"]["fake"]["calls"]
    failures = before["providers"]["fake"]["failures"]

    rig.llm.enqueue(Failure(500, message="the model is down"))
    sid = await launch(rig, {"agent": "talker", "task": "hello"})
    await eventually(lambda: rig.state(sid) in ("failed", "idle", "closed"), "the turn ends")
    status, down = await health(rig)
    assert status == 200, down
    fake = down["providers"]["fake"]
    assert fake["state"] == "failing"
    assert fake["failures"] == failures + 1
    assert fake["calls"] == calls + 1
    assert fake["last_error"] == "ProviderError (HTTP 500)"
    assert "model is down" not in str(down)  # the provider's words stay out
    assert down["state"] == "degraded"

    rig.llm.enqueue(Reply(text=["fine again"]))
    again = await launch(rig, {"agent": "talker", "task": "hello again"})
    await eventually(lambda: rig.state(again) == "idle", "the turn ends")
    _, up = await health(rig)
    assert up["providers"]["fake"]["state"] == "ok"
    assert up["providers"]["fake"]["last_ok_at"] is not None
    assert up["providers"]["fake"]["failures"] == failures + 1
