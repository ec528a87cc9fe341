"""A soak run: real `threadline serve` and `threadline worker` processes on one database,
a stateful fake GitHub that fails writes at random, random SIGKILLs, and a tally of what
came out. Used by tests/test_soak.py (small, in CI) and bench/soak.py (full size).

    plan = Plan(threads=30, follow_ups=4, fault_rate=0.2, kill_every=3.0)
    report = await soak(plan, database_url, workdir)
    assert not report.problems(), report.render()

What a run does:

- serves a FakeGitHub (tests/fakes/github.py) in this event loop, with one repository and
  an issue per thread; `Chaos` answers `fault_rate` of the write requests (POST, PATCH,
  PUT, DELETE below /repos/) with a fault: half before the write is applied (a 500, the
  write not made), half after (the write made, then a 500, a reset connection or a hang
  past the client's timeout);
- starts `webs` x `threadline serve --workers 0` (each on a port of its own, kept across
  restarts, as behind a load balancer) and `workers` x `threadline worker`;
- per thread, in order: a maintainer's mention that starts a session with the offline
  script agent, `follow_ups` maintainer comments, outsiders' comments among them, and
  for `done_share` of the threads a closing `/done`. Each is a comment made at the fake
  first, then a signed `issue_comment` delivery to one of the webs, resent (to the other
  web, after a pause) until it is acknowledged 2xx, as GitHub's redelivery would; a share
  of them is sent again later with the same delivery id (a redelivery);
- every `kill_every` seconds (jittered) SIGKILLs one random process and starts it again;
- after the last delivery is acknowledged, stops killing, waits for quiescence (no
  delivery, write or turn left to do) and tallies (`Report`).

What counts as intended: every outbox row that was not superseded; a status comment
(an upsert) is one write whatever its versions. Each is looked for at the fake by its
hidden marker `<!-- threadline:KEY -->` (upserts by their coalesce key, reviews by
KEY.N, reactions by comment and content) and must be there exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Engine, func, select

from bot.db import make_engine
from bot.db.models import (
    CommentRecord,
    Delivery,
    OutboxItem,
    SessionInput,
    SessionRow,
    TranscriptEvent,
)
from tests import payloads as p
from tests.fakes.github import FakeGitHub, Fault
from tests.procs import Proc, free_port

REPO = "octo-org/hello-world"
INSTALLATION = 4242
MAINTAINER = "maintainer"
OUTSIDER = "passerby"
MARKER = re.compile(r"<!-- threadline:(\S+) -->")
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
POST_WITHIN = 120.0  # seconds a delivery may take to be acknowledged, retries included

AGENTS = """
agents:
  helper:
    engine: script
    script:
      - do:
          - sleep: 0.05
          - reply: "heard: {input}"
sessions:
  maxLiveSessions: 10000
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {maxDurationMinutes: 60}
  idleExpiryMinutes: 120
