"""Sessions benchmark: 10,000 live idle sessions (memory, start-up) and comment -> first write.

Run by hand (never in CI), from the repository root, on an otherwise idle machine:

    .venv/bin/python bench/sessions.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/sessions.py --backends sqlite --sessions 2000 --comments 50
    .venv/bin/python bench/sessions.py --help

For each backend (SQLite; PostgreSQL when 127.0.0.1:5432 can be reached, else a note) two
`threadline serve` subprocesses run one after the other on two databases:

  empty     a fresh database, schema migrated, no sessions (the baseline)
  seeded    the same holding --sessions (default 10,000) live idle sessions, created
            directly in the database: one session is launched, run and finished through
            SessionStore (so it is idle with a future idle deadline), then its row, its
            input and its transcript are copied for the others in bulk

Each server is a GitHub App (THREADLINE_GITHUB_APP_ID, ...) against its own FakeGitHub
(tests/fakes/github.py), which this process serves on 127.0.0.1, and runs a one-rule
script agent. Each is measured the same way:

  start     time from starting the process to "listening on" in its log, and the
            "session timers rebuilt in X ms: N live sessions" figure it logs
  memory    VmRSS from /proc/PID/status after a few trigger comments (so lazy imports
            are done) and --settle seconds of idling; the seeded server's growth over
            the empty one's, in total and per session
  latency   --comments trigger comments "@threadline ...", each on its own issue, sent as
            signed issue_comment webhooks at --rate a second (open loop): the time to the
            202 (the ingress-only baseline) and the time to the first write the fake
            GitHub receives for that issue (the eyes reaction or the status comment)

The agent says `threadContext: false` (a trigger is measured without the reads of its
thread's context; --thread-context reads them) and the servers hold no delivery for
order (THREADLINE_ORDER_HOLD_SECONDS=0; --order-hold), so the first-write figures are
the pipeline's own.

Traffic goes to 127.0.0.1 only. Server logs stay in the printed work directory. The exit
code is 1 when a target is missed; bench/README.md explains every figure and keeps results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
from sqlalchemy import Engine, create_engine, insert, select, text

from bot.agents.config import load_config
from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.db.models import SessionInput, SessionRow, TranscriptEvent
from bot.events import ThreadRef
from bot.sessions.agents import session_options
from bot.sessions.store import Launch, SessionOptions, SessionStore

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # tests/ is not installed; it sits beside bench/
    sys.path.insert(0, str(HERE.parent))

from tests import payloads as p  # noqa: E402
from tests.fakes.github import FakeGitHub, Recorded  # noqa: E402

HOST = "127.0.0.1"  # never anything else: every request goes to this machine
SECRET = "bench-sessions-throwaway-secret-0123456789"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgres")
REPO = "octo-org/hello-world"  # the repository tests/payloads.py builds deliveries for
INSTALLATION = 4242  # and its installation id
AUTHOR = "maintainer"
WARM_BASE = 900_000  # issue numbers of the warm-up triggers
SEED_BASE = 1_000_000  # issue numbers of the seeded sessions (never in the fake)
REPLY_PREFIX = "bench reply:"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
AGENTS = """\
agents:
  helper:
    engine: script
    description: benchmark agent, one reply a turn
{context}    script:
      - do:
          - reply: "{REPLY_PREFIX} {{input}}"
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {{maxDurationMinutes: 10080}}
  idleExpiryMinutes: 10080
  maxLifetimeMinutes: 20160
  maxLiveSessions: 1000000
