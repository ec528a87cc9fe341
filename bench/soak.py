"""Soak: exactly once under faults and kills, at full size (issue 15).

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/soak.py                       # 200 threads, ~2,000 deliveries
    .venv/bin/python bench/soak.py --threads 50 --duration 60 --kill-every 2
    .venv/bin/python bench/soak.py --help

Two `threadline serve` and two `threadline worker` processes on a fresh PostgreSQL schema
at 127.0.0.1:5432, a fake GitHub served by this process that fails --fault-rate of the
writes (half of them after applying the write), and a SIGKILL of a random process every
--kill-every seconds (restarted at once). tests/soak_harness.py does the run and the
tally; tests/test_soak.py is the same at CI size. It prints deliveries, sessions,
writes intended/delivered/duplicated/missing, kills and faults, then each problem found.
Target: every problem count zero. Exit status 1 when there is one.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import HERE, PG_ADMIN_URL, code_state, drop_pg_schema
from sqlalchemy import create_engine, text

if str(HERE.parent) not in sys.path:  # tests/ is not installed; it sits beside bench/
    sys.path.insert(0, str(HERE.parent))

from tests.soak_harness import Plan, soak


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=200, help="issues with a session each")
    parser.add_argument("--follow-ups", type=int, default=6, help="maintainer comments a thread")
    parser.add_argument("--outsiders", type=int, default=2, help="outsiders' comments a thread")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of sending")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="of the write requests")
    parser.add_argument("--after-share", type=float, default=0.5, help="of faults: after apply")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds; 0: no kills")
    parser.add_argument("--redeliver-share", type=float, default=0.1)
    parser.add_argument("--quiesce-within", type=float, default=300.0, help="seconds")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the process logs' directory")
    return parser.parse_args()


async def main() -> int:
    args = parse_args()
    plan = Plan(
        threads=args.threads,
        follow_ups=args.follow_ups,
        outsiders=args.outsiders,
        duration=args.duration,
        fault_rate=args.fault_rate,
        after_share=args.after_share,
        kill_every=args.kill_every or None,
        redeliver_share=args.redeliver_share,
        quiesce_within=args.quiesce_within,
        seed=args.seed,
    )
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    workdir = Path(tempfile.mkdtemp(prefix="threadline-soak-"))
    print(f"code: {code_state()}")
    print(f"plan: {plan.deliveries} deliveries over {plan.threads} threads; logs in {workdir}")
    started = time.monotonic()
    try:
        report = await soak(
            plan,
            f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}",
            workdir,
            progress=lambda line: print(f"[{time.monotonic() - started:6.0f} s] {line}"),
        )
    finally:
        drop_pg_schema(schema)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.render(limit=25))
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
