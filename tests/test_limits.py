"""Holds on new work (issue 16, item 5): daily spending limits and paused repositories,
end to end (webhooks in over loopback HTTP, the fake GitHub's API calls counted, a fake
OpenAI-compatible server answering); the cost in the status comment; budget minutes
counting working time; `limits:` problems reported like any other bad configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.agents.config import parse_config
from bot.agents.limits_config import DailyLimit, Limits
from bot.agents.yamlcheck import ConfigFileError
from bot.cli import main
from bot.config import Settings
from bot.sessions.limits import Holds, count_usage, day_of, next_reset
from bot.sessions.service_core import working_minutes
from bot.sessions.store import SessionInfo, SessionOptions
from tests.conftest import run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeOpenAI, LLMRequest, Reply
from tests.test_api import BOOTSTRAP, THREAD, Api, api, assert_error
from tests.test_cli import env
from tests.test_sessions import (
    REPO,
    GitHubRig,
    agents_file,
    eventually,
    fake_github,
    github_settings,
    rig,
)

__all__ = ["api", "env", "fake_github", "rig"]

KEY = "sk-openai-test-limits-0a1b2c3d4e"
OPERATOR = "operator-token-limits-0123456789abc"
COMMENTS = r"/repos/octo-org/hello-world/issues/{n}/comments"
REACTIONS = r"/repos/octo-org/hello-world/issues/comments/\d+/reactions"
PERMISSION = r".*/collaborators/[^/]+/permission"

LLM_AGENT = """
providers:
  local:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_LIMITS_KEY
    defaults: {{model: gpt-4o}}
agents:
  talker:
    engine: llm
    provider: local
    systemPrompt: You talk.