"""


@dataclass(frozen=True)
class Plan:
    """The size and the harshness of one run."""

    threads: int = 30
    follow_ups: int = 4  # maintainer comments after the mention
    outsiders: int = 2  # outsiders' comments per thread, among the follow-ups
    done_share: float = 0.75  # threads that end with /done; the others stay open
    redeliver_share: float = 0.1  # deliveries sent a second time, same delivery id
    fault_rate: float = 0.2  # of write requests to the fake
    after_share: float = 0.5  # of the faults: the write was applied first
    kill_every: float | None = 3.0  # seconds between SIGKILLs; None: no kills
    webs: int = 2
    workers: int = 2
    duration: float = 20.0  # seconds over which the deliveries are spread
    quiesce_within: float = 45.0
    host_timeout: float = 2.0  # the client's timeout: a hang lasts past it
    seed: int = 15
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def deliveries(self) -> int:
        done = round(self.threads * self.done_share)
        return self.threads * (1 + self.follow_ups + self.outsiders) + done


# ---------------------------------------------------------------- faults


class ChaoticGitHub(FakeGitHub):
    """The fake GitHub with a fault source of the soak's own: `chaos` is asked for each
    request that no queued fault matched (None lets it through), and "500" is one more
    way to lose the answer of an applied write (GitHub's JSON 500). Kept here, not in
    tests/fakes/github.py, so that the fake stays as other work left it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chaos: Callable[[str, str], Fault | None] | None = None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        queued = super()._take_fault(method, path)
        if queued is None and self.chaos is not None:
            return self.chaos(method, path)
        return queued

    async def _lose(self, request: web.Request, mode: Any) -> web.StreamResponse:
        if mode == "500":
            return web.json_response({"message": "Server Error"}, status=500)
        return await super()._lose(request, mode)


class Chaos:
    """ChaoticGitHub.chaos: a fault for `rate` of the write requests, at random."""

    AFTER_MODES = ("500", "close", "hang")

    def __init__(self, rate: float, after_share: float, rng: random.Random) -> None:
        self.rate = rate
        self.after_share = after_share
        self.rng = rng
        self.on = True
        self.counts: Counter[str] = Counter()

    def __call__(self, method: str, path: str) -> Fault | None:
        if not self.on or method not in WRITE_METHODS or not path.startswith("/repos/"):
            return None
        if self.rng.random() >= self.rate:
            return None
        if self.rng.random() < self.after_share:
            mode = self.rng.choice(self.AFTER_MODES)
            self.counts[f"after:{mode}"] += 1
            return Fault(method, path, lose=mode)  # type: ignore[arg-type]  # "500" is ChaoticGitHub's
        self.counts["before:500"] += 1
        return Fault(method, path, status=500)


class SecondaryRateLimit:
    """ChaoticGitHub.chaos: every write answered as past a secondary rate limit (403, a
    Retry-After and GitHub's message) until `until` (time.monotonic()); counts them.

    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
    """

    def __init__(self, until: float, retry_after: int = 1) -> None:
        self.until = until
        self.retry_after = retry_after
        self.refused: list[float] = []

    def __call__(self, method: str, path: str) -> Fault | None:
        if method not in WRITE_METHODS or not path.startswith("/repos/"):
            return None
        if time.monotonic() >= self.until:
            return None
        self.refused.append(time.monotonic())
        return Fault(
            method,
            path,
            status=403,
            headers={"Retry-After": str(self.retry_after)},
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few "
                "minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest",
            },
        )


# ---------------------------------------------------------------- processes


class Crew:
    """The Threadline processes of a run, each slot restarted after a kill."""

    def __init__(self, url: str, workdir: Path, env: dict[str, str], plan: Plan) -> None:
        self.url = url
        self.workdir = workdir
        self.env = env
        self.ports = [free_port() for _ in range(plan.webs)]
        self.slots: dict[str, Proc] = {}
        self.incarnation: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.every: list[Proc] = []

    def web_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def _start(self, slot: str) -> Proc:
        self.incarnation[slot] += 1
        name = f"{slot}.{self.incarnation[slot]}"
        if slot.startswith("web"):
            port = self.ports[int(slot[3:])]
            env = {**self.env, "THREADLINE_PORT": str(port)}
            proc = Proc(["serve", "--workers", "0"], self.url, self.workdir, name, env)
        else:
            proc = Proc(["worker"], self.url, self.workdir, name, self.env)
        self.slots[slot] = proc
        self.every.append(proc)
        return proc

    async def start(self, plan: Plan) -> None:
        # The first web migrates the database; the rest start once it listens.
        first = self._start("web0")
        await asyncio.to_thread(first.wait_for, r"listening on", 60)
        for n in range(1, plan.webs):
            self._start(f"web{n}")
        for n in range(plan.workers):
            self._start(f"worker{n}")
        for slot, proc in self.slots.items():
            pattern = r"listening on" if slot.startswith("web") else r"worker \S+ started"
            await asyncio.to_thread(proc.wait_for, pattern, 60)

    def kill(self, slot: str) -> None:
        proc = self.slots[slot]
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait()
            self.kills[slot.rstrip("0123456789")] += 1
        proc.stop()
        self._start(slot)

    async def killer(self, every: float, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every * rng.uniform(0.5, 1.5))
            if not stop.is_set():
                await asyncio.to_thread(self.kill, rng.choice(sorted(self.slots)))

    def dead(self) -> list[str]:
        """Slots whose process ended by itself (a crash, not one of our kills)."""
        return [
            f"{slot} (exit {proc.popen.returncode}; log {proc.log})"
            for slot, proc in sorted(self.slots.items())
            if proc.popen.poll() is not None
        ]

    def stop(self) -> None:
        for proc in self.slots.values():
            proc.stop()
        for proc in self.every:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()

    def grep(self, pattern: str) -> list[str]:
        """Log lines of every incarnation matching `pattern` (a regex)."""
        found = []
        for proc in self.every:
            for line in proc.log.read_text(errors="replace").splitlines():
                if re.search(pattern, line):
                    found.append(f"{proc.log.stem}: {line}")
        return found


