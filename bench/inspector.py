"""Inspector benchmark: pages of a 10,000-event transcript against rendering it all at once.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/inspector.py
    .venv/bin/python bench/inspector.py --events 20000 --requests 100
    .venv/bin/python bench/inspector.py --help

It makes a fresh SQLite file holding one session with --events transcript events of
mixed kinds (streamed deltas in runs, tool calls and results, messages, inputs, turn
and write events), then starts a server subprocess on 127.0.0.1: the app exactly as
`threadline serve --workers 0` builds it (bot.web.create_app), plus one extra route
that only this benchmark adds, /bench/all/{id}, which renders the whole transcript
with the same template in one response: the baseline.

Over real HTTP, one request at a time, with an operator token, it times --requests
GETs (after a few warm-up ones) of the transcript's first page, a page in the middle,
its last page, and the session page; then --baseline-requests GETs of the whole
transcript. Each figure is the time from sending the request to the last byte of the
answer. The same for GET /healthz gives the loopback floor: what the client and the
connection add, so server time = figure - floor (at most).

Target: every page p99 under 1 s. The exit code is 0 when it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import code_state, percentile_ms

TOKEN = "bench-operator-token-0123456789"
VOCABULARY = (
    *("retry", "backoff", "error", "handler", "request", "response", "timeout", "queue"),
    *("session", "review", "diff", "line", "test", "fixture", "branch", "commit", "merge"),
    *("status", "thread", "agent", "token", "budget", "call"),
)
TARGET_SECONDS = 1.0


# ------------------------------------------------------------------ the data


def _words(rng: random.Random, n: int) -> str:
    vocab = VOCABULARY
    return " ".join(rng.choice(vocab) for _ in range(n))


def transcript(count: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """`count` events shaped like a long llm session: per turn an input, a run of deltas,
    tool calls with their results, a message and a write."""
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    turn = 0
    while len(events) < count:
        turn += 1
        events.append(("turn_started", {"turn": turn, "inputs": [turn], "runner": "bench"}))
        events.append(
            (
                "input",
                {"input": turn, "kind": "comment", "author": "maintainer", "body": _words(rng, 30)},
            )
        )
        for _ in range(rng.randint(3, 6)):
            for _ in range(rng.randint(10, 40)):
                events.append(
                    ("delta", {"turn": turn, "text": _words(rng, rng.randint(2, 8)) + " "})
                )
            tool = rng.choice(("read_file", "get_diff", "review_thread", "memory_read"))
            events.append(
                (
                    "tool_call",
                    {
                        "turn": turn,
                        "tool": tool,
                        "args": {"path": "src/retry.py", "line": rng.randint(1, 400)},
                    },
                )
            )
            events.append(
                (
                    "tool_result",
                    {
                        "turn": turn,
                        "tool": tool,
                        "ok": True,
                        "content": _words(rng, rng.randint(20, 300)),
                    },
                )
            )
        events.append(("message", {"turn": turn, "text": _words(rng, 60)}))
        events.append(
            (
                "write",
                {
                    "key": f"t{turn}.c1",
                    "kind": "comment",
                    "thread": "github:o/r/pulls/1",
                    "outbox": turn,
                },
            )
        )
        events.append(("turn_finished", {"turn": turn, "state": "idle"}))
    return events[:count]


def make_database(path: Path, events: int) -> tuple[str, str, int]:
    """A fresh SQLite file with one live session of `events` events; its URL and id."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from bot.clock import utcnow
    from bot.db import make_engine
    from bot.db.migrate import upgrade
    from bot.db.models import TranscriptEvent
    from bot.events import ThreadRef
    from bot.sessions.store import Launch, SessionOptions, SessionStore

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        store = SessionStore(engine)
        launched = store.launch(
            Launch(
                client_request_id="bench",
                thread=ThreadRef("github", "octo-org/hello-world", "pull", 1),
                installation_id=1,
                agent_id="reviewer",
                task="review the retry logic",
                started_by="maintainer",
                trigger_comment_id="1",
                trigger_url=None,
                options=SessionOptions(time_limit_minutes=600, lifetime_minutes=600),
            ),
            max_live=10,
        )
        sid = launched.session.id
        rows = transcript(events - 1)  # the launch recorded one
        start = utcnow().timestamp()
        with Session(engine) as db, db.begin():
            for offset in range(0, len(rows), 2000):
                chunk = rows[offset : offset + 2000]
                db.execute(
                    insert(TranscriptEvent),
                    [
                        {
                            "session_id": sid,
                            "at": datetime.fromtimestamp(start + (offset + i) * 0.05, UTC),
                            "kind": kind,
                            "data": data,
                        }
                        for i, (kind, data) in enumerate(chunk)
                    ],
                )
        middle = store.transcript(sid)[events // 2].id
    finally:
        engine.dispose()
    return url, sid, middle


# ------------------------------------------------------------------ the server


def serve(url: str, port: int) -> None:
    """The server subprocess: create_app as `serve` builds it, plus the baseline route."""
    from aiohttp import web

    from bot.app import create_app
    from bot.config import Settings
    from bot.server import open_services
    from bot.web.inspector import INSPECTOR, build_items, render_item
    from bot.web.render import render

    settings = Settings(database_url=url, port=port, operator_token=TOKEN, auto_migrate=False)
    services = open_services(settings, migrate=False)
    app = create_app(settings, inbox=services.inbox, scrubber=services.scrubber)

    async def everything(request: web.Request) -> web.StreamResponse:
        """The baseline: the whole transcript in one page, through the same template."""
        reads = request.app[INSPECTOR].reads
        sid = request.match_info["id"]
        state = await asyncio.to_thread(reads.state, sid)
        page = await asyncio.to_thread(lambda: reads.events(sid, limit=10**9))
        return render(
            request,
            "transcript.html",
            session_id=sid,
            state=state,
            page=page,
            items=build_items(page.events),
            first_id=page.events[0].id if page.events else None,
            last_id=page.events[-1].id if page.events else 0,
            live=False,
            render_item=render_item,
        )

    app.router.add_get("/bench/all/{id}", everything)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_server(url: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env["THREADLINE_LOG_LEVEL"] = "WARNING"
    return subprocess.Popen(
        [sys.executable, __file__, "--serve", url, "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ measuring


async def timed_gets(
    http: aiohttp.ClientSession, url: str, count: int, warmup: int
) -> tuple[list[float], int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    times: list[float] = []
    size = 0
    for n in range(warmup + count):
        began = time.perf_counter()
        async with http.get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {body[:200]!r}")
        if n >= warmup:
            times.append(time.perf_counter() - began)
            size = len(body)
    return times, size


async def wait_healthy(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not answer /healthz within 60 s")


async def measure(args: argparse.Namespace, base: str, sid: str, middle: int) -> bool:
    pages = [
        ("transcript, first page", f"/inspect/sessions/{sid}/transcript"),
        ("transcript, middle page", f"/inspect/sessions/{sid}/transcript?after={middle}"),
        ("transcript, last page", f"/inspect/sessions/{sid}/transcript?last=1"),
        ("session page", f"/inspect/sessions/{sid}"),
        ("API transcript, 200 events", f"/api/sessions/{sid}/transcript?after={middle}&limit=200"),
    ]
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        floor, _ = await timed_gets(http, f"{base}/healthz", args.requests, 5)
        results = []
        for name, path in pages:
            times, size = await timed_gets(http, base + path, args.requests, 5)
            results.append((name, times, size))
        everything, all_size = await timed_gets(
            http, f"{base}/bench/all/{sid}", args.baseline_requests, 1
        )

    print(
        f"\n{args.events} events in one session; {args.requests} requests per page, one at a time"
    )
    print(
        f"loopback floor (GET /healthz): p50 {percentile_ms(floor, 0.5):.1f} ms, p99 {percentile_ms(floor, 0.99):.1f} ms\n"
    )
    print(f"{'page':<30} {'p50 ms':>8} {'p99 ms':>8} {'KiB':>8}")
    ok = True
    for name, times, size in results:
        p50, p99 = percentile_ms(times, 0.5), percentile_ms(times, 0.99)
        ok = ok and p99 / 1000 < TARGET_SECONDS
        print(f"{name:<30} {p50:>8.1f} {p99:>8.1f} {size / 1024:>8.0f}")
    all_p50, all_p99 = percentile_ms(everything, 0.5), percentile_ms(everything, 0.99)
    print(
        f"{'baseline: all events at once':<30} {all_p50:>8.1f} {all_p99:>8.1f} {all_size / 1024:>8.0f}"
        f"   ({args.baseline_requests} requests)"
    )
    page_p50 = statistics.median(
        [percentile_ms(t, 0.5) for n, t, _ in results if n.startswith("transcript")]
    )
    print(
        f"\nall at once / a page (p50): {all_p50 / page_p50:.0f}x slower, "
        f"{all_size / max(results[0][2], 1):.0f}x larger"
    )
    print(f"target: every page p99 < {TARGET_SECONDS * 1000:.0f} ms: {'holds' if ok else 'MISSED'}")
    return ok


async def run(args: argparse.Namespace) -> bool:
    print(f"code: {code_state()}")
    with tempfile.TemporaryDirectory(prefix="threadline-bench-inspector-") as work:
        began = time.monotonic()
        url, sid, middle = await asyncio.to_thread(
            make_database, Path(work) / "inspector.db", args.events
        )
        print(f"made {args.events} events in {time.monotonic() - began:.1f} s")
        port = free_port()
        log = (Path(work) / "server.log").open("wb")
        proc = start_server(url, port, log)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_healthy(http, f"http://127.0.0.1:{port}", proc)
            return await measure(args, f"http://127.0.0.1:{port}", sid, middle)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=10_000, help="transcript events (default 10000)"
    )
    parser.add_argument(
        "--requests", type=int, default=50, help="timed requests per page (default 50)"
    )
    parser.add_argument(
        "--baseline-requests",
        type=int,
        default=10,
        help="timed requests of the whole transcript (default 10)",
    )
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    return 0 if asyncio.run(run(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
