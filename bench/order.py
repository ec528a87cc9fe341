"""Thread order benchmark: what keeping each thread's deliveries in order costs the worker.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/order.py                        # SQLite, 1,000 and 20,000
    .venv/bin/python bench/order.py --backlogs 1000,20000 --postgres

For each backlog a fresh database (a SQLite file in a temporary directory, or a fresh
schema on the local PostgreSQL) is filled with that many pending GitHub issue comments
over 200 threads, none of them worked out yet. Then --batches worker cycles are run
as `Worker.run_once` runs them, without handlers: the look at waiting deliveries
(`Inbox.unordered` of up to 200, normalize, `Inbox.set_order`), `Inbox.claim(limit=20)`,
`Inbox.late` for the batch, and per delivery `Inbox.start` and `Inbox.finish`. Medians
of wall time and this thread's CPU time are printed for each step.

Targets: `start` (the per-delivery statement that ordering and charging attempts
added) costs at most 2x `finish` (the per-delivery statement there was before) in CPU;
and with the larger backlogs, `start` stays within 2x of the baseline backlog's wall
time (it reads index entries of its own thread, not the queue). Exit code 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import code_state, scratch_database
from sqlalchemy import text

from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.delivery import IncomingDelivery
from bot.events import CommentEvent
from bot.inbox import Inbox
from bot.router import Context, Router
from bot.worker import Dispatcher

TARGET_RATIO = 2.0
THREADS = 200
STEPS = ("look", "claim", "late", "start", "finish")
START = datetime(2026, 12, 4, tzinfo=UTC)


def delivery(n: int) -> IncomingDelivery:
    """The n-th comment, written n seconds into the day: each thread's in store order."""
    at = (START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
    payload = {
        "action": "created",
        "issue": {"number": 1 + n % THREADS, "title": "t", "body": "b"},
        "comment": {
            "id": n,
            "body": "x" * 2000,
            "user": {"login": "maintainer", "id": 2, "type": "User"},
            "created_at": at,
            "updated_at": at,
        },
        "repository": {"full_name": "octo-org/hello-world"},
        "sender": {"login": "maintainer", "id": 2, "type": "User"},
        "installation": {"id": 4242},
    }
    return IncomingDelivery(
        host="github",
        delivery_id=str(uuid.uuid4()),
        event="issue_comment",
        action="created",
        headers={"X-GitHub-Event": "issue_comment", "Content-Type": "application/json"},
        body=json.dumps(payload).encode(),
        handled=True,
    )


def database(kind: str, workdir: Path, backlog: int) -> AbstractContextManager[str]:
    return scratch_database(kind, workdir, "order", backlog)


def dispatcher() -> Dispatcher:
    router = Router()

    @router.register(CommentEvent)
    async def handle(event: CommentEvent, ctx: Context) -> None:
        """Never run: the benchmark settles deliveries without handling them."""

    return Dispatcher(router, None, ("threadline",))  # type: ignore[arg-type]


def measure(url: str, backlog: int, batches: int) -> dict[str, list[tuple[float, float]]]:
    engine = make_engine(url)
    times: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}

    def timed(step: str, call: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        result = call()
        times[step].append((time.perf_counter() - wall, time.thread_time() - cpu))
        return result

    try:
        upgrade(engine)
        inbox = Inbox(engine)
        for start in range(0, backlog, 200):  # ingress's largest batch: one time received
            inbox.store_many([delivery(n) for n in range(start, min(start + 200, backlog))])
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE deliveries"))
        prepare = dispatcher().prepare

        def look() -> None:
            rows = inbox.unordered(limit=200)
            inbox.set_order([prepare(row).order for row in rows])

        for _ in range(batches):
            timed("look", look)
            rows = timed("claim", lambda: inbox.claim("bench", limit=20, lease_seconds=600))
            assert len(rows) == 20, "the backlog ran out"
            assert all(row.thread_key for row in rows), "the look left a claimed row unknown"
            rows.sort(key=lambda row: row.order)
            late = timed("late", lambda rows=rows: inbox.late(rows))
            assert not late
            for row in rows:
                assert timed("start", lambda row=row: inbox.start(row, "bench"))
                assert timed("finish", lambda row=row: inbox.finish(row.pk, "bench", "done"))
        return times
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backlogs",
        default="1000,20000",
        help="pending deliveries, comma-separated; the first is the baseline (default 1000,20000)",
    )
    parser.add_argument(
        "--batches", type=int, default=30, help="worker cycles timed per backlog (default 30)"
    )
    parser.add_argument("--postgres", action="store_true", help="also measure the local PostgreSQL")
    args = parser.parse_args(argv)
    backlogs = [int(b) for b in args.backlogs.split(",")]
    if any(b < 20 * args.batches for b in backlogs):
        parser.error(f"each backlog needs at least {20 * args.batches} deliveries")
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    print(f"code: {code_state()}; {args.batches} cycles of 20, medians in ms (wall / cpu)")
    print(f"{'db':9} {'backlog':>8} " + " ".join(f"{step:>13}" for step in STEPS))
    ok = True
    with tempfile.TemporaryDirectory(prefix="threadline-order-") as tmp:
        for kind in kinds:
            base = None
            for backlog in backlogs:
                with database(kind, Path(tmp), backlog) as url:
                    times = measure(url, backlog, args.batches)
                medians = {
                    step: (
                        statistics.median(w for w, _ in times[step]) * 1000,
                        statistics.median(c for _, c in times[step]) * 1000,
                    )
                    for step in STEPS
                }
                cells = " ".join(f"{w:6.2f} /{c:5.2f}" for w, c in medians.values())
                print(f"{kind:9} {backlog:8d} {cells}", flush=True)
                base = base or medians["start"][0]
                ok &= medians["start"][1] <= TARGET_RATIO * medians["finish"][1]
                ok &= medians["start"][0] <= TARGET_RATIO * base
    print(
        f"targets: start's cpu within {TARGET_RATIO}x finish's, start's wall within "
        f"{TARGET_RATIO}x the baseline backlog's: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
