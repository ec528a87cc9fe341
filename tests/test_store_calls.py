"""`bot.db.calls.StoreCalls`: where a short store call runs (inline on SQLite, in a worker
thread on PostgreSQL), that a loop of inline calls lets other tasks run, and that a task
cancelled before its turn never runs its call."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import Engine

from bot.db.calls import StoreCalls


async def test_sqlite_runs_calls_on_the_loop_thread_postgresql_in_a_worker_thread(
    engine: Engine,
) -> None:
    calls = StoreCalls.for_engine(engine)
    ran_on = await calls(threading.get_ident)
    on_loop = ran_on == threading.get_ident()
    assert calls.inline is (engine.dialect.name == "sqlite")
    assert on_loop is calls.inline


async def test_a_loop_of_inline_calls_lets_other_tasks_run() -> None:
    calls = StoreCalls(inline=True)
    ticks: list[int] = []

    async def other() -> None:
        for n in range(3):
            ticks.append(n)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    for _ in range(5):
        await calls(len, "abc")
    assert ticks == [0, 1, 2], "the other task ran between the calls"
    await task


async def test_a_call_cancelled_before_its_turn_never_runs() -> None:
    calls = StoreCalls(inline=True)
    ran: list[str] = []
    task = asyncio.create_task(calls(ran.append, "written"))
    await asyncio.sleep(0)  # the task starts and yields before its call
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert ran == []