sessions:
  keepSessionOpenForComments: true
{extra}
"""


def answer(request: LLMRequest) -> Reply:
    # 10,000 input tokens at gpt-4o's US$ 2.50 per million, 7 output at US$ 10: 25,070 micros.
    return Reply(text=[f"answer to: {request.last_user_text}"], input_tokens=10_000)


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("TL_TEST_LIMITS_KEY", KEY)
    async with FakeOpenAI(api_key=KEY) as fake:
        fake.responder = answer
        yield fake


def llm_settings(
    settings: Settings, gh: FakeGitHub, llm: FakeOpenAI, tmp_path: Path, extra: str
) -> Settings:
    config = tmp_path / "threadline.yml"
    config.write_text(LLM_AGENT.format(url=llm.base_url, extra=extra), encoding="utf-8")
    return with_settings(github_settings(settings, gh, str(config)), operator_token=OPERATOR)


async def test_a_repository_over_its_daily_limit_refuses_new_work_with_one_reply(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_github.add_issue(REPO, 8)
    extra = "limits:\n  repositoryPerDay: {tokens: 5000}\nstatus: {showCost: true}\n"
    async with run_app(llm_settings(settings, fake_github, llm, tmp_path, extra)) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline remember the word heron")
        await eventually(lambda: "waiting for comments" in rig.status(7), "the first turn", 30)
        # The first turn spent 10,007 tokens: over the repository's 5,000 for the day.
        # Its cost is in the status comment (status.showCost).
        assert "US$ 0.0251" in rig.status(7)
        calls = len(llm.requests)
        [session] = rig.sessions()

        # The live session takes the comment as input, but starts no model turn: it waits.
        await rig.comment(7, "and the colour teal")
        await rig.comment(7, "and the number nine")
        await rig.app.drain()
        await eventually(lambda: any("daily Threadline limit" in r for r in rig.replies(7)), "")
        said = [r for r in rig.replies(7) if "daily Threadline limit" in r]
        assert len(said) == 1  # told once, not once per comment
        assert "(10007 of 5000 tokens)" in said[0]
        assert "00:00 UTC" in said[0]
        await asyncio.sleep(1.5)  # a turn runner that ignored the hold would have claimed it
        assert len(llm.requests) == calls
        inputs = rig.app.runtime.sessions.store.inputs(session.id)
        assert [i.status for i in inputs if i.kind == "comment"] == ["queued", "queued"]

        # A new trigger elsewhere in the repository: one reply, no session, no 👀, and no
        # permission check (the hold is decided first, from the database alone).
        permission_checks = len(fake_github.requests_to("GET", PERMISSION))
        await rig.comment(8, "@threadline start something new")
        await rig.comment(8, "@threadline please?")
        await rig.app.drain()
        await eventually(lambda: rig.replies(8), "the refusal")
        assert len(fake_github.requests_to("POST", COMMENTS.format(n=8))) == 1
        [refusal] = rig.replies(8)
        assert refusal.startswith("`octo-org/hello-world` has spent its daily Threadline limit")
        assert len(rig.sessions()) == 1
        assert len(fake_github.requests_to("POST", REACTIONS)) == 1  # the first mention's only
        assert len(fake_github.requests_to("GET", PERMISSION)) == permission_checks

        # An operator raises the limit: the waiting session goes on with its queued input.
        rig.app.runtime.sessions.holds.limits = replace(
            rig.app.runtime.sessions.holds.limits,
            repository=replace(rig.app.runtime.sessions.holds.limits.repository, tokens=10**9),
        )
        await eventually(lambda: len(llm.requests) > calls, "the waiting turn", 30)
        assert "and the number nine" in llm.requests[-1].last_user_text


async def test_the_installation_s_daily_limit_holds_every_repository(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> None:
    extra = "limits:\n  installationPerDay: {maxCostUsd: 0.01}\n"
    async with run_app(llm_settings(settings, fake_github, llm, tmp_path, extra)) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline remember the word heron")
        await eventually(lambda: "waiting for comments" in rig.status(7), "the first turn", 30)
        assert "US$" not in rig.status(7)  # the cost is not shown unless configured
        await rig.comment(12, "@threadline look at the retries")
        await eventually(lambda: rig.replies(12), "the refusal")
        [refusal] = rig.replies(12)
        assert refusal.startswith("Threadline has spent its daily limit for all repositories")
        assert "US$ 0.025070 of US$ 0.010000" in refusal
        assert len(rig.sessions()) == 1


async def test_a_paused_repository_records_comments_and_starts_nothing(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    configured = with_settings(
        github_settings(settings, fake_github, agents_file(tmp_path)), operator_token=OPERATOR
    )
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    async with run_app(configured) as app:
        rig = GitHubRig(app, fake_github)
        # Paused from the inspector's Repositories page, as an operator.
        async with app.http.post(
            f"{app.url}/inspect/repos/pause", data={"repo": REPO}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()  # followed the 303 to the page
            page = await resp.text()
        assert 'data-testid="paused-row" data-repo="octo-org/hello-world"' in page
        writes_before = len(fake_github.requests)
        await rig.comment(7, "@threadline fix the retries")
        await rig.comment(7, "@threadline are you there?")
        await rig.app.drain()
        await eventually(lambda: rig.replies(7), "the one reply")
        assert rig.sessions() == []
        [reply] = rig.replies(7)
        assert reply.startswith("Threadline is paused in `octo-org/hello-world` by an operator")
        # Host API calls: one comment posted (with its token), nothing else.
        writes = [
            (r.method, r.path)
            for r in fake_github.requests[writes_before:]
            if r.method != "GET" and "/access_tokens" not in r.path
        ]
        assert writes == [("POST", COMMENTS.format(n=7))]
        assert fake_github.requests_to("GET", PERMISSION) == []
        # The comments are recorded all the same.
        recorded = [c.body for c in rig.app.runtime.history.all()]
        assert recorded == ["@threadline fix the retries", "@threadline are you there?"]

        async with app.http.post(
            f"{app.url}/inspect/repos/resume", data={"repo": REPO}, headers=auth
        ) as resp:
            assert "Resumed" in await resp.text()
        await rig.comment(7, "@threadline now fix them")
        await eventually(lambda: rig.sessions(), "a session")
        await eventually(lambda: rig.replies(7)[-1] == "task: now fix them", "the agent's reply")


async def test_a_viewer_sees_the_repositories_page_but_cannot_pause(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    viewer = "viewer-token-limits-0123456789abcdef"
    configured = with_settings(
        github_settings(settings, fake_github, agents_file(tmp_path)),
        operator_token=OPERATOR,
        viewer_token=viewer,
    )
    async with run_app(configured) as app:
        auth = {"Authorization": f"Bearer {viewer}"}
        async with app.http.get(f"{app.url}/inspect/repos", headers=auth) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "No repository is paused." in page
        assert 'data-testid="pause-form"' not in page
        async with app.http.post(
            f"{app.url}/inspect/repos/pause", data={"repo": REPO}, headers=auth
        ) as resp:
            assert resp.status == 403
        holds = Holds(app.engine)
        assert holds.pauses() == []


def test_repos_commands_pause_list_and_resume(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["repos", "pause", "github:octo-org/hello-world"]) == 0
    assert "paused github:octo-org/hello-world" in capsys.readouterr().out
    assert main(["repos", "pause", "not a repo"]) == 2
    assert "is not a repository" in capsys.readouterr().err
    assert main(["repos", "list"]) == 0
    listed = capsys.readouterr().out
    assert "paused  octo-org/hello-world (github)  by operator" in listed
    assert "today (UTC): 0 tokens, US$ 0.000000 in all" in listed
    assert main(["repos", "resume", "github:octo-org/hello-world"]) == 0
    assert main(["repos", "resume", "github:octo-org/hello-world"]) == 1
    assert "is not paused" in capsys.readouterr().err


# ------------------------------------------------------------------- pure parts


def test_the_day_is_the_utc_calendar_day() -> None:
    late = datetime(2026, 12, 4, 23, 59, 59, tzinfo=UTC)
    assert day_of(late) == "2026-12-04"
    assert day_of(late + timedelta(seconds=1)) == "2026-12-05"
    assert next_reset(late) == datetime(2026, 12, 5, tzinfo=UTC)


def _session(created: datetime, time_limit_at: datetime, extended: float = 0) -> SessionInfo:
    return SessionInfo(
        id="s-00000001",
        thread=None,  # type: ignore[arg-type]
        installation_id=None,
        agent_id="a",
        state="busy",
        close_reason=None,
        closed_by=None,
        task="t",
        started_by="m",
        trigger_comment_id=None,
        options=SessionOptions(time_limit_minutes=10),
        created_at=created,
        updated_at=created,
        closed_at=None,
        time_limit_at=time_limit_at,
        idle_deadline_at=None,
        lifetime_at=created + timedelta(hours=1),
        extended_minutes=extended,
        turns=2,
        completed=False,
        progress={},
        output=None,
        status_seq=0,
    )


def test_budget_minutes_count_working_time_not_waiting() -> None:
    start = datetime(2026, 12, 4, 12, tzinfo=UTC)
    # Launched at 12:00 with a 10 min limit; it then waited 45 min for comments, which
    # moved its time limit on to 12:55 when the next turn began.
    session = _session(start, start + timedelta(minutes=55))
    now = start + timedelta(minutes=48)  # 3 min into the second turn
    assert working_minutes(session, now) == pytest.approx(3.0)
    # /extend 5 moves the limit on, and is not counted as work either.
    extended = _session(start, start + timedelta(minutes=60), extended=5)
    assert working_minutes(extended, now) == pytest.approx(3.0)


def test_limits_problems_are_reported_with_their_lines() -> None:
    text = """agents:
  a: {engine: script, script: [{do: [{reply: hi}]}]}
