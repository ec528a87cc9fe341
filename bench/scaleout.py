"""Scale-out benchmark: a stored backlog drained by 1, 2 and 4 `threadline worker` processes.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/scaleout.py                         # PostgreSQL, 1/2/4 processes
    .venv/bin/python bench/scaleout.py --db sqlite,postgres --processes 1
    .venv/bin/python bench/scaleout.py --rounds 3              # medians; on a busy machine
    .venv/bin/python bench/scaleout.py --help

For each database and process count, a fresh database (a SQLite file, or a schema of
its own on the local PostgreSQL at 127.0.0.1:5432, database `test`) is migrated and
N `threadline worker --workers 1` processes are started on it with the production
handlers and settings (THREADLINE_LOG_LEVEL=WARNING). Once they are idle (their
CPU has stopped growing: start-up is not counted), --backlog plain GitHub
`issue_comment` deliveries of real size (bench/payloads.py, 10-30 KB, no mention of
the bot: each is normalized, recorded in its thread's history, looked up for a live
session and settled) over --threads threads are stored not yet due, and one UPDATE
makes them all due at once. The workers drain them; the run ends when none is left
waiting.

Printed per run: deliveries per second and its ratio to one process; the workers'
CPU (user+system from /proc, all processes together) per delivery, less what the same
processes spend idle over as long (their sender, timers and polls, measured for 3 s
before the drain and shown apart as `(idle)`: on a busy machine a slow drain would
otherwise charge every delivery for the polling); on PostgreSQL the
CPU of the backends serving the workers (found by their application_name) and of
every PostgreSQL process (with the WAL writer and checkpointer) per delivery; the
machine's busy share of its cores; and lock waits, sampled every 0.1 s from
pg_stat_activity (backends of this run waiting on a heavyweight lock) and pg_locks
(locks not granted), and how many connections (backends) the workers opened. Then
the checks: every delivery settled once (done), none
failed, and each thread's deliveries started in their thread's order.

Targets (exit code 1 when one is missed): one process spends under 1 ms of CPU per
delivery (both databases); on PostgreSQL two processes drain at least 1.6x one
process's rate, unless the machine's cores were full (then the CPU split shows who
used them). bench/README.md keeps results and reads them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    PG_ADMIN_URL,
    code_state,
    drop_pg_schema,
    machine_busy_seconds,
    process_cpu_seconds,
    threadline_command,
)
from payloads import github_issue_comment
from sqlalchemy import Engine, create_engine, text

from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.delivery import IncomingDelivery
from bot.inbox import Inbox

TARGET_CPU_MS = 1.0
TARGET_TWO = 1.6
IDLE_SAMPLE = 3.0  # seconds the idle workers' CPU is measured over before the drain
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)  # stored not yet due: the workers see nothing


START = datetime(2026, 12, 4, tzinfo=UTC)


def backlog(count: int, threads: int, seed: int) -> list[IncomingDelivery]:
    """Plain comments, the n-th written n seconds into the day (each thread's in order)."""
    rng = random.Random(seed)

    def at(n: int) -> str:
        return (START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")

    return [
        IncomingDelivery(
            host="github",
            delivery_id=str(uuid.uuid4()),
            event="issue_comment",
            action="created",
            headers={"Content-Type": "application/json", "X-GitHub-Event": "issue_comment"},
            body=github_issue_comment(rng, n, number=1 + n % threads, mention=False, stamp=at(n)),
            handled=True,
        )
        for n in range(count)
    ]


@dataclass
class Run:
    db: str
    processes: int
    delivered: int = 0
    seconds: float = 0.0
    worker_cpu: float = 0.0  # seconds, all worker processes
    idle_cpu: float = 0.0  # seconds the same processes spend idle over as long (polling)
    backend_cpu: float = 0.0  # seconds, PostgreSQL backends serving the workers
    postgres_cpu: float = 0.0  # seconds, every PostgreSQL process
    machine_busy: float = 0.0  # % of one core over the drain
    samples: int = 0
    lock_wait_samples: int = 0  # samples with a backend of this run waiting on a Lock
    ungranted_max: int = 0
    connections: int = 0  # PostgreSQL backends the workers opened
    waits: Counter[str] = field(default_factory=Counter)  # wait_event of busy backends
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    def per_delivery_ms(self, seconds: float) -> float:
        return seconds / self.delivered * 1000 if self.delivered else float("nan")


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            found.append(int(entry.name))
    return found


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    return {pid: process_cpu_seconds(pid) for pid in pids}


def wait_idle(procs: list[subprocess.Popen[bytes]], within: float = 60.0) -> None:
    """Until the worker processes have started and stopped using CPU (start-up done)."""
    deadline = time.monotonic() + within
    last = -1.0
    time.sleep(1.0)
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited with {proc.returncode} during start-up")
        now = sum(process_cpu_seconds(p.pid) for p in procs)
        if now - last < 0.03 * len(procs):
            return
        last = now
        time.sleep(0.5)
    raise RuntimeError(f"the workers were still busy {within:g}s after starting")


def check(engine: Engine, expected: int) -> list[str]:
    """Every delivery done once, each thread's deliveries started in the thread's order."""
    problems = []
    with engine.connect() as conn:
        counts = dict(
            conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()
        )
        if counts != {"done": expected}:
            problems.append(f"statuses {counts}, expected {expected} done")
        twice = conn.execute(text("SELECT count(*) FROM deliveries WHERE attempts <> 1")).scalar()
        if twice:
            problems.append(f"{twice} deliveries started more than once")
        rows = conn.execute(
            text(
                "SELECT thread_key, started_at, event_time, received_at, id FROM deliveries"
                " ORDER BY thread_key, event_time, received_at, id"
            )
        ).all()
    last: dict[str, object] = {}
    disorder = 0
    for key, started, *_ in rows:
        if key in last and started is not None and last[key] is not None:
            disorder += started < last[key]  # type: ignore[operator]
        last[key] = started
    if disorder:
        problems.append(f"{disorder} deliveries started before an earlier one of their thread")
    return problems


class Sampler:
    """pg_stat_activity / pg_locks every 0.1 s for the backends named `app`."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.engine = create_engine(PG_ADMIN_URL, pool_size=1)
        self.pids: set[int] = set()

    def backends(self) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                {"a": self.app},
            ).scalars()
            return set(rows)

    def sample(self, run: Run) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE application_name = :a"
                ),
                {"a": self.app},
            ).all()
            ungranted = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.application_name = :a"
                ),
                {"a": self.app},
            ).scalar_one()
        run.samples += 1
        self.pids |= {r.pid for r in rows}
        if any(r.wait_event_type == "Lock" for r in rows):
            run.lock_wait_samples += 1
        run.ungranted_max = max(run.ungranted_max, int(ungranted))
        for r in rows:
            if r.state == "active" and r.wait_event_type:
                run.waits[f"{r.wait_event_type}:{r.wait_event}"] += 1

    def close(self) -> None:
        self.engine.dispose()


def database(kind: str, workdir: Path, tag: str) -> tuple[str, str | None]:
    """(URL for the workers, PostgreSQL schema or None)."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'{tag}.db'}", None
    schema = f"bench_scaleout_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}&application_name={tag}", schema


def measure(kind: str, processes: int, args: argparse.Namespace, workdir: Path) -> Run:
    tag = f"scaleout-{uuid.uuid4().hex[:8]}"
    url, schema = database(kind, workdir, tag)
    run = Run(kind, processes)
    engine = make_engine(url)
    sampler = Sampler(tag) if schema else None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(engine)
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env |= {
            "THREADLINE_DATABASE_URL": url.replace("postgresql+psycopg://", "postgresql://"),
            "THREADLINE_GITHUB_WEBHOOK_SECRET": "bench-scaleout-throwaway-secret-01234",
            "THREADLINE_LOG_LEVEL": "WARNING",
            "THREADLINE_WORKER_POLL_SECONDS": "0.2",
        }
        command = threadline_command(args.threadline)
        for n in range(processes):
            log = (workdir / f"{tag}-worker{n}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [*command, "worker", "--workers", "1", "--no-migrate"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        items = backlog(args.backlog, args.threads, args.seed)
        inbox = Inbox(engine, clock=lambda: FUTURE)
        for start in range(0, len(items), 200):
            inbox.store_many(items[start : start + 200])
        wait_idle(procs)
        idle_from = sum(process_cpu_seconds(p.pid) for p in procs)
        time.sleep(IDLE_SAMPLE)
        idle_rate = (sum(process_cpu_seconds(p.pid) for p in procs) - idle_from) / IDLE_SAMPLE
        pg = postgres_pids() if schema else []
        pg_before = cpu_of(pg)
        backends_before = cpu_of(list(sampler.backends())) if sampler else {}
        workers_before = sum(process_cpu_seconds(p.pid) for p in procs)
        machine_before = machine_busy_seconds()
        began = time.perf_counter()
        with engine.begin() as conn:  # everything falls due at once
            now = datetime.now(UTC) - timedelta(seconds=5)
            conn.execute(
                text("UPDATE deliveries SET received_at = :t, next_attempt_at = :t"), {"t": now}
            )
        left = args.backlog
        next_count = 0.0
        while time.perf_counter() - began < args.limit:
            if sampler:
                sampler.sample(run)
            if time.perf_counter() >= next_count:
                with engine.connect() as conn:
                    left = conn.execute(
                        text(
                            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'processing')"
                        )
                    ).scalar_one()
                next_count = time.perf_counter() + 0.25
                if not left:
                    break
            time.sleep(0.1)
        run.seconds = time.perf_counter() - began
        run.worker_cpu = sum(process_cpu_seconds(p.pid) for p in procs) - workers_before
        run.idle_cpu = idle_rate * run.seconds
        run.machine_busy = 100 * (machine_busy_seconds() - machine_before) / run.seconds
        if sampler:
            after = cpu_of(list(sampler.pids | set(backends_before)))
            run.backend_cpu = sum(c - backends_before.get(pid, 0.0) for pid, c in after.items())
            run.connections = len(sampler.pids | set(backends_before))
            pg_after = cpu_of(postgres_pids())
            run.postgres_cpu = sum(c - pg_before.get(pid, 0.0) for pid, c in pg_after.items())
        run.delivered = args.backlog - left
        if left:
            run.problems.append(f"{left} still waiting after {args.limit:g}s")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if sampler:
            sampler.close()
    try:
        run.problems += check(engine, args.backlog)
    finally:
        engine.dispose()
        if schema:
            drop_pg_schema(schema)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    return run


def report(runs: list[Run], args: argparse.Namespace) -> bool:
    print()
    print(
        f"{'db':8} {'procs':>5} {'per s':>7} {'x one':>6} {'range':>11} | "
        f"{'worker':>7} {'(idle)':>6} {'backends':>8} {'pg all':>7} ms CPU/delivery | {'busy%':>5} | "
        f"{'lock waits':>10} {'ungranted':>9} {'conns':>5}  top waits"
    )
    ok = True
    for kind in args.db:
        one = None
        for processes in args.processes:
            mine = [r for r in runs if r.db == kind and r.processes == processes]
            if not mine:
                continue
            rate = statistics.median(r.rate for r in mine)
            one = rate if processes == 1 else one
            med = statistics.median
            worker = med(r.per_delivery_ms(r.worker_cpu - r.idle_cpu) for r in mine)
            idle = med(r.per_delivery_ms(r.idle_cpu) for r in mine)
            backends = med(r.per_delivery_ms(r.backend_cpu) for r in mine)
            pg_all = med(r.per_delivery_ms(r.postgres_cpu) for r in mine)
            busy = med(r.machine_busy for r in mine)
            samples = sum(r.samples for r in mine)
            waited = sum(r.lock_wait_samples for r in mine)
            waits = sum((r.waits for r in mine), Counter()).most_common(3)
            spread = (
                f"{min(r.rate for r in mine):.0f}-{max(r.rate for r in mine):.0f}"
                if len(mine) > 1
                else ""
            )
            ratio = f"{rate / one:.2f}" if one else "-"
            pg = kind == "postgres"
            print(
                f"{kind:8} {processes:5d} {rate:7.0f} {ratio:>6} {spread:>11} | "
                f"{worker:7.2f} {idle:6.2f} {backends if pg else float('nan'):8.2f} "
                f"{pg_all if pg else float('nan'):7.2f}                 | {busy:5.0f} | "
                + (
                    f"{waited:>4}/{samples:<5} {max(r.ungranted_max for r in mine):9d} "
                    f"{max(r.connections for r in mine):5d}  "
                    + ", ".join(f"{w} {n}" for w, n in waits)
                    if pg
                    else ""
                )
            )
            if processes == 1:
                good = worker < TARGET_CPU_MS
                ok &= good
                print(
                    f"  [{'PASS' if good else 'FAIL'}] {kind}: one worker process spends "
                    f"{worker:.2f} ms CPU per delivery (target < {TARGET_CPU_MS:g})"
                )
            if processes == 2 and pg and one:
                good = rate / one >= TARGET_TWO
                full = busy > 170
                verdict = "PASS" if good else ("NOTE" if full else "FAIL")
                ok &= good or full
                print(
                    f"  [{verdict}] postgres: 2 processes {rate / one:.2f}x one (target >= "
                    f"{TARGET_TWO}x while the workers are the bottleneck; machine {busy:.0f}% "
                    "busy of 200%"
                    + ("; the cores were full, see the CPU split)" if full and not good else ")")
                )
    for r in runs:
        for problem in r.problems:
            ok = False
            print(f"  [FAIL] {r.db} {r.processes} processes: {problem}")
    return ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default="postgres", help="comma-separated: postgres, sqlite (default postgres)"
    )
    parser.add_argument(
        "--processes", default="1,2,4", help="worker process counts (default 1,2,4)"
    )
    parser.add_argument(
        "--backlog", type=int, default=3000, help="deliveries per run (default 3000)"
    )
    parser.add_argument("--threads", type=int, default=200, help="threads (default 200)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each this many times; medians (default 1)"
    )
    parser.add_argument(
        "--limit", type=float, default=120.0, help="seconds a drain may take at most (default 120)"
    )
    parser.add_argument("--seed", type=int, default=1, help="payload seed (default 1)")
    parser.add_argument(
        "--threadline", metavar="CMD", help="command that runs threadline (default: this venv's)"
    )
    args = parser.parse_args(argv)
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    if set(args.db) - {"postgres", "sqlite"}:
        parser.error("--db takes postgres and/or sqlite")
    args.processes = [int(p) for p in args.processes.split(",")]
    if not all(1 <= p <= 16 for p in args.processes) or not 1 <= args.rounds <= 10:
        parser.error("keep --processes in 1-16 and --rounds in 1-10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    one, five, _ = os.getloadavg()
    print(
        f"code: {code_state()}; backlog {args.backlog} plain comments over {args.threads} "
        f"threads; load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} CPUs"
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="threadline-scaleout-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for kind in args.db:
                for processes in args.processes:
                    run = measure(kind, processes, args, Path(tmp))
                    print(
                        f"round {round_no} {kind} {processes} processes: {run.rate:.0f}/s in "
                        f"{run.seconds:.1f}s, workers {run.per_delivery_ms(run.worker_cpu):.2f} "
                        f"ms CPU/delivery ({run.per_delivery_ms(run.idle_cpu):.2f} of it what "
                        f"idle workers spend as long), load average {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                    runs.append(run)
    return 0 if report(runs, args) else 1


if __name__ == "__main__":
    sys.exit(main())
