"""A real `threadline worker` killed with SIGKILL while it posts a status comment.

The kill comes after GitHub (the fake) applied the POST and before the worker saved the
comment's id; a newer version of the comment then goes out from another sender. There
is still exactly one comment with that marker, and the thread resumed within about one
outbox lease.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine

from bot import outbox as ob
from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts import Hosts
from bot.sender import Sender
from tests.fakes.github import FakeGitHub
from tests.procs import Proc, start

pytestmark = pytest.mark.slow

REPO = "octo-org/hello-world"
INSTALLATION = 77
ISSUE = ThreadRef("github", REPO, "issue", 7)
STATUS = "status:s-kill"
LEASE = 1.0


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(INSTALLATION, [REPO])
        gh.add_issue(REPO, 7)
        yield gh


async def eventually(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def test_a_worker_killed_after_posting_a_status_leaves_one_comment(
    database_url: str, engine: Engine, github: FakeGitHub, tmp_path: Path, procs: list[Proc]
) -> None:
    github.lose_response("POST", r"/repos/.*/issues/7/comments", "hang")  # applied, no answer
    box = ob.Outbox(engine)
    box.enqueue(ob.upsert(STATUS, 1, ISSUE, "queued", INSTALLATION))
    worker = start(
        procs,
        ["worker"],
        database_url,
        tmp_path,
        "worker",
        {
            "THREADLINE_GITHUB_APP_ID": str(github.app_id),
            "THREADLINE_GITHUB_PRIVATE_KEY": github.private_key_pem,
            "THREADLINE_GITHUB_API_URL": github.url,
            "THREADLINE_GITHUB_GRAPHQL_URL": github.graphql_url,
            "THREADLINE_HOST_TIMEOUT_SECONDS": "30",  # it would wait that long: kill it first
            "THREADLINE_OUTBOX_LEASE_SECONDS": str(LEASE),
            "THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS": "0",
        },
    )
    await eventually(lambda: github.markers()[STATUS] == 1, "the worker's POST was applied")
    await asyncio.sleep(LEASE)  # it renewed its lease meanwhile: the row is still its own
    [row] = box.recent()
    assert row.status == "sending"
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    killed = time.monotonic()

    box.enqueue(ob.upsert(STATUS, 2, ISSUE, "done", INSTALLATION))
    settings = Settings(
        github_app_id=github.app_id,
        github_private_key=github.private_key_pem,
        github_api_url=github.url,
        github_graphql_url=github.graphql_url,
        host_timeout_seconds=5.0,
    )
    async with aiohttp.ClientSession() as http:
        hosts = Hosts.from_settings(settings, http)
        sender = Sender(box, hosts.client, min_interval=0, lease_seconds=LEASE)
        try:
            while box.counts().get("pending") or box.counts().get("sending"):
                if not await sender.send_once():
                    await asyncio.sleep(0.02)
                assert time.monotonic() - killed < 20, box.counts()
        finally:
            hosts.close()
    resumed_within = time.monotonic() - killed
    assert github.markers()[STATUS] == 1, "the newer version edited the comment the dead one posted"
    [comment] = [c for c in github.issue_comments.values() if STATUS in c["body"]]
    assert comment["body"].startswith("done")
    assert box.counts() == {"sent": 1, "superseded": 1}
    assert resumed_within < LEASE + 2.0, resumed_within
