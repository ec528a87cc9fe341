"""/api/v1 launch benchmark: launch latency, CPU a launch and sustained launches a second.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/api.py                          # SQLite, 20 launches/s, 4 s
    .venv/bin/python bench/api.py --backends sqlite,postgres --rate 40 --seconds 20
    .venv/bin/python bench/api.py --threadline /work/main/.venv/bin/threadline  # other code

Each backend runs `threadline serve --playground --workers 1` on a fresh database on a
free loopback port, with the built-in `echo` agent (script engine) and room for any
number of live sessions (a threadline.yml of `sessions: maxLiveSessions`). Phases, each
printed on its own line:

  health    the baseline: GET /api/v1/health open loop at --rate (a Bearer request that
            reads the database once): client time p50, p99, and the server's CPU a request
  launch    POST /api/v1/sessions open loop at --rate, once per kind of thread in
            --threads: `headless` (no host: nothing is written anywhere but the database)
            and `issue` (each launch on a playground issue of its own, opened before the
            phase: the session's status comment and reply go through the outbox to the
            playground's tables, so a host without a network's latency). Printed:
              POST->201         client time from sending the POST to its 201, whose body
                                is the session: it, its task input and its first event,
                                `launched`, are committed by then (p50, p99)
              launched->turn    server time from the `launched` event to the first turn's
                                `turn_started`, from the transcript afterwards (p50, p99)
              cpu               the server's CPU (all threads, /proc) from the phase's
                                start until it is quiet again, divided by the launches;
                                and its ratio to the health request's
  closed    --clients clients launching headless sessions back to back for
            --closed-seconds: launches answered 201 a second, and launches a second
            counted until the server is quiet again (their first turns run: the rate
            that can be sustained), with POST->201 p50, p99 and CPU a launch

CPU figures are per process and so hold up on a busy machine better than the latencies;
the load average is printed with each backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
from sqlalchemy import create_engine, text

from bot.hosts.local_store import PlaygroundStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PG_ADMIN_URL,
    code_state,
    drop_pg_schema,
    percentile_ms,
    process_cpu_seconds,
    threadline_command,
)

TOKEN = "bench-operator-token-0123456789"
REPO = "playground/demo"
CONFIG = "sessions:\n  maxLiveSessions: 1000000\n  keepSessionOpenForComments: true\n"
QUIET_WINDOW = 0.5  # seconds
QUIET_CPU = 0.03  # CPU seconds in a window below which the server counts as quiet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database(backend: str, workdir: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'api.db'}", None
    schema = f"bench_api_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_ADMIN_URL)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", schema


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not come up")


async def until_quiet(pid: int, most: float = 60.0) -> tuple[float, float]:
    """Wait until the server uses under QUIET_CPU in a QUIET_WINDOW; its CPU seconds
    then, and when (perf_counter) its last busy window ended."""
    deadline = time.monotonic() + most
    before = process_cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIET_WINDOW)
        now = process_cpu_seconds(pid)
        if now - before < QUIET_CPU:
            return now, time.perf_counter() - QUIET_WINDOW
        before = now
    return process_cpu_seconds(pid), time.perf_counter()


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    failed: int = 0
    cpu: float = 0.0  # server CPU seconds over the phase
    wall: float = 0.0  # seconds the requests took
    settled: float = 0.0  # seconds until the server was done with them (turns included)


Request = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[int, Any]]]


def open_issues(database_url: str, count: int) -> list[int]:
    """`count` new playground issues (the server has seeded the playground by now)."""
    engine = create_engine(database_url)
    try:
        store = PlaygroundStore(engine)
        return [
            store.open_issue(REPO, title=f"bench {n}", body="", author="maintainer").number
            for n in range(count)
        ]
    finally:
        engine.dispose()


def launch_body(number: int | None, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {"task": f"bench launch {n}"}
    if number is not None:
        body["thread"] = {"host": "local", "repo": REPO, "kind": "issue", "number": number}
    return body


def launcher(issues: list[int] | None = None) -> Request:
    """Headless launches, or (with `issues`) the n-th launch on the n-th issue."""

    async def post(http: aiohttp.ClientSession, n: int) -> tuple[int, Any]:
        url = http.bench_url  # type: ignore[attr-defined]
        body = launch_body(issues[n] if issues else None, n)
        async with http.post(url + "/api/v1/sessions", json=body) as r:
            return r.status, await r.json()

    return post


async def health(http: aiohttp.ClientSession, _number: int) -> tuple[int, Any]:
    async with http.get(http.bench_url + "/api/v1/health") as r:  # type: ignore[attr-defined]
        return r.status, await r.json()


def client(url: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TOKEN}"},
        connector=aiohttp.TCPConnector(limit=0),
    )
    http.bench_url = url  # type: ignore[attr-defined]
    return http


async def timed(http: aiohttp.ClientSession, request: Request, n: int, out: Outcome) -> None:
    start = time.perf_counter()
    status, answer = await request(http, n)
    if status in (200, 201):
        out.latencies.append(time.perf_counter() - start)
        if isinstance(answer, dict) and "id" in answer:
            out.ids.append(answer["id"])
    else:
        out.failed += 1


async def open_loop(url: str, pid: int, request: Request, rate: float, seconds: float) -> Outcome:
    """`rate` requests a second for `seconds`, each sent on time whatever the others do."""
    out = Outcome()
    async with client(url) as http:
        await until_quiet(pid)
        cpu = process_cpu_seconds(pid)
        begin = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed(http, request, n, out)))
        await asyncio.gather(*tasks)
        out.wall = time.perf_counter() - begin
        done, at = await until_quiet(pid)
        out.cpu, out.settled = done - cpu, at - begin
    return out


async def closed_loop(url: str, pid: int, clients: int, seconds: float) -> Outcome:
    """`clients` clients, each launching again as soon as its launch is answered."""
    out = Outcome()
    post = launcher()
    async with client(url) as http:
        await until_quiet(pid)
        cpu = process_cpu_seconds(pid)
        begin = time.perf_counter()
        end = begin + seconds
        counter = iter(range(10**9))

        async def one_client() -> None:
            while time.perf_counter() < end:
                await timed(http, post, next(counter), out)

        await asyncio.gather(*(one_client() for _ in range(clients)))
        out.wall = time.perf_counter() - begin
        done, at = await until_quiet(pid)
        out.cpu, out.settled = done - cpu, at - begin
    return out


def turn_delays(database_url: str, ids: list[str]) -> list[float]:
    engine = create_engine(database_url)
    delays = []
    with engine.connect() as conn:
        for sid in ids:
            rows = conn.execute(
                text(
                    "SELECT kind, at FROM transcript_events WHERE session_id = :s AND kind IN "
                    "('launched', 'turn_started') ORDER BY id"
                ),
                {"s": sid},
            ).all()
            at = {kind: when for kind, when in reversed(rows)}
            if "launched" in at and "turn_started" in at:
                first, second = at["launched"], at["turn_started"]
                if isinstance(first, str):
                    first, second = datetime.fromisoformat(first), datetime.fromisoformat(second)
                delays.append((second - first).total_seconds())
    engine.dispose()
    return delays


def start_server(
    env: dict[str, str], port: int, log_path: Path, threadline: str | None
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log = log_path.open("wb")
    command = [*threadline_command(threadline), "serve", "--playground", "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def per_ms(out: Outcome) -> float:
    return 1000 * out.cpu / max(len(out.latencies), 1)


def latency(out: Outcome) -> str:
    return (
        f"p50 {percentile_ms(out.latencies, 0.5):.1f} ms p99 "
        f"{percentile_ms(out.latencies, 0.99):.1f} ms"
    )


async def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url_db, schema = database(backend, Path(tmp))
        config = Path(tmp) / "threadline.yml"
        config.write_text(CONFIG)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_DATABASE_URL=url_db,
            THREADLINE_CONFIG=str(config),
            THREADLINE_OPERATOR_TOKEN=TOKEN,
            THREADLINE_GITHUB_WEBHOOK_SECRET="bench-secret-0123456789",  # noqa: S106
            THREADLINE_LOG_LEVEL="WARNING",
            THREADLINE_OUTBOX_MAX_ATTEMPTS="1",
        )
        url = f"http://127.0.0.1:{port}"
        proc, log = start_server(env, port, Path(tmp) / "serve.log", args.threadline)
        lines = []
        try:
            async with client(url) as http:
                await wait_healthy(http, url)
            base = await open_loop(url, proc.pid, health, args.rate, args.seconds)
            lines.append(
                f"  health    {len(base.latencies)} ({base.failed} not 200) at {args.rate:g}/s: "
                f"{latency(base)}; cpu {per_ms(base):.1f} ms a request"
            )
            for kind in args.threads.split(","):
                issues = None
                if kind == "issue":
                    count = int(args.rate * args.seconds)
                    issues = await asyncio.to_thread(open_issues, url_db, count)
                post = launcher(issues)
                out = await open_loop(url, proc.pid, post, args.rate, args.seconds)
                turns = turn_delays(url_db, out.ids)
                lines.append(
                    f"  launch    {kind:<8} {len(out.latencies)} ({out.failed} not 201) at "
                    f"{args.rate:g}/s: POST->201 {latency(out)}; launched->turn p50 "
                    f"{percentile_ms(turns, 0.5):.1f} ms p99 {percentile_ms(turns, 0.99):.1f} ms "
                    f"({len(turns)} turns); cpu {per_ms(out):.1f} ms a launch "
                    f"({per_ms(out) / max(per_ms(base), 1e-9):.1f}x health)"
                )
            if args.clients:
                out = await closed_loop(url, proc.pid, args.clients, args.closed_seconds)
                lines.append(
                    f"  closed    {args.clients} clients for {args.closed_seconds:g} s: "
                    f"{len(out.latencies) / out.wall:.1f} launches/s answered, "
                    f"{len(out.latencies) / max(out.settled, out.wall):.1f}/s with their first "
                    f"turns done ({out.failed} not 201); POST->201 {latency(out)}; "
                    f"cpu {per_ms(out):.1f} ms a launch"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
            if schema:
                drop_pg_schema(schema)
    print(f"{backend} (load average {load_average()}):")
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    parser.add_argument("--rate", type=float, default=20.0, help="launches a second")
    parser.add_argument("--seconds", type=float, default=4.0, help="each open-loop phase")
    parser.add_argument(
        "--threads", default="headless,issue", help="kinds of launch: headless,issue"
    )
    parser.add_argument("--clients", type=int, default=4, help="closed loop (0: none)")
    parser.add_argument("--closed-seconds", type=float, default=5.0)
    parser.add_argument(
        "--threadline", help="the threadline command to measure (default: this venv's)"
    )
    args = parser.parse_args()
    print(f"code: {code_state()}" + (f" (server: {args.threadline})" if args.threadline else ""))
    for backend in args.backends.split(","):
        asyncio.run(run_backend(backend.strip(), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
