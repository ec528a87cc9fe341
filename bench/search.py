"""Search benchmark: `SessionDirectory.search` over 100,000 transcript events.

Run by hand (never in CI), from the repository root, on an otherwise idle machine:

    .venv/bin/python bench/search.py                        # SQLite and PostgreSQL
    .venv/bin/python bench/search.py --backends sqlite --events 20000
    .venv/bin/python bench/search.py --help

For each backend (a fresh SQLite file; a throwaway schema of the PostgreSQL at
127.0.0.1:5432 when it answers, else a note) the schema is migrated, then --sessions
sessions of four agents and --events transcript events are written in bulk. Events
look like a code-review bot's transcripts: tasks, maintainers' comments, the agent's
messages and replies, file contents read by tools, and bookkeeping events with no
words. Each event's search text comes from `search_text_for`, as SessionStore writes it,
and the database's own triggers or index keep the full-text index.

Then every query of QUERIES runs --repeat times under three access policies (none; the
default policy of the `reviewer` agent, a quarter of the sessions; and a key prefix
naming one repository of that agent), and each (query, policy) pair reports its p50,
p99 and max time in ms and the rows returned. The target is p99 < 50 ms for every pair.
Nothing is sent over the network but the PostgreSQL connection on 127.0.0.1. The exit
code is 1 when a target is missed; bench/README.md explains the figures and keeps results.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import PG_ADMIN_URL, code_state, drop_pg_schema, percentile_ms
from sqlalchemy import Engine, create_engine, func, insert, select, text

from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.db.models import SessionRow, TranscriptEvent
from bot.events import ThreadRef
from bot.sessions.search import AccessPolicy, SessionDirectory, search_text_for
from bot.sessions.store import SessionOptions

TARGET_P99_MS = 50.0
BACKENDS = ("sqlite", "postgres")
AGENTS = ("reviewer", "coder", "research", "coordinator")
REPOS = ("octo-org/app", "octo-org/api", "octo-org/web", "infra/deploy", "infra/terraform")
CALLER = "reviewer"

QUERIES = (
    "JWT middleware",  # a few hundred events
    "retry backoff",  # two common words
    '"connection pool"',  # a phrase
    "review",  # in a large share of the events
    "the",  # in most events (PostgreSQL: a stop word, so nothing)
    "rollback -migration",  # with an excluded word
    "timeout or deadline",  # alternatives
    "parse_config",  # an identifier, from file contents
    'foo" OR (',  # hostile text
    "zyzzyva",  # in nothing
)
POLICIES: tuple[tuple[str, AccessPolicy | None], ...] = (
    ("none", None),
    ("own agent", AccessPolicy()),
    ("key prefix", AccessPolicy(key_prefix=f"{CALLER}:github:octo-org/app/")),
)

# ------------------------------------------------------------------ text

FILES = (
    "bot/retry.py",
    "bot/outbox.py",
    "bot/auth/jwt.py",
    "bot/db/pool.py",
    "api/routes.py",
    "api/middleware.py",
    "web/templates/base.html",
    "deploy/helm/values.yaml",
    "config/settings.py",
    "tests/test_retry.py",
    "cli/main.py",
    "lib/cache.py",
)
FUNCTIONS = (
    "parse_config",
    "open_pool",
    "verify_token",
    "send_batch",
    "render_page",
    "claim_row",
    "schedule_retry",
    "load_settings",
    "refresh_cache",
    "close_session",
    "run_migration",
)
TOPICS = (
    "retry logic",
    "exponential backoff",
    "connection pool",
    "JWT middleware",
    "rate limits",
    "database migration",
    "checkpoint rollback",
    "cache invalidation",
    "error handling",
    "timeout handling",
    "deadline propagation",
    "input validation",
    "logging format",
    "test coverage",
    "thread safety",
    "memory leak",
    "pagination",
    "webhook signature",
    "idempotency keys",
    "schema drift",
    "flaky test",
    "race condition",
)
FILLER = (
    "the",
    "a",
    "this",
    "that",
    "it",
    "we",
    "should",
    "could",
    "would",
    "maybe",
    "also",
    "here",
    "there",
    "when",
    "because",
    "then",
    "still",
    "again",
    "only",
    "now",
    "first",
    "change",
    "code",
    "function",
    "line",
    "value",
    "case",
    "path",
    "call",
    "return",
    "error",
    "check",
    "test",
    "fix",
    "update",
    "review",
    "comment",
    "looks",
    "good",
    "need",
    "want",
    "use",
    "make",
    "keep",
    "move",
    "add",
    "remove",
    "small",
    "better",
)
TASKS = (
    "Review the {topic} in {file}, focus on {topic2}",
    "Please review this pull request: {topic} changed in {file}",
    "Implement {topic} for {file}",
    "Find out why {function} fails under load ({topic})",
    "Summarize the discussion about {topic} and propose next steps",
)
COMMENTS = (
    "What about the {topic} in {file}? I think {function} {filler}",
    "Can you look at line {line} of {file} again, the {topic} {filler}",
    "{filler} the {topic} part is fine, but {function} needs a test",
    "Thanks! One more thing: {topic} when {function} times out",
    "/approve but please keep an eye on {topic}",
)
MESSAGES = (
    "I read {file}. The {topic} looks right, but {function} ignores {topic2}. {filler}",
    "Step done: checked {function} in {file}; {topic} is handled {filler}",
    "The {topic} has a problem at line {line}: {function} {filler}",
    "Plan: first {topic}, then {topic2}, then tests for {function}.",
)
REPLIES = (
    "Found two issues with {topic} in `{file}`:\n\n1. `{function}` {filler}\n2. {topic2} {filler}",
    "Looks good to me. {topic} is covered by tests; {filler}",
    "I suggest moving {function} out of {file}: {topic} and {topic2} are separate concerns.",
)
CODE = (
    "def {function}(settings, *, timeout=30):\n"
    '    """{topic} for {file}."""\n'
    "    for attempt in range(settings.retries):\n"
    "        try:\n"
    "            return client.call(settings.url, timeout=timeout)\n"
    "        except TimeoutError as exc:\n"
    "            log.warning('{function} attempt %d failed: %s', attempt, exc)\n"
    "            time.sleep(backoff(attempt))\n"
    "    raise RuntimeError('{topic} gave up')\n"
)


def fill(rng: random.Random, template: str) -> str:
    return template.format(
        topic=rng.choice(TOPICS),
        topic2=rng.choice(TOPICS),
        file=rng.choice(FILES),
        function=rng.choice(FUNCTIONS),
        line=rng.randint(1, 900),
        filler=" ".join(rng.choices(FILLER, k=rng.randint(4, 20))),
    )


def event(rng: random.Random, turn: int) -> tuple[str, dict[str, Any]]:
    """One transcript event after the launch, drawn like a busy session's mix."""
    roll = rng.random()
    if roll < 0.15:
        body = fill(rng, rng.choice(COMMENTS))
        return "input", {"kind": "comment", "author": "maintainer", "body": body}
    if roll < 0.40:
        return "message", {"turn": turn, "text": fill(rng, rng.choice(MESSAGES))}
    if roll < 0.52:
        body = fill(rng, rng.choice(REPLIES))
        return "tool_call", {"turn": turn, "tool": "reply", "args": {"body": body}}
    if roll < 0.62:
        content = "\n".join(fill(rng, CODE) for _ in range(rng.randint(1, 6)))
        return "tool_result", {"turn": turn, "tool": "read_file", "ok": True, "content": content}
    if roll < 0.70:
        return "tool_result", {"turn": turn, "tool": "reply", "ok": True, "content": "reply queued"}
    if roll < 0.85:
        return "write", {"key": f"w{turn}", "kind": "comment", "thread": "t", "outbox": turn}
    return "turn_finished", {"turn": turn, "state": "idle"}


