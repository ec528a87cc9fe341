"""Scheduled agent turns: the `schedules:` section checked at load (and by `config check`),
each occurrence fired once by runners sharing one database (an injected clock), misfire
grace, a schedule opening a GitHub issue and running its turn there end to end, the new
issue on GitLab and in the playground, and `threadline schedules list`."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bot.agents.config import ConfigFileError, parse_config
from bot.agents.schedule_config import ScheduleSpec, ScheduleTarget
from bot.cli import main
from bot.config import Settings
from bot.db import make_engine
from bot.db.models import ScheduleFire
from bot.hosts.local import LocalHost
from bot.schedules import ScheduleRunner, next_occurrence, occurrence
from tests import payloads as p
from tests.conftest import run_app, seed_schema, with_settings
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, eventually, fake_github, github_settings, strip

__all__ = ["fake_github"]

AGENTS = """
agents:
  triager:
    engine: script
    script:
      - match: task
        do:
          - reply: "scheduled: {input}"
          - task_completed: "triaged"
  other:
    engine: script
    script:
      - do: [{reply: hi}]
"""

GOOD = (
    AGENTS
    + """
schedules:
  weekly-triage:
    cron: "0 9 * * mon"
    timezone: Europe/Paris
    agent: triager
    message: Triage this week's issues.
    target:
      issue: {host: github, repo: octo-org/hello-world, installationId: 4242, title: "Triage {date}"}
    active_tools: [reply, task_completed]
    tool_choice: {type: any}
    misfireGraceSeconds: 120
  nightly:
    cron: "30 2 * * *"
    agent: other
    message: Say hi.
    target: {headless: true}
    enabled: false
"""
)


def test_a_good_schedules_section_loads() -> None:
    config = parse_config(GOOD)
    weekly, nightly = config.schedules
    assert weekly == ScheduleSpec(
        name="weekly-triage",
        cron="0 9 * * mon",
        timezone="Europe/Paris",
        agent="triager",
        message="Triage this week's issues.",
        target=ScheduleTarget(
            "issue", "github", "octo-org/hello-world", 4242, title="Triage {date}"
        ),
        active_tools=("reply", "task_completed"),
        tool_choice={"type": "any"},
        misfire_grace_seconds=120.0,
    )
    assert (nightly.target.kind, nightly.enabled, nightly.timezone) == ("headless", False, "UTC")
    # Monday 9:00 in Paris is 8:00 UTC in winter.
    after = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
    assert next_occurrence(weekly, after) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


BAD = (
    AGENTS
    + """
schedules:
  broken:
    cron: "61 * * * *"
    timezone: Mars/Olympus
    agent: nobody
    message: ""
    target:
      headless: true
      thread: {host: github, repo: o/r, number: 1, installationId: 1}
    active_tools: [reply, teleport]
    tool_choice: sometimes
    misfireGraceSeconds: -5
  half:
    cron: "* * *"
    agent: triager
    message: hi
    target:
      issue: {host: bitbucket, repo: o/r, title: t}
  Bad Name:
    cron: "* * * * *"
