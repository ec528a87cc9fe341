"""SQLite checkpoints: ingress's commits leave them to a thread of their own (bot/db/checkpoint.py).

A page reaches the database file only when a checkpoint copies it out of the
write-ahead log, so the main file's size tells whether a checkpoint has run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.config import Settings
from bot.db import make_engine
from bot.db.checkpoint import Checkpointer, defer_checkpoints
from bot.delivery import IncomingDelivery
from bot.inbox import Inbox
from bot.ingress.writer import DeliveryWriter
from tests import payloads as p
from tests.conftest import Running, run_app, seed_schema
from tests.payloads import SECRET

BODY = b'{"filler": "' + b"x" * 5000 + b'"}'  # a row with an overflow page, as real ones


def delivery(body: bytes = BODY) -> IncomingDelivery:
    return IncomingDelivery(
        host="github",
        delivery_id=str(uuid.uuid4()),
        event="issue_comment",
        action="created",
        headers={"X-GitHub-Event": "issue_comment"},
        body=body,
        handled=True,
    )


@pytest.fixture
def db_file(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    path = tmp_path / "threadline.db"
    url = f"sqlite:///{path}"
    seed_schema(url)
    engine = make_engine(url)
    yield engine, path
    engine.dispose()


@dataclass
class Kept:
    """Ingress's kind of connection to the database file, and the file's size before."""

    engine: Engine
    path: Path
    inbox: Inbox
    connection: Any
    before: int

    def size(self) -> int:
        return self.path.stat().st_size


@pytest.fixture
def kept(db_file: tuple[Engine, Path]) -> Iterator[Kept]:
    # Tests assert while it is open: the last connection to close copies the log back
    # in any case.
    engine, path = db_file
    inbox = Inbox(engine)
    before = path.stat().st_size
    connection = inbox.ingress_connection()
    try:
        yield Kept(engine, path, inbox, connection, before)
    finally:
        connection.close()


def store_pages(inbox: Inbox, connection: Any, rows: int = 1200) -> None:
    """About 2,000 pages of log in commits of 10 rows: past SQLite's default of 1,000."""
    for _ in range(rows // 10):
        inbox.store_many([delivery() for _ in range(10)], connection=connection)


def wait_until(check: Any, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return bool(check())


def test_a_default_connection_checkpoints_in_its_own_commits(kept: Kept) -> None:
    # What ingress avoids: the commit that takes the log past 1,000 pages copies it back.
    store_pages(kept.inbox, kept.connection)
    assert kept.size() > kept.before + 2_000_000


def test_a_deferring_connection_leaves_the_log_to_the_checkpointer(kept: Kept) -> None:
    checkpointer = Checkpointer(kept.engine, delay=0.01)
    try:
        defer_checkpoints(kept.connection.dbapi_connection)
        store_pages(kept.inbox, kept.connection)
        assert kept.size() == kept.before, "a commit copied the log back itself"
        checkpointer.start()
        checkpointer.written()
        assert wait_until(lambda: checkpointer.checkpoints >= 1)
        assert kept.size() > kept.before + 2_000_000
        # Every row is readable from a new connection after the copy.
        assert kept.inbox.counts() == {"pending": 1200}
    finally:
        checkpointer.stop()


def test_the_backstop_bounds_the_log_without_a_checkpointer(kept: Kept) -> None:
    defer_checkpoints(kept.connection.dbapi_connection, backstop_pages=100)
    store_pages(kept.inbox, kept.connection, rows=100)  # about 170 pages
    assert kept.size() > kept.before + 200_000


def test_the_checkpointer_sleeps_until_written_and_stops_at_once(
    db_file: tuple[Engine, Path],
) -> None:
    engine, _ = db_file
    checkpointer = Checkpointer(engine, delay=0.01)
    checkpointer.start()
    time.sleep(0.1)
    assert checkpointer.checkpoints == 0  # nothing written, nothing run
    checkpointer.written()
    assert wait_until(lambda: checkpointer.checkpoints == 1)
    slow = Checkpointer(engine, delay=30)
    slow.start()
    slow.written()
    started = time.monotonic()
    slow.stop()  # inside its 30 s delay
    checkpointer.stop()
    assert time.monotonic() - started < 2
    assert slow.checkpoints == 0


def test_the_checkpointer_does_nothing_on_postgresql(engine: Engine) -> None:
    checkpointer = Checkpointer(engine, delay=0.01)
    checkpointer.start()
    checkpointer.written()
    if engine.dialect.name == "sqlite":
        assert wait_until(lambda: checkpointer.checkpoints == 1)
        checkpointer.stop()
    else:
        time.sleep(0.05)
        checkpointer.stop()
        assert not checkpointer.enabled
        assert checkpointer.checkpoints == 0


async def test_served_ingress_copies_the_log_back_soon_after_a_delivery(tmp_path: Path) -> None:
    # One delivery is far below any automatic checkpoint, so only the writer's
    # checkpointer can have put its pages into the database file.
    path = tmp_path / "served.db"
    served = Settings(database_url=f"sqlite:///{path}", port=0, github_webhook_secret=SECRET)
    # The file's size is no sign: a migration that rebuilds a table leaves free pages
    # the delivery can fill. Its own bytes in the main file are.
    token = f"checkpointed-{uuid.uuid4().hex}"
    async with run_app(served, workers=0) as app:
        assert token.encode() not in path.read_bytes()
        body = p.encode(p.issue_comment(token + "x" * 20_000))
        status = await _post(app, body)
        assert status == 202
        landed = await asyncio.to_thread(wait_until, lambda: token.encode() in path.read_bytes())
        assert landed, "the delivery's pages never reached the database file"


async def _post(app: Running, body: bytes) -> int:
    headers = p.github_headers("issue_comment", body)
    async with app.http.post(f"{app.url}/webhooks/github", data=body, headers=headers) as resp:
        return resp.status


async def test_the_delivery_writer_defers_its_checkpoints(db_file: tuple[Engine, Path]) -> None:
    engine, path = db_file
    before = path.stat().st_size
    writer = DeliveryWriter(Inbox(engine))
    writer.checkpointer.delay = 60  # it would copy the log back long after this test
    writer.start()
    try:
        for _ in range(60):
            await asyncio.gather(*(writer.store(delivery()) for _ in range(20)))
        # (before close: the last connection to close copies the log back itself)
        assert path.stat().st_size == before, "the writer's commits copied the log back"
    finally:
        await writer.close()
    assert Inbox(engine).counts() == {"pending": 1200}