limits:
  repositoryPerDay: {tokens: 0, maxCostUsd: free}
  installationPerDay: 5
  repositories:
    justaname: {tokens: 10}
  perWeek: {tokens: 10}
status: {showCost: yes please}
"""
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text)
    problems = raised.value.problems
    assert problems == [
        "threadline.yml:4: limits.repositoryPerDay.tokens: expected a positive whole number, got 0",
        "threadline.yml:4: limits.repositoryPerDay.maxCostUsd: expected a positive number of "
        "US dollars, got 'free'",
        "threadline.yml:5: limits.installationPerDay: expected a mapping with the keys tokens, "
        "maxCostUsd, got 5",
        "threadline.yml:7: limits.repositories.justaname: expected OWNER/REPO (a GitLab group "
        "path may have more parts), got 'justaname'",
        "threadline.yml:8: limits.perWeek: unknown key; expected one of repositoryPerDay, "
        "installationPerDay, repositories",
        "threadline.yml:9: status.showCost: expected true or false, got 'yes please'",
    ]
    good = parse_config(
        text.split("limits:")[0] + "limits:\n  repositories:\n    Org/Sub/App: {maxCostUsd: 2}\n"
    )
    assert good.limits.for_repo("org/sub/app").cost_micros == 2_000_000
    assert good.limits.for_repo("other/app").set is False


def test_config_check_and_doctor_catch_bad_limits(
    env: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "threadline.yml"
    config.write_text("limits:\n  repositoryPerDay: {tokens: -3}\n", encoding="utf-8")
    monkeypatch.setenv("THREADLINE_CONFIG", str(config))
    problem = "limits.repositoryPerDay.tokens: expected a positive whole number, got -3"
    assert main(["config", "check"]) == 2
    out = capsys.readouterr()
    assert problem in out.out + out.err
    assert main(["doctor"]) == 1
    out = capsys.readouterr()
    assert problem in out.out + out.err


async def test_an_api_launch_in_a_paused_repository_is_refused(api: Api) -> None:
    assert Holds(api.app.engine).pause("local", THREAD["repo"], "operator")
    status, body = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "a", "thread": THREAD})
    assert_error(status, body, 409, "held")
    assert body["error"]["message"].startswith("Threadline is paused in")
    assert api.sessions() == 0
    assert Holds(api.app.engine).resume("local", THREAD["repo"])
    status, body = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "a", "thread": THREAD})
    assert status == 201, body


def test_a_repository_s_own_daily_limit_overrides_the_default(engine: Engine) -> None:
    from sqlalchemy.orm import Session

    limits = Limits(
        repository=DailyLimit(tokens=5000),
        repositories={"org/big": DailyLimit(tokens=20_000)},
    )
    holds = Holds(engine, limits)
    today = day_of(holds.clock())
    with Session(engine) as session, session.begin():
        for repo in ("Org/Big", "org/small", "org/quiet"):
            count_usage(session, today, "github", repo, 100 if repo == "org/quiet" else 9000, 0)
        count_usage(session, "2000-01-01", "github", "org/old", 10**9, 0)  # another day
    held = holds.held()
    assert sorted(held.repos) == [("github", "org/small")]
    assert held.everything is None
    assert holds.hold_for("github", "ORG/SMALL") is not None
    assert holds.hold_for("gitlab", "org/small") is None  # another host's repository
    assert [u.repo for u in holds.today()] == ["org/big", "org/small", "org/quiet"]
