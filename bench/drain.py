"""Drain benchmark: how fast workers empty a backlog of one hot thread, or of many.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/drain.py                   # SQLite, 1 and 2 workers
    .venv/bin/python bench/drain.py --postgres        # also the local PostgreSQL

For each database, shape (--threads 1 and 100 by default) and worker count (1 and 2),
a fresh database gets --backlog pending GitHub issue comments (the n-th one written n
seconds into the day, so each thread's come in store order), none of them worked out
yet. Then that many `Worker`s (the production class, in this process, each looking,
claiming batches of 20, starting and settling every delivery) with a handler that does
nothing run until every delivery is settled or --limit seconds have passed. Printed:
deliveries handled per second, how many were left, how many times a delivery was
parked, and whether each thread was handled in order.

To measure other code (e.g. main before a change): `PYTHONPATH=/path/to/checkout
.venv/bin/python bench/drain.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import order
from common import code_state
from order import database, delivery
from sqlalchemy import text

from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.events import CommentEvent
from bot.inbox import Inbox
from bot.router import Context, Router
from bot.worker import Dispatcher, Worker


class Parks(logging.Handler):
    """Counts park log lines (INFO or DEBUG, whichever the code under test uses)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "parked" in record.getMessage():
            self.count += 1


async def drain(url: str, backlog: int, threads: int, workers: int, limit: float) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        upgrade(engine)
        inbox = Inbox(engine)
        order.THREADS = threads  # delivery(n) puts comment n in thread n % THREADS
        for start in range(0, backlog, 200):
            inbox.store_many([delivery(n) for n in range(start, min(start + 200, backlog))])
        handled: dict[int, list[int]] = {}
        router = Router()

        @router.register(CommentEvent)
        async def handle(event: CommentEvent, ctx: Context) -> None:
            handled.setdefault(event.thread.number, []).append(int(event.comment_id))

        dispatcher = Dispatcher(router, None, ("threadline",))  # type: ignore[arg-type]
        crew = [
            Worker(
                inbox,
                dispatcher,
                lease_seconds=30,
                poll_seconds=0.05,
                max_attempts=5,
                retry_seconds=1,
                name=f"w{n}",
            )
            for n in range(workers)
        ]
        parks = Parks()
        logging.getLogger("bot.worker").addHandler(parks)
        logging.getLogger("bot.worker").setLevel(logging.DEBUG)
        logging.getLogger("bot.worker").propagate = False  # count, do not print
        stop = asyncio.Event()
        began = time.perf_counter()
        tasks = [asyncio.create_task(w.run(stop)) for w in crew]
        left = backlog
        while time.perf_counter() - began < limit:
            await asyncio.sleep(0.2)
            with engine.connect() as conn:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'processing')"
                    )
                ).scalar_one()
            if not left:
                break
        elapsed = time.perf_counter() - began
        stop.set()
        await asyncio.gather(*tasks)
        logging.getLogger("bot.worker").removeHandler(parks)
        done = sum(len(ids) for ids in handled.values())
        return {
            "per_s": done / elapsed,
            "seconds": elapsed,
            "left": left,
            "parks": parks.count,
            "in_order": all(ids == sorted(ids) for ids in handled.values()),
        }
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1000, help="deliveries (default 1000)")
    parser.add_argument("--shapes", default="1,100", help="thread counts (default 1,100)")
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per run at most")
    parser.add_argument("--postgres", action="store_true", help="also the local PostgreSQL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    print(f"code: {code_state()}; backlog {args.backlog}, at most {args.limit:g} s a run")
    print(
        f"{'db':9} {'threads':>7} {'workers':>7} {'per s':>7} {'s':>6} {'left':>5} {'parks':>6} order"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="threadline-drain-") as tmp:
        for kind in kinds:
            for threads in (int(t) for t in args.shapes.split(",")):
                for workers in (int(w) for w in args.workers.split(",")):
                    with database(kind, Path(tmp), threads * 10 + workers) as url:
                        r = asyncio.run(drain(url, args.backlog, threads, workers, args.limit))
                    ok &= r["in_order"] and not r["left"]
                    print(
                        f"{kind:9} {threads:7d} {workers:7d} {r['per_s']:7.1f} "
                        f"{r['seconds']:6.1f} {r['left']:5d} {r['parks']:6d} "
                        f"{'yes' if r['in_order'] else 'NO'}",
                        flush=True,
                    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
