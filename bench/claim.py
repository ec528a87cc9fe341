"""Claim benchmark: what one worker claim costs as the queue of waiting deliveries grows.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/claim.py                       # SQLite, 1,000 and 20,000
    .venv/bin/python bench/claim.py --backlogs 1000,20000,100000 --postgres

For each backlog a fresh database (a SQLite file in a temporary directory, or a fresh
schema on the local PostgreSQL, analyzed as autovacuum would) is filled with that many
pending 5 KB deliveries, and
`Inbox.claim(limit=20)` is timed --claims times (wall and this thread's CPU). The
smallest backlog is the baseline of the same run: a claim should cost about the same
however long the queue is, so the target is each ratio to the baseline at most 2.0.
The exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from common import code_state, scratch_database
from sqlalchemy import text

from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.delivery import IncomingDelivery
from bot.inbox import Inbox

TARGET_RATIO = 2.0
BODY = b'{"action": "created", "comment": {"body": "' + b"x" * 5000 + b'"}}'


def delivery() -> IncomingDelivery:
    return IncomingDelivery(
        host="github",
        delivery_id=str(uuid.uuid4()),
        event="issue_comment",
        action="created",
        headers={"X-GitHub-Event": "issue_comment", "Content-Type": "application/json"},
        body=BODY,
        handled=True,
    )


def database(kind: str, workdir: Path, backlog: int) -> AbstractContextManager[str]:
    return scratch_database(kind, workdir, "claim", backlog)


def measure(url: str, backlog: int, claims: int) -> tuple[list[float], list[float]]:
    engine = make_engine(url)
    try:
        upgrade(engine)
        inbox = Inbox(engine)
        for start in range(0, backlog, 500):
            inbox.store_many([delivery() for _ in range(min(500, backlog - start))])
        if engine.dialect.name == "postgresql":
            # Autovacuum analyzes a table this size within a minute of filling it;
            # without statistics the planner takes the 20,000 rows for 10.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE deliveries"))
        inbox.claim("warm-up", limit=20, lease_seconds=600)
        walls, cpus = [], []
        for _ in range(claims):
            wall, cpu = time.perf_counter(), time.thread_time()
            rows = inbox.claim("bench", limit=20, lease_seconds=600)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
            assert len(rows) == 20, "the backlog ran out"
        return walls, cpus
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
        "--claims", type=int, default=30, help="claims timed per backlog (default 30)"
    )
    parser.add_argument("--postgres", action="store_true", help="also measure the local PostgreSQL")
    args = parser.parse_args(argv)
    backlogs = [int(b) for b in args.backlogs.split(",")]
    if any(b < 20 * (args.claims + 1) for b in backlogs):
        parser.error(f"each backlog needs at least {20 * (args.claims + 1)} deliveries")
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    print(f"code: {code_state()}; claim(limit=20) x {args.claims}, medians")
    print(f"{'db':9} {'backlog':>8} {'wall ms':>8} {'cpu ms':>7} {'x base':>7}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="threadline-claim-") as tmp:
        for kind in kinds:
            base = None
            for backlog in backlogs:
                with database(kind, Path(tmp), backlog) as url:
                    walls, cpus = measure(url, backlog, args.claims)
                wall, cpu = statistics.median(walls) * 1000, statistics.median(cpus) * 1000
                base = base or wall
                ratio = wall / base
                print(f"{kind:9} {backlog:8d} {wall:8.2f} {cpu:7.2f} {ratio:7.2f}", flush=True)
                ok &= ratio <= TARGET_RATIO
    print(
        f"target: each claim within {TARGET_RATIO}x the baseline backlog's: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
