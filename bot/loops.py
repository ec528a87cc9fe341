"""How background loops wait (until woken, told to stop, or a timeout) and repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def nap(wakeup: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, ending early when `wakeup` or `stop` is set.

    Loops clear `wakeup` *before* they look for work, then nap: a wake that comes while
    they look is still set when they nap, so the nap ends at once and nothing waits.
    """
    if wakeup.is_set() or stop.is_set():
        return
    waits = [asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


async def every(
    seconds: float,
    stop: asyncio.Event,
    job: Callable[[], Awaitable[object]],
    *,
    first: float | None = None,
) -> None:
    """Run `job` every `seconds` (the first time after `first`, default `seconds`) until
    `stop`; a failing run is logged and the next one still comes. A run in progress
    finishes before this returns, so shutdown never abandons one half-way."""
    delay = seconds if first is None else first
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        try:
            await job()
        except Exception:
            log.exception("periodic job %s failed", getattr(job, "__qualname__", job))
        delay = seconds
