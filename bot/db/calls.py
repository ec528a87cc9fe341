"""Where the event loop runs a short blocking store call: on its own thread for SQLite,
in a worker thread for PostgreSQL.

A store call (claim a turn, queue a status version, settle an outbox row) is a few
statements and one commit. On SQLite that is tens of microseconds of the database's own
work, and the hop through `asyncio.to_thread` costs several times more: a futex wake-up
of a pool thread, the GIL won back by turns with the event loop's thread, and the loop's
self-pipe to hear the answer (bench/README.md, sessions 11 and 13). SQLite's writers wait
for one another anyway (`bot.db.writers`), so the pool buys no parallel writes; it buys
the loop time to serve others while the call waits for the disk. For the short calls of
the hot paths that trade is the wrong way round, so `StoreCalls` runs them inline.

Inline is for calls whose size is bounded by one session, one thread or one outbox row.
Calls that can take long (a sweep of every live session, a search, a whole transcript)
keep `asyncio.to_thread`. PostgreSQL's calls always go to a thread: each statement waits
on the network, and a row lock may make one wait for another transaction. A worker's
claims follow the same rule by their size: inline while they stay small, in a thread
once a backlog makes them big (`bot.worker.QUIET_MOST`).

Before an inline call the loop is given one turn (`asyncio.sleep(0)`), so a loop of
store calls cannot starve the others, and a task cancelled there is cancelled before its
call runs, never between the call and its caller: a result is not dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

P = ParamSpec("P")
T = TypeVar("T")


class StoreCalls:
    """Runs blocking store calls for async code: inline (SQLite) or in a thread."""

    def __init__(self, inline: bool) -> None:
        self.inline = inline

    @classmethod
    def for_engine(cls, engine: Engine) -> StoreCalls:
        return cls(inline=engine.dialect.name == "sqlite")

    async def __call__(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.inline:
            return await asyncio.to_thread(func, *args, **kwargs)
        await asyncio.sleep(0)
        return func(*args, **kwargs)
