"""/api/v1 launch benchmark: launch latency and sustained launches a second.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/api.py                          # SQLite, 20 launches/s, 4 s
    .venv/bin/python bench/api.py --backends sqlite,postgres --rate 40 --seconds 20

Each backend runs `threadline serve --playground --workers 1` on a fresh database on a
free loopback port, with the built-in `echo` agent (script engine). Launches go out open
loop at --rate a second, each `POST /api/v1/sessions` on its own playground issue number
(those issues do not exist on the playground, so the sessions' writes fail fast with one
attempt: the measure is the API and the session runtime, not the host). Printed:

  launch    client time from sending the POST to its 201 (the session, its task input and
            its first transcript event, `launched`, are committed by then): p50, p99
  turn      server time from the `launched` event to the `turn_started` event of the
            first turn, read from the transcript afterwards: p50, p99
  rate      launches answered 201 a second over the phase, and any that were not
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
from pathlib import Path
from typing import IO

import aiohttp
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG_ADMIN_URL, code_state, drop_pg_schema, percentile_ms, threadline_command

TOKEN = "bench-operator-token-0123456789"


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


async def phase(url: str, rate: float, seconds: float) -> tuple[list[float], list[str], int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    ids: list[str] = []
    failed = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        await wait_healthy(http, url)

        async def one(number: int) -> None:
            nonlocal failed
            body = {
                "task": f"bench launch {number}",
                "thread": {
                    "host": "local",
                    "repo": "playground/demo",
                    "kind": "issue",
                    "number": 1000 + number,
                },
            }
            start = time.perf_counter()
            async with http.post(url + "/api/v1/sessions", json=body) as response:
                answer = await response.json()
            if response.status == 201:
                latencies.append(time.perf_counter() - start)
                ids.append(answer["id"])
            else:
                failed += 1

        tasks = []
        begin = time.perf_counter()
        count = int(rate * seconds)
        for n in range(count):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return latencies, ids, failed


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
                    from datetime import datetime

                    first, second = datetime.fromisoformat(first), datetime.fromisoformat(second)
                delays.append((second - first).total_seconds())
    engine.dispose()
    return delays


def start_server(
    env: dict[str, str], port: int, log_path: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log = log_path.open("wb")
    command = [*threadline_command(), "serve", "--playground", "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


async def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url_db, schema = database(backend, Path(tmp))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_DATABASE_URL=url_db,
            THREADLINE_OPERATOR_TOKEN=TOKEN,
            THREADLINE_GITHUB_WEBHOOK_SECRET="bench-secret-0123456789",  # noqa: S106
            THREADLINE_LOG_LEVEL="WARNING",
            THREADLINE_OUTBOX_MAX_ATTEMPTS="1",
        )
        proc, log = start_server(env, port, Path(tmp) / "serve.log")
        try:
            latencies, ids, failed = await phase(
                f"http://127.0.0.1:{port}", args.rate, args.seconds
            )
            await asyncio.sleep(2)  # let the first turns start
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        turns = turn_delays(url_db, ids)
        if schema:
            drop_pg_schema(schema)
    print(
        f"{backend:<9} launches {len(latencies)} ({failed} not 201) at {args.rate:g}/s: "
        f"POST->201 p50 {percentile_ms(latencies, 0.5):.1f} ms p99 {percentile_ms(latencies, 0.99):.1f} ms; "
        f"launched->turn_started p50 {percentile_ms(turns, 0.5):.1f} ms "
        f"p99 {percentile_ms(turns, 0.99):.1f} ms ({len(turns)} turns)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    parser.add_argument("--rate", type=float, default=20.0, help="launches a second")
    # The built-in agents allow 100 live sessions; echo sessions stay open, so keep
    # rate * seconds under 100 or later launches are closed for capacity (still 201).
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"code: {code_state()}")
    for backend in args.backends.split(","):
        asyncio.run(run_backend(backend.strip(), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