# ---------------------------------------------------------------- deliveries


@dataclass
class Sent:
    """One comment made at the fake and delivered (acknowledged) to ingress."""

    delivery_id: str
    thread: int
    comment_id: int
    author: str
    body: str
    kind: str  # mention | follow_up | outsider | done
    raw: bytes
    tries: int = 0  # posts until one was acknowledged 2xx


class Sender:
    """Delivers comments as GitHub would: signed, retried until acknowledged."""

    def __init__(self, gh: FakeGitHub, urls: list[str], rng: random.Random) -> None:
        self.gh = gh
        self.urls = urls
        self.rng = rng
        self.sent: list[Sent] = []
        self.redelivered: list[str] = []
        self.answers: Counter[str] = Counter()

    async def post(self, http: aiohttp.ClientSession, raw: bytes, delivery_id: str) -> int:
        headers = p.github_headers("issue_comment", raw, delivery=delivery_id)
        tries = 0
        # A web process is killed and restarted now and then; one that cannot come back
        # (its port taken meanwhile) must fail the run, not keep it posting for ever.
        deadline = time.monotonic() + POST_WITHIN
        while time.monotonic() < deadline:
            url = self.urls[(tries + self.rng.randrange(len(self.urls))) % len(self.urls)]
            tries += 1
            try:
                async with http.post(
                    f"{url}/webhooks/github",
                    data=raw,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    self.answers[str(resp.status)] += 1
                    if 200 <= resp.status < 300:
                        return tries
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers[type(exc).__name__] += 1
            await asyncio.sleep(0.2 if tries % len(self.urls) else 0.5)
        raise AssertionError(
            f"delivery {delivery_id} not acknowledged in {POST_WITHIN:.0f} s "
            f"({tries} posts); answers so far: {dict(self.answers)}"
        )

    async def comment(
        self, http: aiohttp.ClientSession, number: int, body: str, author: str, kind: str
    ) -> Sent:
        made = self.gh.add_issue_comment(REPO, number, body, login=author)
        payload = p.issue_comment(body, number=number, author=author, comment_id=made["id"])
        # The event's own time, as GitHub gives it (whole seconds).
        payload["comment"]["created_at"] = payload["comment"]["updated_at"] = made["created_at"]
        raw = p.encode(payload)
        sent = Sent(str(uuid.uuid4()), number, made["id"], author, body, kind, raw)
        sent.tries = await self.post(http, raw, sent.delivery_id)
        self.sent.append(sent)
        return sent

    async def redeliver(self, http: aiohttp.ClientSession, sent: Sent, after: float) -> None:
        await asyncio.sleep(after)
        await self.post(http, sent.raw, sent.delivery_id)
        self.redelivered.append(sent.delivery_id)


def thread_script(plan: Plan, number: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, author, body) of one thread's comments, in the order they are made."""
    steps = [("mention", MAINTAINER, f"@threadline task t{number}")]
    middle = [("follow_up", MAINTAINER, f"note t{number}-{i}") for i in range(plan.follow_ups)]
    for i in range(plan.outsiders):
        middle.insert(
            rng.randrange(len(middle) + 1), ("outsider", OUTSIDER, f"aside t{number}-{i}")
        )
    steps += middle
    if number <= round(plan.threads * plan.done_share):
        steps.append(("done", MAINTAINER, "/done"))
    return steps


async def drive(plan: Plan, sender: Sender, rng: random.Random) -> None:
    """Every thread's comments, threads side by side, spread over `plan.duration`."""
    gap = plan.duration * plan.threads / max(plan.deliveries, 1)
    redeliveries: list[asyncio.Task[None]] = []

    async def one(http: aiohttp.ClientSession, number: int) -> None:
        await asyncio.sleep(rng.uniform(0, gap))
        for kind, author, body in thread_script(plan, number, rng):
            sent = await sender.comment(http, number, body, author, kind)
            if rng.random() < plan.redeliver_share:
                later = rng.uniform(0.5, plan.duration / 2 + 1)
                redeliveries.append(asyncio.create_task(sender.redeliver(http, sent, later)))
            await asyncio.sleep(rng.uniform(0.5, 1.5) * gap)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, n) for n in range(1, plan.threads + 1)))
        await asyncio.gather(*redeliveries)


