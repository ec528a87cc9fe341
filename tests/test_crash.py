"""A real `threadline` process killed with SIGKILL loses no acknowledged delivery.

The process under test is the installed CLI, started as a subprocess on a loopback
port; deliveries go to it over HTTP; after the kill a new process finishes the work.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine, func, select

from bot.db import make_engine
from bot.db.models import CommentRecord, Delivery
from tests import payloads as p
from tests.procs import Proc, start

pytestmark = pytest.mark.slow


async def send(base: str, count: int, offset: int = 0) -> list[str]:
    """Post `count` signed comments concurrently; return the delivery ids acknowledged 2xx."""

    async def one(http: aiohttp.ClientSession, n: int) -> str:
        body = p.encode(p.issue_comment(f"comment {n}", comment_id=10_000 + n))
        headers = p.github_headers("issue_comment", body, delivery=f"crash-{n}")
        async with http.post(f"{base}/webhooks/github", data=body, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
        return headers["X-GitHub-Delivery"]

    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(one(http, offset + n) for n in range(count))))


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {status: n for status, n in rows}


async def eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def wait_all_done(engine: Engine, total: int) -> None:
    await eventually(lambda: counts(engine).get("done", 0) == total, f"{total} are done")


def assert_each_processed_once(engine: Engine, ids: list[str]) -> None:
    with engine.connect() as conn:
        deliveries = conn.execute(select(Delivery.id, Delivery.delivery_id, Delivery.status)).all()
        recorded = conn.execute(select(CommentRecord.delivery_pk, CommentRecord.body)).all()
    assert sorted(d.delivery_id for d in deliveries) == sorted(ids)
    assert {d.status for d in deliveries} == {"done"}
    assert sorted(r.delivery_pk for r in recorded) == sorted(d.id for d in deliveries)
    assert len({r.body for r in recorded}) == len(ids)


async def test_acknowledged_deliveries_survive_a_kill_before_processing(
    database_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    web = start(procs, ["serve", "--workers", "0"], database_url, tmp_path, "web")
    base = web.wait_for(r"listening on (http://[\d.]+:\d+)").group(1)
    ids = await send(base, 40)
    assert web.stop(signal.SIGKILL) == -signal.SIGKILL

    engine = make_engine(database_url)
    try:
        assert counts(engine) == {"pending": 40}, "every acknowledged delivery is stored"
        worker = start(procs, ["worker"], database_url, tmp_path, "worker")
        await wait_all_done(engine, 40)
        assert worker.stop() == 0
        assert_each_processed_once(engine, ids)
    finally:
        engine.dispose()


async def test_a_kill_while_processing_loses_and_doubles_nothing(
    database_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    first = start(procs, ["serve", "--workers", "1"], database_url, tmp_path, "first")
    base = first.wait_for(r"listening on (http://[\d.]+:\d+)").group(1)
    engine = make_engine(database_url)
    try:
        ids = await send(base, 100)
        await eventually(lambda: bool(counts(engine).get("done")), "the worker is under way...")
        ids += await send(base, 50, offset=100)
        first.stop(signal.SIGKILL)  # ...and is killed mid-stream
        before = counts(engine)
        assert sum(before.values()) == 150
        assert before.get("done", 0) < 150, before
        second = start(procs, ["serve", "--workers", "2"], database_url, tmp_path, "second")
        second.wait_for(r"listening on")
        await wait_all_done(engine, 150)
        assert second.stop() == 0
        assert_each_processed_once(engine, ids)
    finally:
        engine.dispose()