"""


def agents_file(thread_context: bool) -> str:
    """The agents file: the thread-context reads are left out unless asked for (issue 20
    item 4 measures a trigger without them; `--thread-context` measures them apart)."""
    context = "" if thread_context else "    threadContext: false\n"
    return AGENTS.format(REPLY_PREFIX=REPLY_PREFIX, context=context)


# Targets this benchmark checks (see bench/README.md).
TARGET_BYTES_PER_SESSION = 2048  # RSS growth per live idle session
TARGET_TIMERS_MS = 2000.0  # "session timers rebuilt in X ms" with --sessions live
TARGET_FIRST_WRITE_P99_MS = 100.0  # comment -> first write, SQLite

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
TIMERS = re.compile(r"session timers rebuilt in ([\d.]+) ms: (\d+) live sessions")


# ------------------------------------------------------------------ /proc


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in bytes, from /proc/PID/status."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    return found


def mib(n: float) -> float:
    return n / (1024 * 1024)


# ------------------------------------------------------------------ databases


@dataclass
class Database:
    backend: str
    url: str  # what the server and the seeding both use
    schema: str | None = None  # PostgreSQL: the fresh schema holding the tables
    path: Path | None = None  # SQLite: the database file

    def remove(self, keep: bool) -> None:
        if self.schema is not None:
            drop_pg_schema(self.schema)
        elif self.path is not None and not keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def make_database(backend: str, label: str, workdir: Path) -> Database | None:
    if backend == "sqlite":
        path = workdir / f"sqlite-{label}.db"
        return Database(backend, f"sqlite:///{path}", path=path)
    schema = f"bench_sessions_{uuid.uuid4().hex[:10]}"
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
    url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    return Database(backend, url, schema=schema)


def seeded_thread(k: int) -> ThreadRef:
    return ThreadRef("github", REPO, "issue", SEED_BASE + k)


def seed(url: str, count: int, options: SessionOptions, chunk: int = 1000) -> float:
    """Migrate the database and leave `count` live idle sessions in it; seconds taken."""
    began = time.perf_counter()
    engine = make_engine(url)
    try:
        upgrade(engine)
        if count:
            _seed_idle_sessions(engine, count, options, chunk)
            live = SessionStore(engine).count_live()
            if live != count:
                raise RuntimeError(f"seeding left {live} live sessions, not {count}")
    finally:
        engine.dispose()
    return time.perf_counter() - began


def _seed_idle_sessions(engine: Engine, count: int, options: SessionOptions, chunk: int) -> None:
    """One session through the store (launch, one turn, idle), then `count - 1` copies of it."""
    store = SessionStore(engine)
    thread = seeded_thread(0)
    launched = store.launch(
        Launch(
            client_request_id="bench-seed-0",
            thread=thread,
            installation_id=INSTALLATION,
            agent_id="helper",
            task="seeded task 0",
            started_by=AUTHOR,
            trigger_comment_id=str(SEED_BASE),
            trigger_url=None,
            options=options,
        ),
        max_live=count + 1,
    )
    claimed = store.claim_turn("bench-seed", lease_seconds=600)
    if claimed is None or claimed[0].id != launched.session.id:
        raise RuntimeError("the template session's turn could not be claimed")
    session, inputs = claimed
    idle = store.finish_turn(
        session.id,
        "bench-seed",
        consumed=[i.id for i in inputs],
        turn=session.turns,
        completed=False,
    )
    if idle is None or idle.state != "idle" or idle.idle_deadline_at is None:
        raise RuntimeError(f"the template session did not go idle: {idle}")
    rows, ins, evs = SessionRow.__table__, SessionInput.__table__, TranscriptEvent.__table__
    with engine.connect() as conn:
        row = dict(conn.execute(select(rows).where(rows.c.id == session.id)).mappings().one())
        inputs_of = [
            {k: v for k, v in r.items() if k != "id"}
            for r in conn.execute(select(ins).where(ins.c.session_id == session.id)).mappings()
        ]
        events_of = [
            {k: v for k, v in r.items() if k != "id"}
            for r in conn.execute(select(evs).where(evs.c.session_id == session.id)).mappings()
        ]
    for first in range(1, count, chunk):
        new_rows: list[dict[str, Any]] = []
        new_inputs: list[dict[str, Any]] = []
        new_events: list[dict[str, Any]] = []
        for k in range(first, min(first + chunk, count)):
            sid = f"s-b{k:08d}"
            thread = seeded_thread(k)
            task = f"seeded task {k}"
            new_rows.append(
                row
                | {
                    "id": sid,
                    "client_request_id": f"bench-seed-{k}",
                    "thread_key": thread.key,
                    "thread": asdict(thread),
                    "task": task,
                    "trigger_comment_id": str(SEED_BASE + k),
                }
            )
            new_inputs += [
                i | {"session_id": sid, "body": task, "comment_id": str(SEED_BASE + k)}
                for i in inputs_of
            ]
            new_events += [e | {"session_id": sid} for e in events_of]
        with engine.begin() as conn:
            conn.execute(insert(SessionRow), new_rows)
            conn.execute(insert(SessionInput), new_inputs)
            conn.execute(insert(TranscriptEvent), new_events)


# ------------------------------------------------------------------ servers


def server_env(
    gh: FakeGitHub, database_url: str, config: Path, order_hold: float
) -> dict[str, str]:
    """Our environment without THREADLINE_* settings, plus the ones this benchmark sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(
        THREADLINE_DATABASE_URL=database_url,
        THREADLINE_HOST=HOST,
        THREADLINE_PORT="0",  # the server picks a free port and logs it
        THREADLINE_LOG_LEVEL="INFO",  # the start-up lines this benchmark reads are INFO
        THREADLINE_GITHUB_WEBHOOK_SECRET=SECRET,
        THREADLINE_GITHUB_APP_ID=str(gh.app_id),
        THREADLINE_GITHUB_PRIVATE_KEY=gh.private_key_pem,
        THREADLINE_GITHUB_API_URL=gh.url,
        THREADLINE_GITHUB_REDELIVERY_MINUTES="0",
        THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS="0",
        THREADLINE_CONFIG=str(config),
        THREADLINE_ORDER_HOLD_SECONDS=str(order_hold),
    )
    return env