# ---------------------------------------------------------------- quiescence


def outstanding(engine: Engine) -> dict[str, int]:
    """What is left to do: deliveries and writes not settled, turns running or due."""
    with engine.connect() as conn:
        left = {
            f"deliveries {s}": n
            for s, n in conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.status.in_(("pending", "processing")))
                .group_by(Delivery.status)
            )
        }
        left |= {
            f"writes {s}": n
            for s, n in conn.execute(
                select(OutboxItem.status, func.count())
                .where(OutboxItem.status.in_(("pending", "sending")))
                .group_by(OutboxItem.status)
            )
        }
        left |= {
            f"sessions {s}": n
            for s, n in conn.execute(
                select(SessionRow.state, func.count())
                .where(SessionRow.state.in_(("active", "busy")))
                .group_by(SessionRow.state)
            )
        }
        queued = conn.execute(
            select(func.count())
            .select_from(SessionInput)
            .join(SessionRow, SessionRow.id == SessionInput.session_id)
            .where(SessionInput.status == "queued", SessionRow.state == "idle")
        ).scalar_one()
        if queued:
            left["inputs queued"] = queued
    return {k: v for k, v in left.items() if v}


def stuck(engine: Engine, limit: int = 20) -> list[str]:
    """The writes and deliveries still unsettled, with their leases: why it did not settle."""
    with engine.connect() as conn:
        writes = conn.execute(
            select(
                OutboxItem.key,
                OutboxItem.status,
                OutboxItem.attempts,
                OutboxItem.maybe_sent,
                OutboxItem.lease_owner,
                OutboxItem.lease_expires_at,
                OutboxItem.next_attempt_at,
                OutboxItem.last_error,
            )
            .where(OutboxItem.status.in_(("pending", "sending")))
            .order_by(OutboxItem.id)
            .limit(limit)
        ).all()
        deliveries = conn.execute(
            select(
                Delivery.delivery_id,
                Delivery.status,
                Delivery.attempts,
                Delivery.lease_owner,
                Delivery.lease_expires_at,
                Delivery.last_error,
            )
            .where(Delivery.status.in_(("pending", "processing")))
            .order_by(Delivery.id)
            .limit(limit)
        ).all()
    lines = [
        f"write {w.key}: {w.status}, {w.attempts} attempts, maybe_sent={w.maybe_sent}, "
        f"lease {w.lease_owner} until {w.lease_expires_at}, next {w.next_attempt_at}, "
        f"last error {w.last_error}"
        for w in writes
    ]
    lines += [
        f"delivery {d.delivery_id}: {d.status}, {d.attempts} attempts, "
        f"lease {d.lease_owner} until {d.lease_expires_at}, last error {d.last_error}"
        for d in deliveries
    ]
    return lines


