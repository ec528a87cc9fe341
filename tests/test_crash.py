"""A real `threadline` process killed with SIGKILL loses no acknowledged delivery.

The process under test is the installed CLI, started as a subprocess on a loopback
port; deliveries go to it over HTTP; after the kill a new process finishes the work.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine, func, select

from bot.db import make_engine
from bot.db.models import CommentRecord, Delivery
from tests import payloads as p

pytestmark = pytest.mark.slow


class Proc:
    def __init__(self, args: list[str], database_url: str, workdir: Path, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_DATABASE_URL=database_url,
            THREADLINE_GITHUB_WEBHOOK_SECRET=p.SECRET,
            THREADLINE_PORT="0",
            THREADLINE_WORKER_LEASE_SECONDS="1",
            THREADLINE_WORKER_POLL_SECONDS="0.05",
            THREADLINE_DELIVERY_RETRY_SECONDS="0",
        )
        self.log = workdir / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_for(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text(errors="replace"))
            if found:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not seen; log:\n{self.log.read_text(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout=20)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
            self._log_file.close()
        return code


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            proc.stop(signal.SIGKILL)


def start(procs: list[Proc], args: list[str], url: str, workdir: Path, name: str) -> Proc:
    proc = Proc(args, url, workdir, name)
    procs.append(proc)
    return proc


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