async def exited(proc: subprocess.Popen[bytes], within: float) -> int | None:
    """Wait (in a thread, so the event loop keeps running) up to `within` seconds for
    `proc` to exit; its exit code, or None if it is still running."""

    def wait() -> int | None:
        try:
            return proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            return None

    return await asyncio.to_thread(wait)


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # time.monotonic() just before the process was started

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def wait_listening(self, within: float) -> tuple[str, float]:
        """Poll the log for "listening on URL"; the URL and seconds since start."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_text())
            if found:
                return found.group(1), time.monotonic() - self.started
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.005)
        raise RuntimeError(f"{self.name} not listening after {within:.0f}s:\n{self.log_tail()}")

    async def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code.

        It waits without blocking the event loop: the fake GitHub runs in this loop and
        must keep answering the writes the server finishes while it stops.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            print(f"  {self.name} had exited by itself with code {self.proc.returncode}")
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        if await exited(self.proc, grace) is None:
            print(f"  {self.name}: no exit {grace:.0f}s after SIGTERM; killing it")
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
        return self.proc.returncode


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """`py-spy record` of the server (collapsed stacks, per thread) until it is stopped."""
    beside = Path(sys.executable).parent / "py-spy"
    exe = str(beside) if beside.exists() else shutil.which("py-spy")
    if exe is None:
        print("  note: py-spy not found; not profiling")
        return None
    argv = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    argv += ["--threads", "--nonblocking", "--output", str(out)]
    with out.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


async def stop_py_spy(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    if await exited(proc, 20.0) is None:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
    print(f"  py-spy profile of the latency phase: {out}")


async def wait_healthy(http: aiohttp.ClientSession, url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{url}/healthz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url}/healthz did not answer 200 within {within:.0f}s")


# ------------------------------------------------------------------ triggers and writes


@dataclass
class Sent:
    """One trigger comment: when its webhook went out, and how it was answered."""

    number: int
    at: float = 0.0  # time.monotonic() just before the POST
    ack: float | None = None  # seconds to the (any) answer
    status: int | None = None
    error: str | None = None


class Writes:
    """Follows the fake's recorded requests: each issue's first write and the agent's reply."""

    ISSUE_COMMENTS = re.compile(rf"/repos/{re.escape(REPO)}/issues/(\d+)/comments")
    COMMENT = re.compile(rf"/repos/{re.escape(REPO)}/issues/comments/(\d+)(/reactions)?")

    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        self.seen = 0
        self.first: dict[int, tuple[float, str]] = {}  # issue -> (at, what)
        self.reply: dict[int, float] = {}  # issue -> when the agent's reply was posted
        self.failed = 0  # write requests the fake answered with an error

    def update(self) -> None:
        requests = self.gh.requests
        for record in requests[self.seen :]:
            if record.method in WRITE_METHODS:
                self._note(record)
        self.seen = len(requests)

    def _note(self, record: Recorded) -> None:
        if record.status >= 400:
            self.failed += 1
        number: int | None = None
        if found := self.ISSUE_COMMENTS.fullmatch(record.path):
            number = int(found.group(1))
            body = str((record.json or {}).get("body", "")) if record.method == "POST" else ""
            what = "reply comment" if body.startswith(REPLY_PREFIX) else "status comment"
            if body.startswith(REPLY_PREFIX):
                self.reply.setdefault(number, record.at)
        elif found := self.COMMENT.fullmatch(record.path):
            comment = self.gh.issue_comments.get(int(found.group(1)))
            number = None if comment is None else int(comment["_number"])
            what = "eyes reaction" if found.group(2) else f"comment {record.method}"
        if number is not None:
            self.first.setdefault(number, (record.at, what))

    async def wait(self, numbers: Sequence[int], within: float) -> None:
        """Until every issue has its first write and the agent's reply (or `within` passes)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.update()
            if all(n in self.first and n in self.reply for n in numbers):
                return
            await asyncio.sleep(0.02)
        self.update()


def prepare_triggers(gh: FakeGitHub, numbers: Sequence[int]) -> list[tuple[int, bytes]]:
    """Each issue and its trigger comment exist in the fake; the webhook bodies to send."""
    bodies = []
    for number in numbers:
        gh.add_issue(REPO, number, title=f"Benchmark issue {number}")
        said = f"@threadline bench task {number}"
        made = gh.add_issue_comment(REPO, number, said, login=AUTHOR)
        payload = p.issue_comment(said, number=number, author=AUTHOR, comment_id=made["id"])
        bodies.append((number, p.encode(payload)))
    return bodies


async def send_triggers(
    http: aiohttp.ClientSession, url: str, bodies: list[tuple[int, bytes]], rate: float
) -> tuple[list[Sent], float]:
    """POST each body at `rate` a second on a fixed schedule; the answers and the worst
    lateness of a send against its schedule (seconds)."""
    sent = [Sent(number) for number, _ in bodies]
    lag = 0.0

    async def one(item: Sent, body: bytes) -> None:
        headers = p.github_headers("issue_comment", body, secret=SECRET)
        item.at = time.monotonic()
        try:
            async with http.post(f"{url}/webhooks/github", data=body, headers=headers) as resp:
                await resp.read()
                item.status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            item.error = type(exc).__name__
            return
        item.ack = time.monotonic() - item.at

    tasks = []
    start = time.monotonic() + 0.01
    for i, (item, (_, body)) in enumerate(zip(sent, bodies, strict=True)):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = max(lag, time.monotonic() - due)
        tasks.append(asyncio.create_task(one(item, body)))
    await asyncio.gather(*tasks)
    return sent, lag


# ------------------------------------------------------------------ one server's run


@dataclass
class Run:
    backend: str
    label: str  # empty | seeded
    sessions: int  # seeded live idle sessions
    log_path: Path
    seed_seconds: float = 0.0
    listening_ms: float = float("nan")
    timers_ms: float | None = None
    timers_live: int | None = None
    rss_ready: int = 0
    rss: int = 0  # after warm-up and --settle seconds idle
    hwm: int = 0  # peak RSS, read with `rss`
    idle_cpu_pct: float = float("nan")
    warm_seconds: float = float("nan")
    triggers: list[Sent] = field(default_factory=list)
    first_write: list[float] = field(default_factory=list)  # seconds, per answered trigger
    reply: list[float] = field(default_factory=list)
    first_kinds: Counter[str] = field(default_factory=Counter)
    missing_writes: int = 0
    missing_replies: int = 0
    failed_writes: int = 0
    send_lag: float = 0.0
    latency_cpu_ms: float = float("nan")  # server CPU per trigger during the latency phase
    # Latency phase, from the first send until the last reply: CPU of this process (the
    # client and the fake GitHub), of the server and of the whole machine, % of one core.
    latency_cpu_pct: tuple[float, float, float] = (float("nan"),) * 3
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return f"{self.backend} {self.label}"

    @property
    def acks(self) -> list[float]:
        return [s.ack for s in self.triggers if s.ack is not None]

    @property
    def not_202(self) -> int:
        return sum(1 for s in self.triggers if s.status != 202)


async def measure(
    backend: str,
    label: str,
    count: int,
    db: Database,
    config: Path,
    command: list[str],
    workdir: Path,
    args: argparse.Namespace,
) -> Run:
    run = Run(backend, label, count, workdir / f"{backend}-{label}.log")
    options = session_options(load_config(config).sessions)
    print(f"  creating the database ({count} live idle sessions) ...", flush=True)
    run.seed_seconds = await asyncio.to_thread(seed, db.url, count, options)
    print(f"    done in {run.seed_seconds:.1f}s", flush=True)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with FakeGitHub() as gh, aiohttp.ClientSession(timeout=timeout) as http:
        gh.install(INSTALLATION, [REPO])
        gh.set_permission(REPO, AUTHOR, "write")
        server = Server(
            run.name,
            [*command, "serve"],
            server_env(gh, db.url, config, args.order_hold),
            run.log_path,
        )
        try:
            server.start()
            url, listening = await server.wait_listening(args.startup_timeout)
            run.listening_ms = listening * 1000
            if found := TIMERS.search(server.log_text()):
                run.timers_ms, run.timers_live = float(found.group(1)), int(found.group(2))
            await wait_healthy(http, url)
            run.rss_ready = process_memory(server.pid).get("VmRSS", 0)
            print(
                f"  listening after {run.listening_ms:.0f} ms; timers rebuilt in "
                f"{run.timers_ms} ms for {run.timers_live} live sessions; RSS "
                f"{mib(run.rss_ready):.1f} MiB",
                flush=True,
            )

            writes = Writes(gh)
            warm = [WARM_BASE + i for i in range(args.warmup_comments)]
            began = time.monotonic()
            await send_triggers(http, url, prepare_triggers(gh, warm), args.rate)
            await writes.wait(warm, args.write_timeout)
            run.warm_seconds = time.monotonic() - began
            if not all(n in writes.reply for n in warm):
                raise RuntimeError(
                    f"the warm-up triggers were not answered within {args.write_timeout:g}s:\n"
                    f"{server.log_tail()}"
                )
            cpu = process_cpu_seconds(server.pid)
            await asyncio.sleep(args.settle)
            run.idle_cpu_pct = 100 * (process_cpu_seconds(server.pid) - cpu) / args.settle
            samples = []
            for _ in range(5):
                samples.append(process_memory(server.pid))
                await asyncio.sleep(0.2)
            run.rss = int(statistics.median(s.get("VmRSS", 0) for s in samples))
            run.hwm = max(s.get("VmHWM", 0) for s in samples)
            print(
                f"  warm-up ({len(warm)} triggers) took {run.warm_seconds:.1f}s; after "
                f"{args.settle:g}s idle: RSS {mib(run.rss):.1f} MiB (peak {mib(run.hwm):.1f}), "
                f"CPU {run.idle_cpu_pct:.1f}% of a core",
                flush=True,
            )

            numbers = list(range(1, args.comments + 1))
            bodies = prepare_triggers(gh, numbers)
            print(f"  latency: {len(numbers)} triggers at {args.rate:g}/s ...", flush=True)
            profile = workdir / f"{backend}-{label}.pyspy.txt"
            profiler = start_py_spy(server.pid, profile) if args.py_spy else None
            at = (
                time.monotonic(),
                time.process_time(),
                process_cpu_seconds(server.pid),
                machine_busy_seconds(),
            )
            try:
                run.triggers, run.send_lag = await send_triggers(http, url, bodies, args.rate)
                await writes.wait(numbers, args.write_timeout)
                wall = time.monotonic() - at[0]
                used = (
                    time.process_time() - at[1],
                    process_cpu_seconds(server.pid) - at[2],
                    machine_busy_seconds() - at[3],
                )
            finally:
                if profiler is not None:
                    await stop_py_spy(profiler, profile)
            run.latency_cpu_ms = 1000 * used[1] / len(numbers)
            run.latency_cpu_pct = (
                100 * used[0] / wall,
                100 * used[1] / wall,
                100 * used[2] / wall,
            )
            for item in run.triggers:
                first = writes.first.get(item.number)
                if first is None:
                    run.missing_writes += 1
                else:
                    run.first_write.append(first[0] - item.at)
                    run.first_kinds[first[1]] += 1
                if item.number in writes.reply:
                    run.reply.append(writes.reply[item.number] - item.at)
                else:
                    run.missing_replies += 1
            run.failed_writes = writes.failed
            print(
                f"    202 p50 {percentile_ms(run.acks, 0.5):.1f} ms, p99 "
                f"{percentile_ms(run.acks, 0.99):.1f} ms; first write p50 "
                f"{percentile_ms(run.first_write, 0.5):.1f} ms, p99 "
                f"{percentile_ms(run.first_write, 0.99):.1f} ms; missing {run.missing_writes}",
                flush=True,
            )
        finally:
            run.exit_code = await server.stop()
    return run


# ------------------------------------------------------------------ report


def fmt(value: float | None, spec: str = ".1f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:{spec}}"
    )


def growth(runs: list[Run], backend: str) -> tuple[Run, Run] | None:
    empty = next((r for r in runs if r.backend == backend and r.label == "empty"), None)
    seeded = next((r for r in runs if r.backend == backend and r.label == "seeded"), None)
    return (empty, seeded) if empty and seeded and seeded.sessions else None


def report(runs: list[Run], args: argparse.Namespace) -> bool:
    """Print the table and the target checks; True when every target holds."""
    header = (
        f"{'server':<16} {'live':>6} {'listen ms':>9} {'timers ms':>9} {'RSS MiB':>8} "
        f"{'x empty':>7} {'peak MiB':>8} {'idle cpu%':>9} | {'202 p50':>7} {'202 p99':>7} "
        f"{'1st wr p50':>10} {'1st wr p99':>10} {'x 202 p99':>9} {'reply p99':>9} "
        f"{'srv ms/trg':>10} {'cpu% b/s/all':>12}"
    )
    print()
    print(
        f"memory: VmRSS after {args.warmup_comments} warm-up triggers and {args.settle:g}s idle | "
        f"latency: {args.comments} triggers at {args.rate:g}/s, ms from sending the webhook"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        pair = growth(runs, r.backend)
        empty_rss = pair[0].rss if pair else (r.rss if r.label == "empty" else 0)
        p99_202 = percentile_ms(r.acks, 0.99)
        p99_first = percentile_ms(r.first_write, 0.99)
        print(
            f"{r.name:<16} {r.timers_live if r.timers_live is not None else '-':>6} "
            f"{fmt(r.listening_ms, '.0f'):>9} {fmt(r.timers_ms):>9} {mib(r.rss):>8.1f} "
            f"{fmt(r.rss / empty_rss if empty_rss else None, '.3f'):>7} {mib(r.hwm):>8.1f} "
            f"{fmt(r.idle_cpu_pct):>9} | {fmt(percentile_ms(r.acks, 0.5), '.2f'):>7} "
            f"{fmt(p99_202, '.2f'):>7} {fmt(percentile_ms(r.first_write, 0.5)):>10} "
            f"{fmt(p99_first):>10} {fmt(p99_first / p99_202 if p99_202 else None):>9} "
            f"{fmt(percentile_ms(r.reply, 0.99)):>9} {fmt(r.latency_cpu_ms):>10} "
            f"{'/'.join(fmt(c, '.0f') for c in r.latency_cpu_pct):>12}"
        )
    print()
    for r in runs:
        kinds = ", ".join(f"{n} {k}" for k, n in r.first_kinds.most_common())
        print(
            f"{r.name}: database made in {r.seed_seconds:.1f}s; first writes: {kinds or 'none'}; "
            f"not 202: {r.not_202}; no first write: {r.missing_writes}; no reply: "
            f"{r.missing_replies}; failed writes: {r.failed_writes}; send lag max "
            f"{r.send_lag * 1000:.1f} ms; RSS at ready {mib(r.rss_ready):.1f} MiB; exit "
            f"{r.exit_code}; log {r.log_path}"
        )

    print()
    print("targets:")
    checks: list[tuple[str, bool | None]] = []  # None: a figure without a target
    for backend in dict.fromkeys(r.backend for r in runs):
        pair = growth(runs, backend)
        if pair is None:
            print(
                f"  {backend}: memory and timers not checked (needs both the empty and seeded runs)"
            )
            continue
        empty, seeded = pair
        extra = seeded.rss - empty.rss
        per = extra / seeded.sessions
        checks.append(
            (
                f"{backend}: RSS growth per live idle session <= {TARGET_BYTES_PER_SESSION} B: "
                f"{per:.0f} B ({mib(extra):+.1f} MiB for {seeded.sessions} sessions: "
                f"{mib(seeded.rss):.1f} vs {mib(empty.rss):.1f} MiB)",
                per <= TARGET_BYTES_PER_SESSION,
            )
        )
        checks.append(
            (
                f"{backend}: the seeded server counted {seeded.timers_live} live sessions at start "
                f"(expected {seeded.sessions})",
                seeded.timers_live == seeded.sessions,
            )
        )
        ms = seeded.timers_ms
        checks.append(
            (
                f"{backend}: timers rebuilt with {seeded.sessions} live sessions in < "
                f"{TARGET_TIMERS_MS:g} ms: {fmt(ms)} ms (empty database: {fmt(empty.timers_ms)} "
                f"ms); start to listening {seeded.listening_ms:.0f} ms (empty: "
                f"{empty.listening_ms:.0f} ms)",
                ms is not None and ms < TARGET_TIMERS_MS,
            )
        )
    for r in runs:
        p99 = percentile_ms(r.first_write, 0.99)
        line = (
            f"{r.name}: comment -> first write p99 < {TARGET_FIRST_WRITE_P99_MS:g} ms: "
            f"{fmt(p99)} ms (202 p99 {fmt(percentile_ms(r.acks, 0.99), '.2f')} ms)"
        )
        if r.backend == "sqlite":
            checks.append((line, p99 < TARGET_FIRST_WRITE_P99_MS))
        else:
            checks.append((f"{line} (the target is for SQLite)", None))
        bad = r.not_202 + r.missing_writes
        checks.append(
            (
                f"{r.name}: every trigger answered 202 and written back: {r.not_202} not 202, "
                f"{r.missing_writes} without a write within {args.write_timeout:g}s",
                bad == 0,
            )
        )
    for line, ok in checks:
        print(f"  [{'info' if ok is None else 'PASS' if ok else 'FAIL'}] {line}")
    return all(ok is not False for _, ok in checks)


# ------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> int:
    print(
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; threadline code: "
        f"{code_state()}; load average {os.getloadavg()[0]:.2f}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="threadline-bench-sessions-"))
    print(f"work directory (server logs, SQLite files): {workdir}")
    print(
        f"thread context {'read' if args.thread_context else 'not read (threadContext: false)'}; "
        f"order hold {args.order_hold:g} s"
    )
    config = workdir / "threadline.yml"
    config.write_text(agents_file(args.thread_context), encoding="utf-8")
    command = threadline_command(args.threadline)
    runs: list[Run] = []
    failed: list[str] = []
    for backend in args.backends:
        for label, count in (("empty", 0), ("seeded", args.sessions)):
            db = make_database(backend, label, workdir)
            if db is None:
                break
            print(
                f"\n== {backend} {label}: threadline serve, {count} live idle sessions "
                f"(load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            try:
                runs.append(
                    await measure(backend, label, count, db, config, command, workdir, args)
                )
            except RuntimeError as exc:
                print(f"  {backend} {label} could not be measured: {exc}")
                failed.append(f"{backend} {label}")
            finally:
                db.remove(args.keep_data)
    if not runs:
        print("nothing was measured")
        return 1
    all_ok = report(runs, args) and not failed
    if failed:
        print(f"  [FAIL] could not be measured: {', '.join(failed)}")
    if args.json:
        write_json(args.json, runs, args)
        print(f"\nfigures written to {args.json}")
    print(f"\nserver logs kept in {workdir}")
    return 0 if all_ok else 1


def write_json(path: str, runs: list[Run], args: argparse.Namespace) -> None:
    def ms(values: list[float], q: float) -> float | None:
        return round(percentile_ms(values, q), 3) if values else None

    figures = {
        "settings": {
            k: getattr(args, k)
            for k in ("sessions", "comments", "rate", "warmup_comments", "settle")
        },
        "servers": [
            {
                "backend": r.backend,
                "database": r.label,
                "seeded_sessions": r.sessions,
                "live_sessions_at_start": r.timers_live,
                "start_to_listening_ms": round(r.listening_ms, 1),
                "timers_rebuilt_ms": r.timers_ms,
                "rss_ready_bytes": r.rss_ready,
                "rss_bytes": r.rss,
                "rss_peak_bytes": r.hwm,
                "idle_cpu_pct": round(r.idle_cpu_pct, 2),
                "ack_p50_ms": ms(r.acks, 0.5),
                "ack_p99_ms": ms(r.acks, 0.99),
                "first_write_p50_ms": ms(r.first_write, 0.5),
                "first_write_p99_ms": ms(r.first_write, 0.99),
                "reply_p50_ms": ms(r.reply, 0.5),
                "reply_p99_ms": ms(r.reply, 0.99),
                "server_cpu_ms_per_trigger": round(r.latency_cpu_ms, 2),
                "latency_cpu_pct_bench_server_machine": [round(c) for c in r.latency_cpu_pct],
                "not_202": r.not_202,
                "missing_writes": r.missing_writes,
            }
            for r in runs
        ],
    }
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Threadline with many live idle sessions (memory, start-up) and "
        "comment -> first write latency (loopback only). Run by hand; exits 1 when a target "
        "is missed.",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated, in order (default {','.join(BACKENDS)})",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=10_000,
        help="live idle sessions in the seeded database (default 10000)",
    )
    parser.add_argument(
        "--comments",
        type=int,
        default=200,
        help="trigger comments in the latency phase (default 200)",
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="trigger webhooks per second (default 20)"
    )
    parser.add_argument(
        "--warmup-comments",
        type=int,
        default=3,
        help="triggers answered before memory is read, so lazy imports are done (default 3)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds the server idles before its memory is read (default 5)",
    )
    parser.add_argument(
        "--write-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the last first write and reply (default 60)",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=15.0, help="per request, seconds (default 15)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for 'listening on' (default 120)",
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
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="record each server with py-spy during the latency phase (collapsed stacks "
        "per thread, in the work directory); it slows the server a little",
    )
    parser.add_argument(
        "--thread-context",
        action="store_true",
        help="let the agent read each session's thread context (host reads and a transcript "
        "event); by default it says threadContext: false, so a trigger is measured without "
        "them",
    )
    parser.add_argument(
        "--order-hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="THREADLINE_ORDER_HOLD_SECONDS for the servers (default 0: the first-write "
        "figures are the pipeline's own, without the deliberate wait of the server's 1 s "
        "default)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.backends = [s.strip() for s in args.backends.split(",") if s.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if not 1 <= args.sessions <= 200_000:
        parser.error("keep --sessions in 1-200000")
    if not (1 <= args.comments <= 5000 and 0 < args.rate <= 500):
        parser.error("keep --comments in 1-5000 and --rate in (0, 500]")
    if not (1 <= args.warmup_comments <= 50 and 0 < args.settle <= 120):
        parser.error("keep --warmup-comments in 1-50 and --settle in (0, 120]")
    if not (0 < args.write_timeout <= 600 and 0 < args.startup_timeout <= 600):
        parser.error("keep --write-timeout and --startup-timeout in (0, 600]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