"""
)


def test_every_problem_of_a_bad_schedule_is_reported_with_its_line() -> None:
    with pytest.raises(ConfigFileError) as caught:
        parse_config(BAD)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "threadline.yml:17: schedules.broken.cron: not a cron expression",
        "threadline.yml:18: schedules.broken.timezone: unknown time zone 'Mars/Olympus'",
        "threadline.yml:19: schedules.broken.agent: unknown agent 'nobody'",
        "threadline.yml:20: schedules.broken.message: expected non-empty text",
        "threadline.yml:21: schedules.broken.target: give exactly one of thread, issue or headless",
        "threadline.yml:24: schedules.broken.active_tools[1]: unknown tool 'teleport'",
        "threadline.yml:25: schedules.broken.tool_choice: expected auto, any, none",
        "threadline.yml:26: schedules.broken.misfireGraceSeconds: expected a positive number",
        "threadline.yml:28: schedules.half.cron: not a cron expression (3 fields)",
        "schedules.half.target.issue.host: expected one of github, gitlab, local, got 'bitbucket'",
        "schedules.Bad Name: schedule names are lowercase",
    ):
        assert expected in problems, problems


def test_config_check_catches_a_bad_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    path = tmp_path / "threadline.yml"
    path.write_text(BAD, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", p.SECRET)
    monkeypatch.setenv("THREADLINE_CONFIG", str(path))
    assert main(["config", "check"]) == 2
    out = capsys.readouterr().out
    assert "schedules.broken.cron: not a cron expression" in out
    assert "not ok: serve would refuse to start" in out


# ------------------------------------------------------- occurrences, on the database


def spec(name: str, cron: str, grace: float = 300.0) -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        cron=cron,
        timezone="UTC",
        agent="triager",
        message="go",
        target=ScheduleTarget("headless"),
        misfire_grace_seconds=grace,
    )


def test_the_latest_occurrence_within_grace() -> None:
    trigger = spec("m", "* * * * *").trigger()
    now = datetime(2026, 12, 4, 10, 5, 30, tzinfo=UTC)
    assert occurrence(trigger, now, 300) == datetime(2026, 12, 4, 10, 5, tzinfo=UTC)
    assert occurrence(trigger, now, 20) is None  # 10:05:00 is 30 s old
    hourly = spec("h", "0 * * * *").trigger()
    assert occurrence(hourly, now, 300) is None  # 10:00 is 5.5 min old


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engines(engine: Engine, database_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database, as two processes have."""
    other = make_engine(database_url)
    yield engine, other
    other.dispose()


async def test_two_runners_fire_each_occurrence_once(engines: tuple[Engine, Engine]) -> None:
    clock = Clock(datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC))
    fired: list[tuple[str, str, datetime]] = []

    def firer(runner: str):  # type: ignore[no-untyped-def]
        async def fire(schedule: ScheduleSpec, due: datetime) -> tuple[str, str]:
            await asyncio.sleep(0.001)
            fired.append((runner, schedule.name, due))
            return "launched", f"s-{len(fired):08x}"

        return fire

    specs = [spec("every-minute", "* * * * *"), spec("every-two", "*/2 * * * *")]
    runners = [
        ScheduleRunner(engine, specs, firer(name), clock=clock, name=name)
        for engine, name in zip(engines, ("one", "two"), strict=True)
    ]
    # Ten minutes in 15-second steps; both runners check at every step, at once.
    for _ in range(40):
        await asyncio.gather(*(runner.tick() for runner in runners))
        clock.now += timedelta(seconds=15)
    minutes = [datetime(2026, 12, 4, 10, m, tzinfo=UTC) for m in range(10)]
    expected = [("every-minute", m) for m in minutes] + [
        ("every-two", m) for m in minutes if m.minute % 2 == 0
    ]
    assert sorted((name, due) for _, name, due in fired) == sorted(expected)
    with engines[0].connect() as conn:
        rows = conn.execute(
            select(ScheduleFire.schedule, ScheduleFire.due_at, ScheduleFire.status)
        ).all()
    assert sorted((r[0], r[1]) for r in rows) == sorted(expected)
    assert {r[2] for r in rows} == {"launched"}

    # Down for ten minutes: the occurrences inside the grace (5 min) coalesce into the
    # latest one; the older ones are skipped.
    clock.now += timedelta(minutes=10)
    fired.clear()
    await asyncio.gather(*(runner.tick() for runner in runners))
    latest = clock.now.replace(second=0, microsecond=0)
    assert sorted((name, due) for _, name, due in fired) == sorted(
        [("every-minute", latest)]
        + (
            [("every-two", latest)]
            if latest.minute % 2 == 0
            else [("every-two", latest - timedelta(minutes=1))]
        )
    )


