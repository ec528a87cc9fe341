"""A background loop that cannot reach the database says so once, then rarely, and says
when it is back; never with a traceback per poll, never with the driver's message."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import Engine, text

from bot.db import make_engine
from bot.db.outage import Outage
from bot.inbox import Inbox
from bot.router import Router
from tests.test_thread_order import worker

UNREACHABLE = "postgresql+psycopg://secret-user@127.0.0.1:1/test?connect_timeout=2"


def unreachable_error() -> Exception:
    engine = make_engine(UNREACHABLE)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("port 1 answered")


def test_an_outage_is_one_warning_then_one_line_in_a_while_then_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = logging.getLogger("tests.outage")
    outage = Outage(log, "worker w-1", clock=lambda: now[0])
    exc = unreachable_error()
    caplog.set_level(logging.DEBUG, logger="tests.outage")
    outage.ok()  # nothing to say while all is well
    for _ in range(50):  # a poll every 0.5 s for 25 s
        outage.failed(exc, "claim deliveries")
        now[0] += 0.5
    outage.failed(exc, "claim deliveries")  # 25 s
    now[0] += 6
    outage.failed(exc, "claim deliveries")  # 31 s: one more line
    outage.failed(exc, "claim deliveries")
    now[0] += 4
    outage.ok()
    outage.ok()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "WARNING",
            "worker w-1 could not claim deliveries: database unreachable: connection "
            "refused (OperationalError); trying again until it is back",
        ),
        (
            "WARNING",
            "worker w-1: database still unreachable: connection refused "
            "(OperationalError) (for 31 s)",
        ),
        ("INFO", "worker w-1: database reachable again after 35 s"),
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert "secret-user" not in caplog.text


def test_a_bug_is_still_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(logging.getLogger("tests.outage"), "worker w-1")
    try:
        raise KeyError("oops")
    except KeyError as exc:
        outage.failed(exc, "claim deliveries")
    (record,) = caplog.records
    assert record.levelname == "ERROR"
    assert record.exc_info is not None


async def test_a_worker_without_its_database_logs_once_not_every_poll(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    down = make_engine(UNREACHABLE)
    try:
        idle = worker(Inbox(down), Router(), engine)  # polls every 0.01 s
        stop = asyncio.Event()
        caplog.set_level(logging.INFO, logger="bot.worker")
        task = asyncio.create_task(idle.run(stop))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        down.dispose()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "database unreachable: connection refused" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert "secret-user" not in caplog.text


def test_pooled_postgres_connections_the_server_ended_are_replaced_at_checkout() -> None:
    """The server ends every pooled connection (a restart, say): the next reads, in a
    transaction and in autocommit, get new connections instead of failing."""
    import time
    import uuid

    from bot.db import reading
    from tests.conftest import end_backends, postgres_schema

    with postgres_schema() as url:
        marker = f"tl_pool_{uuid.uuid4().hex[:8]}"
        engine = make_engine(f"{url}&application_name={marker}")
        try:
            with engine.connect() as first, engine.connect() as second:
                first.execute(text("SELECT 1"))
                second.execute(text("SELECT 1"))
            assert end_backends(url, marker) == 2
            time.sleep(0.2)  # the server's goodbye reaches the sockets
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 2")).scalar_one() == 2
            with reading(engine) as conn:
                assert conn.execute(text("SELECT 3")).scalar_one() == 3
        finally:
            engine.dispose()