# ------------------------------------------------------------------ filling


def thread_of(k: int) -> ThreadRef:
    repo = REPOS[k % len(REPOS)]
    if k % 7 == 3:
        return ThreadRef("github", repo, "pull", 1000 + k // 7, str(50_000 + k))
    return ThreadRef("github", repo, "issue" if k % 5 == 4 else "pull", 1000 + k)


def sessions(count: int, rng: random.Random, start: datetime) -> list[dict[str, Any]]:
    rows = []
    options = asdict(SessionOptions())
    for k in range(count):
        thread = thread_of(k)
        at = start + timedelta(minutes=k)
        rows.append(
            {
                "id": f"s-{k:08x}",
                "client_request_id": f"bench-search-{k}",
                "host": thread.host,
                "repo": thread.repo,
                "installation_id": 1,
                "thread_key": thread.key,
                "thread": asdict(thread),
                "agent_id": AGENTS[k % len(AGENTS)],
                "state": "closed" if k < count - 50 else "idle",
                "close_reason": "done" if k < count - 50 else None,
                "task": fill(rng, rng.choice(TASKS)),
                "started_by": "maintainer",
                "options": options,
                "created_at": at,
                "updated_at": at,
                "closed_at": at + timedelta(minutes=5) if k < count - 50 else None,
                "time_limit_at": at + timedelta(minutes=10),
                "lifetime_at": at + timedelta(minutes=60),
                "extended_minutes": 0.0,
                "turns": 3,
                "completed": True,
                "progress": {},
                "status_seq": 0,
            }
        )
    return rows


def events(rows: list[dict[str, Any]], total: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    per = max(total // len(rows), 1)
    made = 0
    for n, row in enumerate(rows):
        count = per if n < len(rows) - 1 else total - made
        at: datetime = row["created_at"]
        for i in range(count):
            if i == 0:
                kind, data = "launched", {"agent": row["agent_id"], "task": row["task"]}
            else:
                kind, data = event(rng, 1 + i // 10)
            yield {
                "session_id": row["id"],
                "at": at + timedelta(seconds=i),
                "kind": kind,
                "data": data,
                "search_text": search_text_for(kind, data),
            }
        made += count


def fill_database(engine: Engine, session_count: int, event_count: int, seed: int) -> float:
    """Write the sessions and events; the seconds it took."""
    rng = random.Random(seed)
    began = time.perf_counter()
    rows = sessions(session_count, rng, datetime(2026, 1, 1, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(insert(SessionRow), rows)
    batch: list[dict[str, Any]] = []
    for item in events(rows, event_count, rng):
        batch.append(item)
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(TranscriptEvent), batch)
            batch = []
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(TranscriptEvent), batch)
    with engine.begin() as conn:  # fresh statistics, as a long-running database has
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


# ------------------------------------------------------------------ measuring


@dataclass
class Figure:
    backend: str
    query: str
    policy: str
    rows: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def held(self) -> bool:
        return self.p99_ms < TARGET_P99_MS


def measure(backend: str, engine: Engine, repeat: int, window: int | None) -> list[Figure]:
    directory = SessionDirectory(engine, rank_window=window)
    figures = []
    for query in QUERIES:
        for name, policy in POLICIES:
            directory.search(CALLER, policy, query)  # warm: plans and pages
            times = []
            rows = 0
            for _ in range(repeat):
                began = time.perf_counter()
                rows = len(directory.search(CALLER, policy, query))
                times.append(time.perf_counter() - began)
            figures.append(
                Figure(
                    backend,
                    query,
                    name,
                    rows,
                    percentile_ms(times, 0.5),
                    percentile_ms(times, 0.99),
                    max(times) * 1000,
                )
            )
    return figures


def indexed_share(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(TranscriptEvent)).scalar_one()
        worded = conn.execute(
            select(func.count())
            .select_from(TranscriptEvent)
            .where(TranscriptEvent.search_text.is_not(None))
        ).scalar_one()
    return int(worded), int(total)


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[Figure]:
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'search.db'}"
    else:
        schema = f"bench_search_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        try:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            print(f"note: PostgreSQL at 127.0.0.1:5432 is not usable, skipping it: {reason}")
            return []
        finally:
            admin.dispose()
        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        seconds = fill_database(engine, args.sessions, args.events, args.seed)
        worded, total = indexed_share(engine)
        print(
            f"{backend}: {total} events ({worded} with search text) in {args.sessions} "
            f"sessions written in {seconds:.1f} s"
        )
        return measure(backend, engine, args.repeat, args.rank_window)
    finally:
        engine.dispose()
        if schema is not None:
            drop_pg_schema(schema)


def report(figures: list[Figure]) -> bool:
    print()
    print(f"SessionDirectory.search, caller {CALLER!r}; target p99 < {TARGET_P99_MS:.0f} ms")
    print()
    print("| backend | query | policy | rows | p50 ms | p99 ms | max ms |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for f in figures:
        flag = "" if f.held else " **missed**"
        print(
            f"| {f.backend} | `{f.query}` | {f.policy} | {f.rows} | {f.p50_ms:.2f} | "
            f"{f.p99_ms:.2f}{flag} | {f.max_ms:.2f} |"
        )
    print()
    held = True
    for backend in dict.fromkeys(f.backend for f in figures):
        mine = [f for f in figures if f.backend == backend]
        worst = max(mine, key=lambda f: f.p99_ms)
        ok = all(f.held for f in mine)
        held = held and ok
        print(
            f"{backend}: worst p99 {worst.p99_ms:.2f} ms (`{worst.query}`, {worst.policy}); "
            f"target {'held' if ok else 'MISSED'}"
        )
    return held


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgres")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200, help="runs of each query and policy")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rank-window",
        type=int,
        help="SessionDirectory's rank_window (default: its own, per database)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        print(f"unknown backend(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    print(f"measuring {code_state()}")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        for backend in backends:
            figures += run_backend(backend, args, Path(tmp))
    held = report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in figures], indent=2))
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