async def quiesce(engine: Engine, within: float, steady: float = 2.0) -> dict[str, int]:
    """Wait until nothing is left to do for `steady` seconds; what is left at the end."""
    deadline = time.monotonic() + within
    calm_since: float | None = None
    while True:
        left = await asyncio.to_thread(outstanding, engine)
        now = time.monotonic()
        if left:
            calm_since = None
        elif calm_since is None:
            calm_since = now
        elif now - calm_since >= steady:
            return {}
        if now > deadline:
            return left
        await asyncio.sleep(0.25)


# ---------------------------------------------------------------- the tally


@dataclass
class Report:
    """What a run did and what went wrong; every list holds one line per problem."""

    plan: Plan
    seconds: float = 0.0
    deliveries_sent: int = 0
    redeliveries: int = 0
    resends: int = 0  # posts not acknowledged (a killed web, a refused connection)
    answers: dict[str, int] = field(default_factory=dict)  # ingress's answers, or errors
    deliveries_stored: int = 0
    deliveries_retried: int = 0  # handled more than once by attempts (a kill mid-way)
    lost: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    handled_twice: list[str] = field(default_factory=list)
    sessions: int = 0
    sessions_wrong: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    inputs_missing: list[str] = field(default_factory=list)
    writes_intended: int = 0
    writes_delivered: int = 0
    writes_duplicated: list[str] = field(default_factory=list)
    writes_missing: list[str] = field(default_factory=list)
    writes_failed: list[str] = field(default_factory=list)
    writes_unexpected: list[str] = field(default_factory=list)
    stale_status: list[str] = field(default_factory=list)
    kills: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    not_quiescent: dict[str, int] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)  # when not quiescent: what and why
    crashed: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    PROBLEMS = (
        "not_quiescent",
        "stuck",
        "lost",
        "unsettled",
        "handled_twice",
        "sessions_wrong",
        "inputs_missing",
        "out_of_order",
        "writes_duplicated",
        "writes_missing",
        "writes_failed",
        "writes_unexpected",
        "stale_status",
        "crashed",
    )

    def problems(self) -> dict[str, Any]:
        """Each kind of problem that occurred, with its details; empty when all is well."""
        return {name: getattr(self, name) for name in self.PROBLEMS if getattr(self, name)}

    def figures(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "deliveries": {
                "sent": self.deliveries_sent,
                "redelivered": self.redeliveries,
                "resent_unacknowledged": self.resends,
                "answers": dict(sorted(self.answers.items())),
                "stored": self.deliveries_stored,
                "retried_after_kill": self.deliveries_retried,
                "lost": len(self.lost),
                "unsettled": len(self.unsettled),
                "handled_twice": len(self.handled_twice),
                "inputs_missing": len(self.inputs_missing),
                "out_of_order_threads": len(self.out_of_order),
            },
            "sessions": {"started": self.sessions, "not_as_asked": len(self.sessions_wrong)},
            "writes": {
                "intended": self.writes_intended,
                "delivered": self.writes_delivered,
                "duplicated": len(self.writes_duplicated),
                "missing": len(self.writes_missing),
                "failed": len(self.writes_failed),
                "unexpected": len(self.writes_unexpected),
                "stale_status": len(self.stale_status),
            },
            "kills": dict(self.kills),
            "faults": dict(self.faults),
            "tracebacks_in_logs": len(self.tracebacks),
        }

    def render(self, limit: int = 15) -> str:
        lines = [json.dumps(self.figures(), indent=2)]
        for name, details in self.problems().items():
            items = list(details.items()) if isinstance(details, dict) else list(details)
            lines.append(f"{name} ({len(items)}):")
            lines += [f"  {item}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")
        if self.tracebacks:
            lines.append(f"tracebacks in process logs ({len(self.tracebacks)}), first ones:")
            lines += [f"  {t}" for t in self.tracebacks[:5]]
        return "\n".join(lines)


