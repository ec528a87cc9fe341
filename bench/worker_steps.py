"""Where a worker's CPU per delivery goes: each step of a plain comment, timed alone.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/worker_steps.py                    # SQLite and PostgreSQL
    .venv/bin/python bench/worker_steps.py --db sqlite --backlog 2000
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/worker_steps.py   # other code

A fresh database (SQLite file, or a schema of its own on the local PostgreSQL) gets
--backlog plain GitHub comments of real size (bench/scaleout.py's backlog). Then the
steps a worker takes for them run in this thread, one after another, as the production
worker runs them with the production handlers' lookups, each timed with this thread's
CPU clock (time.thread_time: the driver's and SQLite's own work included, the
database server's not): per batch of 20 the look (`Worker.order_waiting`), the claim
and `Inbox.late`; per delivery normalizing it, its start, the live-session lookup
(`live_for`) and reading the comment for commands (`decide.Facts.read`). As in the
worker, a delivery's settle and its history insert (`CommentHistory.record_in`, a
write that waits for the settle) go in one transaction with the next delivery's start
(`Inbox.finish_and_start`): the `start` column; the batch's last settle is `finish`.
Printed: each step's CPU per delivery in ms, and their sum. The thread hops
between steps (asyncio.to_thread, about 0.05-0.1 ms each) and the worker's own loop
are not in the sum; bench/scaleout.py measures the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import code_state, scratch_database
from scaleout import backlog

from bot.config import Settings
from bot.decide import Facts
from bot.server import background, open_services

STEPS = ("look", "claim", "late", "prepare", "start", "live_for", "read", "finish")


def measure(url: str, count: int) -> dict[str, float]:
    settings = Settings(database_url=url, order_hold_seconds=0.0, github_webhook_secret="x" * 24)
    services = open_services(settings, migrate=True)
    inbox = services.inbox
    items = backlog(count, 200, 1)
    for start in range(0, count, 200):
        inbox.store_many(items[start : start + 200])
    spent: collections.Counter[str] = collections.Counter()

    def timed(step: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        result = call(*args, **kwargs)
        spent[step] += time.thread_time() - began
        return result

    async def drain() -> int:
        done = 0
        async with background(settings, services, 1) as crew:
            worker = crew.workers[0]
            runtime = services.runtime
            store = runtime.sessions.store  # type: ignore[attr-defined]
            while done < count:
                timed("look", worker.order_waiting)
                rows = timed("claim", inbox.claim, "bench", limit=20, lease_seconds=60)
                if not rows:
                    break
                timed("late", inbox.late, rows)
                handled: list[tuple[int, str, str | None]] = []
                writes: list[Any] = []
                for row in rows:
                    event = timed("prepare", worker.dispatcher.prepare, row).event
                    # As the worker does: the previous delivery's settle goes with this
                    # start, on one connection (Worker._start).
                    _, started = timed(
                        "start", inbox.finish_and_start, handled, row, "bench", writes=writes
                    )
                    if not started:
                        raise RuntimeError(f"delivery {row.pk} could not start")
                    # The history insert goes with the settle (Context.with_settle).
                    record = runtime.history.record_in
                    writes = [functools.partial(record, event=event, delivery_pk=row.pk)]
                    timed("live_for", store.live_for, event.thread.key)
                    timed(
                        "read",
                        Facts.read,
                        event,
                        config=runtime.config,
                        bot_names=runtime.bot_names,
                        request_id="bench",
                        delivery_id=row.delivery_id,
                    )
                    handled = [(row.pk, "done", "bench")]
                    done += 1
                # The batch's last, alone.
                timed("finish", inbox.finish_and_start, handled, None, "bench", writes=writes)
        return done

    try:
        done = asyncio.run(drain())
    finally:
        services.engine.dispose()
    return {step: spent[step] / done * 1000 for step in STEPS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres", help="default sqlite,postgres")
    parser.add_argument("--backlog", type=int, default=1000, help="deliveries (default 1000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"code: {code_state()}; load average {load} on {os.cpu_count()} CPUs")
    print(f"{'db':9}" + "".join(f"{s:>9}" for s in STEPS) + f"{'sum':>8}   ms CPU/delivery")
    with tempfile.TemporaryDirectory(prefix="threadline-steps-") as tmp:
        for kind in args.db.split(","):
            with scratch_database(kind, Path(tmp), "steps", args.backlog) as url:
                figures = measure(url, args.backlog)
            row = "".join(f"{figures[s]:9.3f}" for s in STEPS)
            print(f"{kind:9}{row}{sum(figures.values()):8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
