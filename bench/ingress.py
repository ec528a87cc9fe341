"""Ingress benchmark: signed GitHub deliveries against Threadline and a non-durable baseline.

Run by hand (never in CI), from the repository root, on an otherwise idle machine:

    .venv/bin/python bench/ingress.py                 # all servers, defaults
    .venv/bin/python bench/ingress.py --seconds 5 --servers baseline,sqlite
    .venv/bin/python bench/ingress.py --help

Each server is started as its own subprocess on a free loopback port:

  baseline        bench/baseline_receiver.py: aiohttp + gidgethub signature check + JSON
                  parse, answers 202, stores nothing
  sqlite          `threadline serve --workers 0` on a fresh SQLite file (ingress only)
  sqlite-w1       the same with `--workers 1` (a worker processes deliveries meanwhile)
  postgres        `threadline serve --workers 0` on a fresh schema of the local PostgreSQL
                  (skipped with a note when PostgreSQL cannot be reached)

and measured twice, after a short closed-loop warm-up:

  throughput      closed loop: --concurrency clients send back to back for --seconds;
                  acknowledged (2xx) deliveries per second
  latency         open loop: --rate deliveries per second on a fixed schedule for
                  --seconds, whatever the answers; p50/p99/max of each ack's latency

Two payload sets (--sizes), measured and reported apart: "real" (bench/payloads.py:
GitHub `issue_comment` deliveries with every field GitHub sends, 10-30 KB, median 14 KB,
and GitLab note and merge request hooks from GitLab's documented examples) and
"small" (this file's 3-6 KB comments). Each request gets a fresh delivery id and, for
GitHub, an X-Hub-Signature-256 made by `sign_github` (GitLab: X-Gitlab-Token). The
load generator is this process, one keep-alive connection per client, traffic to
127.0.0.1 only: by default bench/rawhttp.py (prepared request bytes, a small part of
what a server spends per request), with --client aiohttp aiohttp's client (about as
much per request as the baseline receiver, so it can be the limit on two cores), with
--client wrk the C client `wrk` for the closed loops (bench/wrkload.py).
After each Threadline server has stopped, the rows in its `deliveries` table are
counted and compared with the number of "queued" answers it gave (durability check).

With --rounds N every server is measured N times, alternating, and the table shows
medians; the exit code is 1 when a target is missed. bench/README.md explains every
column and keeps the measured results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    code_state,
    drop_pg_schema,
    machine_busy_seconds,
    percentile_ms,
    process_cpu_seconds,
    threadline_command,
)
from payloads import Body, github_body, github_user, real_bodies
from rawhttp import RawClient
from sqlalchemy import create_engine, text
from wrkload import WrkLoad, WrkRun, available

HOST = "127.0.0.1"  # never anything else: load goes to this machine only

HERE = Path(__file__).resolve().parent
BASELINE_SCRIPT = HERE / "baseline_receiver.py"
SECRET = "bench-ingress-throwaway-secret-0123456789"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SERVERS = ("baseline", "sqlite", "sqlite-w1", "postgres")
SIZES = ("real", "small")  # real: bench/payloads.py, 10-30 KB GitHub + GitLab; small: 3-6 KB

# Targets this benchmark checks (see bench/README.md).
TARGET_THROUGHPUT_RATIO = 0.7  # durable SQLite ingress vs the non-durable baseline
TARGET_P99_MS = 10.0  # ack latency at --rate (default 200/s)


# ------------------------------------------------------------------ payloads


def _short_user(user: dict[str, Any]) -> dict[str, Any]:
    keep = ("login", "id", "node_id", "avatar_url", "html_url", "type", "site_admin")
    return {k: user[k] for k in keep}


def _reactions(url: str) -> dict[str, Any]:
    return {
        "url": f"{url}/reactions",
        "total_count": 0,
        "+1": 0,
        "-1": 0,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": 0,
        "rocket": 0,
        "eyes": 0,
    }


_WORDS = (
    *("the", "retry", "loop", "still", "drops", "the", "lease", "when", "the", "worker"),
    *("restarts", "so", "please", "check", "handler", "session", "thread", "review"),
    *("migration", "schema", "queue", "commit", "delivery", "payload", "could", "you"),
    *("take", "a", "look", "at", "this", "before", "the", "release", "we", "saw", "it"),
    *("twice", "in", "staging", "logs", "show", "a", "timeout", "after", "the", "first"),
    *("attempt", "and", "then", "nothing", "`ValueError`", "```", "traceback:", "line"),
)
_LOGINS = ("octocat", "mona", "hubot-fan", "ada-l", "grace-h", "linus-t", "ken-t", "barbara-l")


def build_payload(rng: random.Random, n: int) -> bytes:
    """One `issue_comment` `created` delivery body, 3-6 KB of compact JSON."""
    owner, name = "acme", "widgets"
    full = f"{owner}/{name}"
    repo_api = f"https://api.github.com/repos/{full}"
    number = rng.randint(1, 4000)
    comment_id = 2_400_000_000 + n
    commenter = github_user(rng.choice(_LOGINS), rng.randint(10_000, 9_999_999))
    author = github_user(rng.choice(_LOGINS), rng.randint(10_000, 9_999_999))
    stamp = (
        f"2026-11-{rng.randint(1, 21):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:07Z"
    )
    issue_url = f"{repo_api}/issues/{number}"
    comment_url = f"{repo_api}/issues/comments/{comment_id}"
    payload: dict[str, Any] = {
        "action": "created",
        "issue": {
            "url": issue_url,
            "repository_url": repo_api,
            "labels_url": f"{issue_url}/labels{{/name}}",
            "comments_url": f"{issue_url}/comments",
            "events_url": f"{issue_url}/events",
            "html_url": f"https://github.com/{full}/issues/{number}",
            "id": 3_100_000_000 + number,
            "node_id": f"I_kwDOAbCdEf{number:06d}",
            "number": number,
            "title": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 10))),
            "user": _short_user(author),
            "labels": [],
            "state": "open",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": rng.randint(0, 40),
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": None,
            "author_association": "MEMBER",
            "active_lock_reason": None,
            "body": None,
            "timeline_url": f"{issue_url}/timeline",
            "performed_via_github_app": None,
            "state_reason": None,
        },
        "comment": {
            "url": comment_url,
            "html_url": f"https://github.com/{full}/issues/{number}#issuecomment-{comment_id}",
            "issue_url": issue_url,
            "id": comment_id,
            "node_id": f"IC_kwDOAbCdEf{comment_id}",
            "user": commenter,
            "created_at": stamp,
            "updated_at": stamp,
            "author_association": "CONTRIBUTOR",
            "body": "",
            "reactions": _reactions(comment_url),
            "performed_via_github_app": None,
        },
        "repository": {
            "id": 812_345_678,
            "node_id": "R_kgDOMGRpXg",
            "name": name,
            "full_name": full,
            "private": False,
            "owner": {"login": owner, "id": 9_100_001, "type": "Organization"},
            "html_url": f"https://github.com/{full}",
            "description": "Widgets, made to order",
            "fork": False,
            "url": repo_api,
            "issues_url": f"{repo_api}/issues{{/number}}",
            "pulls_url": f"{repo_api}/pulls{{/number}}",
            "created_at": "2024-06-11T08:12:40Z",
            "updated_at": stamp,
            "pushed_at": stamp,
            "clone_url": f"https://github.com/{full}.git",
            "default_branch": "main",
            "visibility": "public",
        },
        "sender": _short_user(commenter),
        "installation": {"id": 51_234_567, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTE="},
    }
    empty = len(json.dumps(payload, separators=(",", ":")).encode())
    size = rng.randint(max(3 * 1024, empty + 40), 6 * 1024 - 64)
    words: list[str] = ["@threadline"]
    while len(" ".join(words)) < size - empty:
        words.append(rng.choice(_WORDS))
    payload["comment"]["body"] = " ".join(words)[: size - empty]
    body = json.dumps(payload, separators=(",", ":")).encode()
    if not 3 * 1024 <= len(body) <= 6 * 1024:
        raise AssertionError(f"payload of {len(body)} bytes is outside 3-6 KB")
    return body


def build_payloads(count: int, seed: int, size: str = "small") -> list[Body]:
    """The bodies one size set cycles through: "small" (this file's 3-6 KB comments) or
    "real" (bench/payloads.py: GitHub's full 10-30 KB shapes and GitLab's hooks)."""
    if size == "real":
        return real_bodies(count, seed, SECRET)
    rng = random.Random(seed)
    return [github_body(build_payload(rng, n), SECRET) for n in range(count)]


# ------------------------------------------------------------------ CPU accounting


@dataclass
class CpuMeter:
    server_pid: int
    start_wall: float = 0.0
    start_client: float = 0.0
    start_server: float = 0.0
    start_machine: float = 0.0

    def start(self) -> None:
        self.start_wall = time.perf_counter()
        self.start_client = time.process_time()
        self.start_server = process_cpu_seconds(self.server_pid)
        self.start_machine = machine_busy_seconds()

    def stop(self, extra_client_seconds: float = 0.0) -> tuple[float, float, float]:
        """(client, server, whole machine) CPU as % of one core over the interval; a load
        generator in another process (wrk) adds its CPU as `extra_client_seconds`."""
        wall = max(time.perf_counter() - self.start_wall, 1e-9)
        client = time.process_time() - self.start_client + extra_client_seconds
        return (
            100 * client / wall,
            100 * (process_cpu_seconds(self.server_pid) - self.start_server) / wall,
            100 * (machine_busy_seconds() - self.start_machine) / wall,
        )


# ------------------------------------------------------------------ load generation


@dataclass
class Tally:
    """What one phase sent and got back."""

    sent: int = 0
    acked: int = 0  # 2xx answers
    http_errors: Counter[int] = field(default_factory=Counter)  # non-2xx answers by status
    transport_errors: Counter[str] = field(default_factory=Counter)  # no answer at all
    answers: Counter[str] = field(default_factory=Counter)  # "status" field of 2xx answers
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx and non-2xx alike
    elapsed: float = 0.0
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)
    schedule_lag_max: float = 0.0  # open loop: how late the latest send started
    shed: int = 0  # open loop: sends skipped because too many were still in flight
    unanswered: int = 0  # wrk: sent when its time ran out, never answered (may be stored)

    @property
    def non_2xx(self) -> int:
        return sum(self.http_errors.values()) + sum(self.transport_errors.values()) + self.shed

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0

    def merge(self, other: Tally) -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.http_errors.update(other.http_errors)
        self.transport_errors.update(other.transport_errors)
        self.answers.update(other.answers)
        self.shed += other.shed
        self.unanswered += other.unanswered

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the answer latencies, in milliseconds."""
        return percentile_ms(self.latencies, q)


CLIENTS = ("raw", "aiohttp", "wrk")


class Generator:
    """Sends the payloads in turn, each with a fresh delivery id, and tallies the answers.

    client "raw" is bench/rawhttp.py (prepared bytes on keep-alive connections, a small
    part of what a server spends per request); "aiohttp" is aiohttp's client, which
    spends about as much per request as the baseline receiver does (bench/README.md);
    "wrk" runs the closed loops with wrk (bench/wrkload.py) and the open loop with "raw".
    """

    def __init__(
        self,
        client: str,
        session: aiohttp.ClientSession,
        server: Server,
        payloads: list[Body],
        timeout: float,
        wrk_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.session = session
        self.base_url = server.url
        self.payloads = payloads
        self.next = 0
        self.raw = RawClient(HOST, server.port, timeout=timeout)
        # Per payload, the request head but for the delivery id (raw client only).
        self.heads = [
            self.raw.head(p.path, [*p.headers, ("Content-Length", str(len(p.body)))])
            for p in payloads
        ]
        self.wrk = None
        if client == "wrk":
            assert wrk_dir is not None
            requests = [(p.path, list(p.headers), p.delivery_header, p.body) for p in payloads]
            self.wrk = WrkLoad(wrk_dir, HOST, server.port, requests)

    def close(self) -> None:
        self.raw.close()

    async def _post(self, index: int, delivery: str) -> tuple[int, bytes]:
        payload = self.payloads[index]
        if self.client != "aiohttp":
            extra = f"{payload.delivery_header}: {delivery}\r\n\r\n".encode()
            return await self.raw.send(self.heads[index] + extra + payload.body)
        headers = {**dict(payload.headers), payload.delivery_header: delivery}
        url = self.base_url + payload.path
        async with self.session.post(url, data=payload.body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def deliver(self, tally: Tally) -> None:
        index = self.next % len(self.payloads)
        self.next += 1
        tally.sent += 1
        started = time.perf_counter()
        try:
            status, answer = await self._post(index, str(uuid.uuid4()))
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            tally.transport_errors[type(exc).__name__] += 1
            return
        tally.latencies.append(time.perf_counter() - started)
        if not 200 <= status < 300:
            tally.http_errors[status] += 1
            return
        tally.acked += 1
        try:
            tally.answers[str(json.loads(answer).get("status"))] += 1
        except (ValueError, AttributeError):
            tally.answers["(unparsable)"] += 1

    async def closed_loop(self, concurrency: int, seconds: float, meter: CpuMeter) -> Tally:
        """`concurrency` clients, each sending its next delivery as soon as one is answered."""
        if self.wrk is not None:
            return await self._wrk_loop(concurrency, seconds, meter)
        tally = Tally()
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                await self.deliver(tally)

        meter.start()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        tally.elapsed = time.perf_counter() - start
        tally.cpu = meter.stop()
        return tally

    async def _wrk_loop(self, concurrency: int, seconds: float, meter: CpuMeter) -> Tally:
        """The closed loop driven by wrk, in a thread so that this loop stays free."""
        assert self.wrk is not None
        wrk = self.wrk
        meter.start()
        run: WrkRun = await asyncio.to_thread(wrk.run, concurrency, seconds)
        tally = Tally(sent=run.sent, acked=run.ok, elapsed=run.seconds, unanswered=run.unanswered)
        tally.http_errors.update(run.statuses)
        tally.transport_errors.update(run.errors)
        tally.answers["queued"] = run.queued
        if run.ok - run.queued:
            tally.answers["(other 2xx)"] = run.ok - run.queued
        tally.cpu = meter.stop(extra_client_seconds=run.cpu_seconds)
        return tally

    async def open_loop(
        self, rate: float, seconds: float, max_in_flight: int, meter: CpuMeter
    ) -> Tally:
        """Send `rate` deliveries a second on a fixed schedule, whatever the answers."""
        tally = Tally()
        total = int(rate * seconds)
        in_flight: set[asyncio.Task[None]] = set()
        meter.start()
        start = time.perf_counter() + 0.01
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tally.schedule_lag_max = max(tally.schedule_lag_max, time.perf_counter() - due)
            if len(in_flight) >= max_in_flight:
                tally.shed += 1  # the server is far behind; do not pile up without bound
                continue
            task = asyncio.create_task(self.deliver(tally))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
        tally.elapsed = time.perf_counter() - start
        tally.cpu = meter.stop()
        return tally


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    description: str
    argv: list[str]
    env: dict[str, str]
    port: int
    workdir: Path
    count_url: str | None = None  # durable servers: where the bench counts their rows
    schema: str | None = None  # PostgreSQL schema holding the tables
    workers: int = 0
    round: int = 1
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.log_path = self.workdir / f"{self.name}-round{self.round}.stderr.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            print(f"  {self.name} had exited by itself with code {self.proc.returncode}")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                print(f"  {self.name}: no exit {grace:.0f}s after SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def base_env() -> dict[str, str]:
    """Our environment without THREADLINE_* settings that could change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}


def baseline_server(workdir: Path) -> Server:
    port = free_port()
    return Server(
        name="baseline",
        description="aiohttp + gidgethub verify + JSON parse, not durable",
        argv=[sys.executable, str(BASELINE_SCRIPT), "--host", HOST, "--port", str(port)],
        env={**base_env(), "BENCH_WEBHOOK_SECRET": SECRET},
        port=port,
        workdir=workdir,
    )


def threadline_server(
    name: str,
    description: str,
    database_url: str,
    workers: int,
    workdir: Path,
    command: list[str],
    schema: str | None = None,
) -> Server:
    port = free_port()
    env = {
        **base_env(),
        "THREADLINE_DATABASE_URL": database_url,
        "THREADLINE_GITHUB_WEBHOOK_SECRET": SECRET,
        "THREADLINE_GITLAB_WEBHOOK_TOKEN": SECRET,
        "THREADLINE_LOG_LEVEL": "WARNING",
    }
    argv = [*command, "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers)]
    count_url = PG_ADMIN_URL if schema else database_url
    return Server(name, description, argv, env, port, workdir, count_url, schema, workers)


async def wait_ready(session: aiohttp.ClientSession, server: Server, within: float) -> None:
    """Poll GET /healthz until it answers 200 (the server has migrated and is listening)."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        code = server.exit_code()
        if code is not None:
            raise RuntimeError(f"{server.name} exited with {code}:\n{server.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"{server.url}/healthz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready after {within:.0f}s:\n{server.log_tail()}")


# ------------------------------------------------------------------ databases


def count_deliveries(server: Server, *, unfinished: bool = False) -> int:
    """Rows in the server's `deliveries` table (only pending/processing ones if `unfinished`)."""
    assert server.count_url is not None
    table = f'"{server.schema}".deliveries' if server.schema else "deliveries"
    where = " WHERE status IN ('pending', 'processing')" if unfinished else ""
    engine = create_engine(server.count_url)
    try:
        with engine.connect() as conn:
            query = text(f"SELECT count(*) FROM {table}{where}")  # noqa: S608 (our own names)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def remove_sqlite_files(server: Server) -> None:
    """Delete a SQLite server's database (hundreds of MB after a run) once it is counted."""
    url = server.count_url or ""
    if server.schema is not None or not url.startswith("sqlite:///"):
        return
    path = url.removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def create_pg_schema() -> str | None:
    """Create a fresh schema on the local PostgreSQL; None (and a note) if unreachable."""
    schema = f"bench_ingress_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        print(f"note: PostgreSQL at 127.0.0.1:5432 is not usable, skipping it: {reason}")
        return None
    finally:
        engine.dispose()
    return schema


# ------------------------------------------------------------------ one server's run


@dataclass
class Result:
    server: str
    description: str
    throughput: Tally
    latency: Tally
    all_traffic: Tally  # warm-up + both phases, for the durability check
    rows: int | None = None  # rows in `deliveries` after the server stopped
    drained: str | None = None  # how the worker cleared the throughput phase's backlog
    exit_code: int | None = None
    round: int = 1
    size: str = "small"

    def durability(self) -> tuple[bool, str] | None:
        if self.rows is None:
            return None
        queued = self.all_traffic.answers["queued"]
        lost = sum(self.all_traffic.transport_errors.values())
        cut = self.all_traffic.unanswered
        # Every "queued" answer has its row; with wrk, requests cut off at the end of a
        # phase may have been stored too (they were never answered), but no more rows.
        ok = queued <= self.rows <= queued + cut
        detail = (
            f"{self.rows} rows in deliveries, {queued} 'queued' answers"
            f" ({self.all_traffic.acked} 2xx of {self.all_traffic.sent} sent"
            f"{f', {lost} without an answer' if lost else ''}"
            f"{f', {cut} cut off by wrk at a phase end' if cut else ''})"
        )
        return ok, detail


async def wait_drained(server: Server, within: float) -> str:
    """Wait until no delivery is pending or processing; say how long it took."""
    start = time.perf_counter()
    first = count_deliveries(server, unfinished=True)
    left = first
    while left and time.perf_counter() - start < within:
        await asyncio.sleep(0.5)
        left = count_deliveries(server, unfinished=True)
    took = time.perf_counter() - start
    done = first - left
    line = f"worker processed a backlog of {done} deliveries in {took:.1f}s ({done / took:.0f}/s)"
    if left:
        line += f"; {left} still unfinished after the --drain-timeout of {within:g}s"
    print(f"  {line}", flush=True)
    return line


async def measure(
    session: aiohttp.ClientSession,
    server: Server,
    payloads: list[Body],
    args: argparse.Namespace,
) -> Result:
    server.start()
    assert server.proc is not None
    await wait_ready(session, server, args.startup_timeout)
    wrk_dir = server.workdir / f"wrk-{server.name}-round{server.round}"
    gen = Generator(args.client, session, server, payloads, args.request_timeout, wrk_dir)
    try:
        meter = CpuMeter(server.proc.pid)
        everything = Tally()
        print(f"  warm-up {args.warmup:g}s ...", flush=True)
        warm = await gen.closed_loop(args.concurrency, args.warmup, meter)
        everything.merge(warm)
        print(f"  throughput: {args.concurrency} clients for {args.seconds:g}s ...", flush=True)
        thr = await gen.closed_loop(args.concurrency, args.seconds, meter)
        everything.merge(thr)
        print(f"    {thr.rate:.0f} acks/s, non-2xx {thr.non_2xx}", flush=True)
        drained = None
        if server.workers:
            # Measure latency in steady state: first let the worker clear the backlog the
            # throughput phase left, so that it then processes about --rate a second.
            drained = await wait_drained(server, args.drain_timeout)
        await asyncio.sleep(1.0)  # let the OS settle before the latency phase
        print(f"  latency: {args.rate:g}/s for {args.seconds:g}s ...", flush=True)
        lat = await gen.open_loop(args.rate, args.seconds, args.max_in_flight, meter)
        everything.merge(lat)
        print(
            f"    p50 {lat.percentile_ms(0.5):.2f} ms, p99 {lat.percentile_ms(0.99):.2f} ms, "
            f"max {max(lat.latencies, default=0) * 1000:.2f} ms, non-2xx {lat.non_2xx}",
            flush=True,
        )
    finally:
        gen.close()
    return Result(server.name, server.description, thr, lat, everything, drained=drained)


# ------------------------------------------------------------------ report


def cpu_us_per_ack(tally: Tally, which: int) -> float:
    """CPU microseconds per acknowledged delivery: which=0 the client, 1 the server."""
    return tally.cpu[which] / 100 / tally.rate * 1e6 if tally.rate else float("nan")


@dataclass
class Summary:
    """One server's figures over every round it was measured in."""

    server: str
    description: str
    rounds: list[Result]

    @property
    def rates(self) -> list[float]:
        return [r.throughput.rate for r in self.rounds]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def server_us(self) -> float:
        return statistics.median(cpu_us_per_ack(r.throughput, 1) for r in self.rounds)

    @property
    def client_us(self) -> float:
        return statistics.median(cpu_us_per_ack(r.throughput, 0) for r in self.rounds)

    @property
    def cpu(self) -> tuple[float, float, float]:
        """Throughput phase CPU % (client, server, machine), mean over rounds."""
        return (
            statistics.mean(r.throughput.cpu[0] for r in self.rounds),
            statistics.mean(r.throughput.cpu[1] for r in self.rounds),
            statistics.mean(r.throughput.cpu[2] for r in self.rounds),
        )

    @property
    def latency(self) -> Tally:
        """The latency phases' answers pooled over rounds."""
        pooled = Tally()
        for r in self.rounds:
            pooled.merge(r.latency)
            pooled.latencies.extend(r.latency.latencies)
            pooled.schedule_lag_max = max(pooled.schedule_lag_max, r.latency.schedule_lag_max)
        return pooled

    @property
    def throughput_non_2xx(self) -> int:
        return sum(r.throughput.non_2xx for r in self.rounds)

    @property
    def all_non_2xx(self) -> int:
        return sum(r.all_traffic.non_2xx for r in self.rounds)  # warm-up included

    def p(self, q: float) -> float:
        return self.latency.percentile_ms(q)

    def max_ms(self) -> float:
        return max(self.latency.latencies, default=0.0) * 1000


def summarize(results: list[Result]) -> list[Summary]:
    by_server: dict[str, Summary] = {}
    for r in results:
        by_server.setdefault(r.server, Summary(r.server, r.description, [])).rounds.append(r)
    return list(by_server.values())


def report(results: list[Result], args: argparse.Namespace, size: str) -> bool:
    """Print one size set's table and target checks; True when every target holds."""
    summaries = summarize(results)
    base = next((s for s in summaries if s.server == "baseline"), None)
    rounds = max(len(s.rounds) for s in summaries)
    header = (
        f"{'server':<10} {'acks/s':>7} {'x base':>6} {'range':>11} {'non2xx':>6} "
        f"{'srv us/ack':>10} {'cli us/ack':>10} {'cpu% c/s/all':>12} | "
        f"{'p50 ms':>6} {'p99 ms':>6} {'max ms':>6} {'x base p99':>10} {'non2xx':>6}"
    )
    print()
    print(f"== {size} payloads ({SIZE_NOTES[size]})")
    print(
        f"throughput: closed loop ({args.client}), {args.concurrency} clients, {args.seconds:g}s"
        f"{f', median of {rounds} rounds' if rounds > 1 else ''} | "
        f"latency: open loop, {args.rate:g}/s, {args.seconds:g}s"
        f"{f', {rounds} rounds pooled' if rounds > 1 else ''}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        ratio = f"{s.rate / base.rate:.2f}" if base and base.rate else "-"
        spread = f"{min(s.rates):.0f}-{max(s.rates):.0f}" if len(s.rounds) > 1 else ""
        base_p99 = base.p(0.99) if base else 0.0
        p99_ratio = f"{s.p(0.99) / base_p99:.2f}" if base_p99 else "-"
        cpu = "/".join(f"{c:.0f}" for c in s.cpu)
        print(
            f"{s.server:<10} {s.rate:>7.0f} {ratio:>6} {spread:>11} {s.throughput_non_2xx:>6} "
            f"{s.server_us:>10.0f} {s.client_us:>10.0f} {cpu:>12} | "
            f"{s.p(0.5):>6.2f} {s.p(0.99):>6.2f} {s.max_ms():>6.2f} {p99_ratio:>10} "
            f"{s.latency.non_2xx:>6}"
        )
    print()
    for r in results:
        details = []
        for label, tally in (("throughput", r.throughput), ("latency", r.latency)):
            if tally.http_errors or tally.transport_errors or tally.shed:
                details.append(
                    f"{label}: http {dict(tally.http_errors)} transport "
                    f"{dict(tally.transport_errors)} shed {tally.shed}"
                )
        lag = r.latency.schedule_lag_max * 1000
        print(
            f"round {r.round} {r.server}: {r.throughput.rate:.0f} acks/s, "
            f"p99 {r.latency.percentile_ms(0.99):.2f} ms; answers {dict(r.all_traffic.answers)}; "
            f"send lag max {lag:.2f} ms; exit {r.exit_code}"
            + (f"; {r.drained}" if r.drained else "")
            + (f"; {'; '.join(details)}" if details else "")
        )

    print()
    print(f"targets ({size} payloads):")
    checks: list[tuple[str, bool]] = []
    sqlite = next((s for s in summaries if s.server == "sqlite"), None)
    if base and sqlite and base.rate:
        ratio = sqlite.rate / base.rate
        checks.append(
            (
                f"durable SQLite throughput >= {TARGET_THROUGHPUT_RATIO}x baseline: "
                f"{ratio:.2f}x ({sqlite.rate:.0f} vs {base.rate:.0f} acks/s)",
                ratio >= TARGET_THROUGHPUT_RATIO,
            )
        )
    else:
        print("  throughput ratio: not checked (needs both baseline and sqlite)")
    for s in summaries:
        if s.server != "baseline":
            checks.append(
                (
                    f"{s.server}: p99 ack < {TARGET_P99_MS:g} ms at {args.rate:g}/s: "
                    f"{s.p(0.99):.2f} ms",
                    s.p(0.99) < TARGET_P99_MS,
                )
            )
    for s in summaries:
        bad = s.all_non_2xx
        checks.append((f"{s.server}: zero non-2xx (warm-up included): {bad}", bad == 0))
    for r in results:
        verdict = r.durability()
        if verdict is not None:
            checks.append((f"round {r.round} {r.server}: durability: {verdict[1]}", verdict[0]))
    for line, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {line}")
    return all(ok for _, ok in checks)


# ------------------------------------------------------------------ main


def make_server(name: str, workdir: Path, command: list[str], round_no: int) -> Server | None:
    """The server called `name`, or None (after a note) when it cannot be set up."""
    if name == "baseline":
        return baseline_server(workdir)
    if name in ("sqlite", "sqlite-w1"):
        workers = 1 if name == "sqlite-w1" else 0
        url = f"sqlite:///{workdir / f'{name}-round{round_no}.db'}"
        desc = f"threadline serve --workers {workers}, SQLite (WAL, synchronous=FULL)"
        return threadline_server(name, desc, url, workers, workdir, command)
    schema = create_pg_schema()
    if schema is None:
        return None
    url = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    desc = "threadline serve --workers 0, PostgreSQL (local, fresh schema)"
    return threadline_server(name, desc, url, 0, workdir, command, schema)


SIZE_NOTES = {
    "small": "3-6 KB GitHub issue_comment, bench/ingress.py's own",
    "real": "GitHub issue_comment with every field, 10-30 KB, and GitLab note and merge "
    "request hooks, bench/payloads.py",
}


def describe_payloads(size: str, payloads: list[Body]) -> None:
    by_kind: dict[str, list[int]] = {}
    for p in payloads:
        by_kind.setdefault(p.kind, []).append(len(p.body))
    for kind, sizes in by_kind.items():
        print(
            f"  {size}: {len(sizes)} {kind} payloads, {min(sizes)}-{max(sizes)} bytes "
            f"(median {statistics.median(sizes):.0f}, mean {statistics.mean(sizes):.0f})"
        )


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} CPUs"


async def run(args: argparse.Namespace) -> int:
    sets = {size: build_payloads(args.payloads, args.seed, size) for size in args.sizes}
    for size, payloads in sets.items():
        describe_payloads(size, payloads)
    print(f"python {sys.version.split()[0]}; threadline code: {code_state()}; {load_line()}")
    where = "wrk for the closed loops, raw for the open loop" if args.client == "wrk" else ""
    print(
        f"load generator: the {args.client} client{f' ({where})' if where else ', in this process'}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="threadline-bench-"))
    print(f"work directory (databases, server logs): {workdir}")
    command = threadline_command(args.threadline)
    results: list[Result] = []
    failed: list[str] = []
    connector = aiohttp.TCPConnector(limit=max(args.concurrency, args.max_in_flight))
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    seq = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for round_no in range(1, args.rounds + 1):
            for size, payloads in sets.items():
                for name in args.servers:
                    seq += 1
                    outcome = await measure_one(
                        session, args, workdir, command, name, size, payloads, seq
                    )
                    if isinstance(outcome, Result):
                        outcome.round = round_no
                        results.append(outcome)
                    elif outcome:
                        failed.append(f"round {round_no} {size} {name}")
    if not results:
        print("nothing was measured")
        return 1
    all_ok = not failed
    for size in args.sizes:
        of_size = [r for r in results if r.size == size]
        if of_size:
            all_ok = report(of_size, args, size) and all_ok
    if failed:
        print(f"  [FAIL] could not be measured: {', '.join(failed)}")
    if args.json:
        write_json(args.json, results, args)
        print(f"\nfigures written to {args.json}")
    print(f"\nserver logs kept in {workdir}")
    return 0 if all_ok else 1


async def measure_one(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    workdir: Path,
    command: list[str],
    name: str,
    size: str,
    payloads: list[Body],
    seq: int,
) -> Result | bool:
    """One server on one size set: its Result, True when it failed, False when skipped.
    `seq` numbers the measurement (its files in the work directory)."""
    server = make_server(name, workdir, command, seq)
    if server is None:
        return False
    server.round = seq
    print(
        f"\n== {name}, {size} payloads: {server.description} on port {server.port} ({load_line()})",
        flush=True,
    )
    try:
        try:
            result = await measure(session, server, payloads, args)
        finally:
            code = server.stop()
        result.exit_code = code
        result.size = size
        if server.count_url is not None:
            result.rows = count_deliveries(server)
        if not args.keep_data:
            remove_sqlite_files(server)
        return result
    except RuntimeError as exc:
        print(f"  {name} could not be measured: {exc}")
        return True
    finally:
        if server.schema is not None:
            drop_pg_schema(server.schema)


def write_json(path: str, results: list[Result], args: argparse.Namespace) -> None:
    figures = {
        "settings": {
            k: getattr(args, k)
            for k in ("client", "concurrency", "seconds", "rate", "warmup", "rounds")
        },
        "servers": [
            {
                "server": s.server,
                "throughput_acks_per_s_median": round(s.rate, 1),
                "throughput_acks_per_s_rounds": [round(x, 1) for x in s.rates],
                "server_cpu_us_per_ack": round(s.server_us, 1),
                "client_cpu_us_per_ack": round(s.client_us, 1),
                "throughput_cpu_pct_client_server_machine": [round(c) for c in s.cpu],
                "latency_p50_ms": round(s.p(0.5), 3),
                "latency_p99_ms": round(s.p(0.99), 3),
                "latency_max_ms": round(s.max_ms(), 3),
                "non_2xx_all_phases": s.all_non_2xx,
                "durability": [
                    {"round": r.round, "rows": r.rows, "queued": r.all_traffic.answers["queued"]}
                    for r in s.rounds
                    if r.rows is not None
                ],
            }
            for s in summarize(results)
        ],
    }
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Threadline's webhook ingress against a non-durable baseline "
        "(loopback only). Run by hand; exits 1 when a target is missed.",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="closed-loop clients (default 64)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of each measured phase (default 5)"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help="payload sets, each measured and reported apart: real (GitHub issue_comment "
        "with every field, 10-30 KB, plus GitLab note and merge request hooks; "
        "bench/payloads.py) and small (3-6 KB comments) (default real,small)",
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="open-loop deliveries per second (default 200)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="closed-loop warm-up seconds (default 2)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, in order (default {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="raw",
        help="load generator: raw (bench/rawhttp.py, lean), aiohttp (aiohttp's client, "
        "which costs about what the baseline receiver does per request) or wrk (the C "
        "client drives the closed loops through bench/wrkload.py's Lua script; the open "
        "loop stays raw) (default raw)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every server this many times, alternating, and report medians; "
        "use 3 or more on a shared or noisy machine (default 1)",
    )
    parser.add_argument(
        "--payloads", type=int, default=256, help="distinct payloads to cycle through (default 256)"
    )
    parser.add_argument("--seed", type=int, default=1, help="payload generator seed (default 1)")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=512,
        help="open loop: sends beyond this many unanswered are shed and counted (default 512)",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=15.0, help="per request, seconds (default 15)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for /healthz (default 60)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="servers with a worker: seconds to wait for the backlog before the latency "
        "phase (default 180)",
    )
    parser.add_argument(
        "--threadline",
        metavar="CMD",
        help="command that runs threadline, e.g. another checkout's venv "
        "(default: the threadline script beside this Python)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the SQLite database files (by default only the server logs are kept)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(args.servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not args.sizes or set(args.sizes) - set(SIZES):
        parser.error(f"--sizes takes a comma-separated list of {', '.join(SIZES)}")
    if args.client == "wrk" and not available():
        parser.error("--client wrk needs wrk on the PATH (Debian: apt-get install wrk)")
    if not (1 <= args.concurrency <= 1024 and 0 < args.seconds <= 600 and 0 < args.rate <= 20_000):
        parser.error("keep --concurrency in 1-1024, --seconds in (0, 600], --rate in (0, 20000]")
    if not 0 <= args.warmup <= 60:
        parser.error("keep --warmup in 0-60 seconds")
    if not 1 <= args.rounds <= 20:
        parser.error("keep --rounds in 1-20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