def tally_deliveries(report: Report, engine: Engine, sent: list[Sent]) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Delivery.id,
                Delivery.delivery_id,
                Delivery.status,
                Delivery.attempts,
                Delivery.last_error,
            )
        ).all()
        recorded = Counter(pk for (pk,) in conn.execute(select(CommentRecord.delivery_pk)))
    report.deliveries_stored = len(rows)
    by_id = {r.delivery_id: r for r in rows}
    for s in sent:
        row = by_id.get(s.delivery_id)
        if row is None:
            report.lost.append(
                f"{s.delivery_id} (issue {s.thread}, {s.kind} {s.body!r}) not stored"
            )
            continue
        if row.status != "done":
            report.unsettled.append(
                f"{s.delivery_id} (issue {s.thread}, {s.kind}): {row.status} after "
                f"{row.attempts} attempts; {row.last_error or ''}".strip()
            )
        if row.attempts > 1:
            report.deliveries_retried += 1
        if recorded[row.id] > 1:
            report.handled_twice.append(
                f"{s.delivery_id} (issue {s.thread}): recorded {recorded[row.id]} times"
            )
        elif row.status == "done" and not recorded[row.id]:
            report.lost.append(f"{s.delivery_id} (issue {s.thread}): done, comment not recorded")
    extra = set(by_id) - {s.delivery_id for s in sent}
    report.lost += [f"{d}: stored but never sent (?)" for d in sorted(extra)]