async def test_a_failed_fire_is_recorded_and_the_next_occurrence_still_comes(
    engine: Engine,
) -> None:
    clock = Clock(datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC))
    calls = 0

    async def fire(schedule: ScheduleSpec, due: datetime) -> tuple[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the host said no")
        return "launched", "s-00000002"

    runner = ScheduleRunner(engine, [spec("m", "* * * * *")], fire, clock=clock)
    await runner.tick()
    clock.now += timedelta(minutes=1)
    await runner.tick()
    fires = runner.fires.fires("m")
    assert [(f.status, f.session_id, f.detail) for f in fires] == [
        ("failed", None, "RuntimeError: the host said no"),
        ("launched", "s-00000002", None),
    ]


# ---------------------------------------------------------------- end to end


async def test_a_schedule_opens_a_github_issue_and_runs_its_turn_there(
    settings: Settings,
    fake_github: FakeGitHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "threadline.yml"
    path.write_text(
        AGENTS
        + f"""
schedules:
  triage:
    cron: "* * * * * *"
    agent: triager
    message: Look at the new issues.
    target:
      issue: {{host: github, repo: {REPO}, installationId: 4242, title: "Triage {{date}}"}}
    active_tools: [reply, task_completed]
""",
        encoding="utf-8",
    )
    repo = fake_github.repos[REPO]
    before = set(repo.issues)
    token = "tl-operator-token-for-schedules-0123456789"
    served = with_settings(github_settings(settings, fake_github, str(path)), operator_token=token)
    async with run_app(served) as app:

        def opened() -> list[int]:
            return sorted(set(repo.issues) - before)

        def answered() -> bool:
            return any(
                strip(c["body"]) == "scheduled: Look at the new issues."
                for c in fake_github.issue_comments.values()
                if c["_number"] in opened()
            )

        await eventually(answered, "the scheduled turn answers in its new issue", within=40.0)
        number = next(
            c["_number"]
            for c in fake_github.issue_comments.values()
            if strip(c["body"]) == "scheduled: Look at the new issues."
        )
        issue = repo.issues[number]
        assert issue.title.startswith("Triage 20")
        assert "<!-- threadline:schedule triage " in issue.body
        with app.engine.connect() as conn:
            fires = conn.execute(select(ScheduleFire).order_by(ScheduleFire.id)).all()
        launched = [f for f in fires if f.session_id]
        assert launched
        session = app.runtime.sessions.store.get(launched[0].session_id)
        assert session is not None
        assert session.started_by == "schedule:triage"
        assert session.thread.target == "issue"
        assert session.spec is not None
        assert session.spec["tools"] == ["reply", "task_completed"]
        # The inspector shows the last run (and its session) and the next one.
        page = f"{app.url}/inspect/schedules"
        async with app.http.get(page, allow_redirects=False) as resp:
            assert resp.status == 303  # signed in only
        async with app.http.get(page, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            html = await resp.text()
        assert 'data-schedule="triage"' in html
        # The schedule fires every second: its last run may be one still firing.
        last_cell = html.split('data-testid="last-run">', 1)[1].split("</td>", 1)[0]
        assert re.search(r'class="badge (launched|firing)"', last_cell), last_cell
        next_cell = html.split('data-testid="next-run">', 1)[1].split("</td>", 1)[0]
        assert next_cell.startswith("20")
    # The CLI shows it with its last and next run.
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("THREADLINE_CONFIG", str(path))
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", p.SECRET)
    capsys.readouterr()
    assert main(["schedules", "list", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["name"] == "triage"
    assert shown["last_run"]["status"] in ("launched", "firing", "failed")  # stopped mid-way
    assert shown["last_run"]["due_at"] >= launched[0].due_at.isoformat()
    assert shown["next_run"] is not None


async def test_the_playground_opens_an_issue(engine: Engine, database_url: str) -> None:
    seed_schema(database_url)
    host = LocalHost.over(engine, "threadline[bot]")
    host.store.prepare("threadline[bot]")
    repo = host.store.pulls()[0].repo
    made = await host.create_issue(repo, title="Triage", body="look")
    again = await host.create_issue(repo, title="Triage 2", body="look again")
    assert again.number == made.number + 1
    row = host.store.pull(repo, made.number)
    assert row is not None
    assert (row.title, row.body) == ("Triage", "look")
