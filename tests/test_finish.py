"""Stopping: a background loop that does not end is named, with where it waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.server import finish


async def test_a_loop_that_hangs_is_named_with_where_it_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def inner() -> None:
        await release.wait()

    async def stuck_loop() -> None:
        await inner()

    async def quick_loop() -> None:
        await asyncio.sleep(0)

    tasks = [asyncio.create_task(stuck_loop()), asyncio.create_task(quick_loop())]
    asyncio.get_running_loop().call_later(0.25, release.set)
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        await finish(tasks, report_every=0.1)
    named = [r.getMessage() for r in caplog.records if "still finishing" in r.getMessage()]
    assert named
    assert "stuck_loop" in named[0]
    assert "inner" in named[0]
    assert all("quick_loop" not in message for message in named)


async def test_a_loop_that_failed_raises_once_all_have_ended() -> None:
    async def broken() -> None:
        raise RuntimeError("broken loop")

    async def fine() -> None:
        await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(broken()), asyncio.create_task(fine())]
    with pytest.raises(RuntimeError, match="broken loop"):
        await finish(tasks, report_every=1.0)
    assert all(task.done() for task in tasks)