def short(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"


def tally_sessions(report: Report, engine: Engine, plan: Plan, sent: list[Sent]) -> None:
    """Sessions closed as their thread asked; inputs once each, in the order made."""
    with engine.connect() as conn:
        sessions = conn.execute(
            select(SessionRow.id, SessionRow.thread_key, SessionRow.state, SessionRow.close_reason)
        ).all()
        events = conn.execute(
            select(TranscriptEvent.session_id, TranscriptEvent.kind, TranscriptEvent.data)
            .where(TranscriptEvent.kind.in_(("launched", "input", "input_ignored", "closed")))
            .order_by(TranscriptEvent.id)
        ).all()
    report.sessions = len(sessions)
    by_thread: dict[int, list[Any]] = defaultdict(list)
    for s in sessions:
        by_thread[int(s.thread_key.rsplit("/", 1)[1])].append(s)
    transcript: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        transcript[e.session_id].append(e)
    comments: dict[int, list[Sent]] = defaultdict(list)
    for s in sorted(sent, key=lambda s: s.comment_id):
        comments[s.thread].append(s)
    for number in range(1, plan.threads + 1):
        mine = comments[number]
        asked_done = any(s.kind == "done" for s in mine)
        found = by_thread.get(number, [])
        states = [(s.state, s.close_reason) for s in found]
        want = ("closed", "user_signal") if asked_done else ("idle", None)
        if states != [want]:
            report.sessions_wrong.append(f"issue {number}: sessions {states}, wanted [{want}]")
        fed: list[str] = []
        ignored: list[str] = []
        closed_after: tuple[int, str] | None = None
        for session in found:
            for e in transcript[session.id]:
                if e.kind in ("launched", "input") and e.data.get("comment"):
                    fed.append(str(e.data["comment"]))
                elif e.kind == "input_ignored" and e.data.get("comment"):
                    ignored.append(str(e.data["comment"]))
                elif e.kind == "closed":
                    closed_after = (len(fed), str(e.data.get("reason")))
        wanted = [str(s.comment_id) for s in mine if s.kind in ("mention", "follow_up")]
        outsiders = [str(s.comment_id) for s in mine if s.kind == "outsider"]
        doubled = [c for c, n in Counter(fed + ignored).items() if n > 1]
        if doubled:
            report.handled_twice.append(f"issue {number}: comments {doubled} given twice")
        missing = [c for c in wanted if c not in fed]
        if missing:
            report.inputs_missing.append(
                f"issue {number}: comments {short(missing)} never reached the session "
                f"({len(fed)} fed)"
            )
        unnoted = [c for c in outsiders if c not in ignored]
        if unnoted:
            report.inputs_missing.append(
                f"issue {number}: outsider's comments {short(unnoted)} never noted as "
                f"ignored by the session (handled while no session was live?)"
            )
        got = [c for c in dict.fromkeys(fed) if c in wanted]
        made = [c for c in wanted if c in got]
        if got != made:
            first = next(n for n, (a, b) in enumerate(zip(got, made, strict=True)) if a != b)
            report.out_of_order.append(
                f"issue {number}: {sum(a != b for a, b in zip(got, made, strict=True))} of "
                f"{len(got)} inputs out of place; the first at #{first}: comment {got[first]} "
                f"where {made[first]} was made first (fed {short(got[first : first + 6])}...)"
            )
        if (
            asked_done
            and closed_after is not None
            and closed_after[1] == "user_signal"
            and closed_after[0] < len(wanted)
        ):
            report.out_of_order.append(
                f"issue {number}: closed by /done after {closed_after[0]} of {len(wanted)} "
                "inputs (the /done was handled before earlier comments)"
            )


def tally_writes(report: Report, engine: Engine, gh: FakeGitHub) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                OutboxItem.key,
                OutboxItem.kind,
                OutboxItem.status,
                OutboxItem.coalesce_key,
                OutboxItem.version,
                OutboxItem.payload,
                OutboxItem.attempts,
                OutboxItem.last_error,
            ).where(OutboxItem.status != "superseded")
        ).all()
    bodies = [c["body"] for c in (*gh.issue_comments.values(), *gh.review_comments.values())]
    seen = Counter(m for body in bodies for m in MARKER.findall(body))
    body_of = {m: body for body in bodies for m in MARKER.findall(body)}
    reactions = Counter(
        (str(r["_comment_id"]), r["content"])
        for r in gh.reactions
        if r["user"]["login"].endswith("[bot]")
    )
    intended: dict[str, str] = {}  # what to find -> what it is
    newest: dict[str, Any] = {}
    for row in rows:
        if row.status == "failed":
            report.writes_failed.append(
                f"{row.kind} {row.key}: failed after {row.attempts} attempts: {row.last_error}"
            )
        if row.kind == "upsert":
            intended[row.coalesce_key] = f"upsert {row.coalesce_key}"
            if row.coalesce_key not in newest or row.version > newest[row.coalesce_key].version:
                newest[row.coalesce_key] = row
        elif row.kind == "comment":
            intended[row.key] = f"comment {row.key}"
        elif row.kind == "review":
            for n in range(len(row.payload.get("comments", []))):
                intended[f"{row.key}.{n}"] = f"review comment {row.key}.{n}"
        elif row.kind == "reaction":
            what = (str(row.payload["comment_id"]), row.payload["content"])
            intended[f"reaction:{what[0]}:{what[1]}"] = f"reaction {row.key}"
            seen[f"reaction:{what[0]}:{what[1]}"] = reactions[what]
        else:
            intended[f"{row.kind}:{row.key}"] = f"{row.kind} {row.key} (not counted at the fake)"
            seen[f"{row.kind}:{row.key}"] = 1
    report.writes_intended = len(intended)
    for mark, what in sorted(intended.items()):
        n = seen.get(mark, 0)
        if n == 0:
            report.writes_missing.append(f"{what}: not at the fake")
            continue
        report.writes_delivered += 1
        if n > 1:
            report.writes_duplicated.append(f"{what}: {n} times at the fake")
    for mark, n in seen.items():
        if mark not in intended:
            report.writes_unexpected.append(f"marker {mark} ({n}x) has no outbox row")
    unmarked = [
        b
        for c in gh.issue_comments.values()
        if c["user"]["login"].endswith("[bot]") and not MARKER.search(b := c["body"])
    ]
    report.writes_unexpected += [f"bot comment without a marker: {b[:80]!r}" for b in unmarked]
    for key, row in newest.items():
        if row.status == "sent" and key in body_of:
            shown = MARKER.sub("", body_of[key]).rstrip()
            if shown != row.payload["body"].rstrip():
                report.stale_status.append(f"{key}: shows an older version than v{row.version}")


