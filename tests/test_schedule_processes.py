"""A schedule that fires every second, with two real worker processes sharing one
database: each occurrence fires once, in one of them, and launches one session."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import make_engine
from bot.db.models import ScheduleFire, SessionRow
from tests.conftest import seed_schema
from tests.procs import Proc, start

pytestmark = pytest.mark.slow

AGENTS = """
agents:
  ticker:
    engine: script
    script:
      - match: task
        do:
          - task_completed: "tick {input}"
schedules:
  tick:
    cron: "* * * * * *"
    agent: ticker
    message: one tick
    target: {headless: true}
    misfireGraceSeconds: 30
"""
FIRED = re.compile(r"schedule tick fired for (\S+): (\w+)")


def test_two_worker_processes_fire_each_occurrence_once(
    database_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    seed_schema(database_url)
    config = tmp_path / "threadline.yml"
    config.write_text(AGENTS, encoding="utf-8")
    env = {"THREADLINE_CONFIG": str(config)}
    workers = [
        start(procs, ["worker", "--no-migrate"], database_url, tmp_path, name, env)
        for name in ("worker-a", "worker-b")
    ]
    for worker in workers:
        worker.wait_for(r"schedules: tick")
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                count = len(conn.execute(select(ScheduleFire.id)).all())
            if count >= 6:
                break
            time.sleep(0.2)
        for worker in workers:
            assert worker.stop() == 0
        # Each occurrence was fired by exactly one process, as both logs tell.
        fired: list[tuple[str, str, str]] = []
        for worker in workers:
            text = worker.log.read_text(errors="replace")
            fired += [(m.group(1), m.group(2), worker.log.stem) for m in FIRED.finditer(text)]
        occurrences = [due for due, _, _ in fired]
        assert len(occurrences) >= 6
        assert len(occurrences) == len(set(occurrences)), fired
        assert {status for _, status, _ in fired} == {"launched"}
        with engine.connect() as conn:
            rows = conn.execute(
                select(ScheduleFire.due_at, ScheduleFire.session_id, ScheduleFire.runner)
            ).all()
            sessions = conn.execute(
                select(SessionRow.id).where(SessionRow.started_by == "schedule:tick")
            ).all()
        assert len(rows) == len(fired)
        # One session per occurrence, each recorded with the occurrence that made it.
        assert sorted(r[1] for r in rows) == sorted(s[0] for s in sessions)
        assert len({r[0] for r in rows}) == len(rows)
        print(
            "fired per process:",
            {name: sum(1 for f in fired if f[2] == name) for name in ("worker-a", "worker-b")},
        )
    finally:
        engine.dispose()