def tally(report: Report, engine: Engine, gh: FakeGitHub, sent: list[Sent]) -> Report:
    """Deliveries, sessions and writes of a finished run, into `report`."""
    tally_deliveries(report, engine, sent)
    tally_sessions(report, engine, report.plan, sent)
    tally_writes(report, engine, gh)
    return report


# ---------------------------------------------------------------- the run


def seed_fake(gh: FakeGitHub, plan: Plan) -> None:
    gh.install(INSTALLATION, [REPO])
    for number in range(1, plan.threads + 1):
        gh.add_issue(REPO, number)
    gh.set_permission(REPO, MAINTAINER, "write")
    gh.set_permission(REPO, OUTSIDER, "read")


def process_env(gh: FakeGitHub, config: Path, plan: Plan) -> dict[str, str]:
    return {
        "THREADLINE_GITHUB_APP_ID": str(gh.app_id),
        "THREADLINE_GITHUB_PRIVATE_KEY": gh.private_key_pem,
        "THREADLINE_GITHUB_API_URL": gh.url,
        "THREADLINE_GITHUB_REDELIVERY_MINUTES": "0",
        "THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS": "0",
        "THREADLINE_OUTBOX_RETRY_SECONDS": "0.5",
        "THREADLINE_OUTBOX_MAX_ATTEMPTS": "30",
        # The outbox branch's setting (issue 15 part 1); ignored where it is unknown.
        "THREADLINE_OUTBOX_LEASE_SECONDS": "3",
        "THREADLINE_HOST_TIMEOUT_SECONDS": str(plan.host_timeout),
        "THREADLINE_CONFIG": str(config),
        **plan.extra_env,
    }


async def soak(
    plan: Plan,
    database_url: str,
    workdir: Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """One run of `plan` on `database_url` (empty: the first web migrates it)."""
    say = progress or (lambda _: None)
    rng = random.Random(plan.seed)
    report = Report(plan)
    config = workdir / "threadline.yml"
    config.write_text(AGENTS, encoding="utf-8")
    chaos = Chaos(plan.fault_rate, plan.after_share, random.Random(plan.seed + 1))
    started = time.monotonic()
    async with ChaoticGitHub() as gh:
        seed_fake(gh, plan)
        gh.chaos = chaos
        crew = Crew(database_url, workdir, process_env(gh, config, plan), plan)
        engine = make_engine(database_url)
        stop_killing = asyncio.Event()
        try:
            await crew.start(plan)
            say(f"{plan.webs} webs and {plan.workers} workers up; sending {plan.deliveries}")
            killer = None
            if plan.kill_every:
                killer = asyncio.create_task(
                    crew.killer(plan.kill_every, random.Random(plan.seed + 2), stop_killing)
                )
            sender = Sender(gh, crew.web_urls(), random.Random(plan.seed + 3))
            await drive(plan, sender, rng)
            stop_killing.set()
            if killer is not None:
                await killer
            say(f"all acknowledged after {time.monotonic() - started:.0f} s; quiescing")
            report.not_quiescent = await quiesce(engine, plan.quiesce_within)
            if report.not_quiescent:
                report.stuck = await asyncio.to_thread(stuck, engine)
            chaos.on = False
            report.crashed = crew.dead()
            report.seconds = time.monotonic() - started
            report.deliveries_sent = len(sender.sent)
            report.redeliveries = len(sender.redelivered)
            report.resends = sum(s.tries - 1 for s in sender.sent)
            report.answers = dict(sender.answers)
            report.kills = dict(crew.kills)
            report.faults = dict(chaos.counts)
            await asyncio.to_thread(tally, report, engine, gh, sender.sent)
        finally:
            stop_killing.set()
            await asyncio.to_thread(crew.stop)
            engine.dispose()
        report.tracebacks = crew.grep(r"^Traceback")
    return report
