"""Sessions that keep up with a conversation (issue 16, items 2 and 3), end to end:
webhooks in over loopback HTTP, the fake GitHub and a fake OpenAI-compatible server
answering, short configured limits and no long sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeOpenAI, LLMRequest, Reply
from tests.test_sessions import (
    GitHubRig,
    agents_file,
    eventually,
    fake_github,
    github_settings,
    rig,
)

__all__ = ["fake_github", "rig"]

KEY = "sk-openai-test-continuity-0a1b2c3d"
OPERATOR = "operator-token-continuity-0123456789"

LLM_AGENT = """
providers:
  local:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_CONTINUITY_KEY
    defaults: {{model: talk-model}}
agents:
  talker:
    engine: llm
    provider: local
    systemPrompt: You talk.
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {{maxDurationMinutes: {time_limit}}}
  idleExpiryMinutes: {idle}
"""


def answer(request: LLMRequest) -> Reply:
    return Reply(text=[f"answer to: {request.last_user_text}"])


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("TL_TEST_CONTINUITY_KEY", KEY)
    async with FakeOpenAI(api_key=KEY) as fake:
        fake.responder = answer
        yield fake


def user_texts(request: LLMRequest) -> str:
    return " ".join(str(m.get("content")) for m in request.messages if m.get("role") == "user")


async def test_waiting_is_not_working_and_a_mention_resumes_an_expired_session(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "threadline.yml"
    # A 9 s time limit (room for a first turn on a loaded machine) and a 15 s idle expiry.
    config.write_text(LLM_AGENT.format(url=llm.base_url, time_limit=0.15, idle=0.25))
    configured = with_settings(
        github_settings(settings, fake_github, str(config)), operator_token=OPERATOR
    )
    async with run_app(configured) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline remember the word heron")
        await eventually(lambda: "waiting for comments" in rig.status(7), "idle", 30)
        [first] = rig.sessions()
        await asyncio.sleep(9.5)  # waiting longer than the time limit
        assert rig.app.runtime.sessions.store.get(first.id).live  # type: ignore[union-attr]
        await rig.comment(7, "and the colour teal")
        await eventually(
            lambda: rig.session_events(first.id).count("turn_finished") == 2, "the follow-up", 30
        )
        assert llm.requests[-1].last_user_text.endswith("and the colour teal")
        # Idle expiry counts wall time: it still closes the session.
        await eventually(lambda: "idle too long" in rig.status(7), "idle expiry", 60)
        assert "mention the bot in this thread to pick up where it left off" in rig.status(7)
        ended = rig.app.runtime.sessions.store.get(first.id)
        assert ended is not None
        assert ended.close_reason == "idle_expiry"

        before = len(llm.requests)
        await rig.comment(7, "@threadline what did I ask you to remember?")
        await eventually(lambda: len(rig.sessions()) == 2, "a second session")
        second = rig.sessions()[0]
        assert second.resumed_from == first.id
        await eventually(lambda: len(llm.requests) > before, "the resumed session's request")
        resumed = user_texts(llm.requests[before])
        for said in ("heron", "teal", "remember?"):
            assert said in resumed
        assert second.tokens_in >= ended.tokens_in > 0  # the line's spending carries over

        # Both linked in the inspector.
        auth = {"Authorization": f"Bearer {OPERATOR}"}
        async with app.http.get(f"{app.url}/api/sessions/{second.id}", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["resumed_from"] == first.id
        async with app.http.get(f"{app.url}/api/sessions/{first.id}", headers=auth) as resp:
            assert (await resp.json())["resumed_by"] == second.id


async def test_done_ends_the_line_of_work_and_the_next_mention_starts_fresh(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "threadline.yml"
    config.write_text(LLM_AGENT.format(url=llm.base_url, time_limit=10, idle=10))
    async with run_app(github_settings(settings, fake_github, str(config))) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline remember the word heron")
        await eventually(lambda: "waiting for comments" in rig.status(7), "idle", 30)
        await rig.comment(7, "/done")
        await eventually(lambda: not rig.sessions()[0].live, "closed")
        before = len(llm.requests)
        await rig.comment(7, "@threadline start over")
        await eventually(lambda: len(llm.requests) > before, "the new session's request")
        assert rig.sessions()[0].resumed_from is None
        assert "heron" not in user_texts(llm.requests[before])


async def test_a_session_whose_agent_was_removed_closes_and_says_so(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    first = agents_file(tmp_path)
    async with run_app(github_settings(settings, fake_github, first)) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline hello")
        await eventually(lambda: "waiting for comments" in rig.status(7), "idle")
    other = tmp_path / "other.yml"
    other.write_text(
        "agents:\n  fixer:\n    engine: script\n    script:\n      - do:\n"
        "          - reply: 'fixer: {input}'\n"
        "sessions:\n  keepSessionOpenForComments: true\n"
    )
    async with run_app(github_settings(settings, fake_github, str(other))) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "still there?")
        await eventually(lambda: "agent was removed" in rig.status(7), "the status says so")
        [session] = rig.sessions()
        assert (session.state, session.close_reason) == ("closed", "agent_removed")
        await eventually(
            lambda: any("no longer in Threadline's configuration" in r for r in rig.replies(7)),
            "the reply says why",
        )
        # The thread is free again: the new configuration's agent starts.
        await rig.comment(7, "/agent fixer go")
        await eventually(lambda: rig.replies(7)[-1] == "fixer: go", "the new agent answers")


def settled(rig: GitHubRig) -> bool:
    """No delivery is waiting or being handled, and the outbox has nothing to send."""
    inbox = rig.app.inbox.counts()
    outbox = rig.app.runtime.outbox.counts()
    busy = inbox.get("pending", 0) + inbox.get("processing", 0)
    return busy == 0 and outbox.get("pending", 0) + outbox.get("sending", 0) == 0


async def test_agent_x_in_a_live_thread_and_an_outsider_s_comments_are_answered_once(
    rig: GitHubRig,
) -> None:
    await rig.comment(7, "@threadline hello")
    await eventually(lambda: "waiting for comments" in rig.status(7), "idle")
    [session] = rig.sessions()
    await rig.comment(7, "/agent helper something else")
    await eventually(
        lambda: rig.replies(7)[-1].startswith(f"Session `{session.id}` (agent `helper`)"),
        "which session is live",
    )
    assert "/done" in rig.replies(7)[-1]
    await rig.comment(7, "@threadline do it my way", author="outsider")
    await rig.comment(7, "and another thing", author="outsider")
    await eventually(
        lambda: rig.session_events(session.id).count("input_ignored") == 2, "both noted"
    )
    # Both deliveries finished (a refusal is queued before its delivery is done) and
    # the outbox has nothing left to send: a second refusal, were there one, is posted.
    await eventually(lambda: settled(rig), "the inbox and outbox settled")
    refusals = [r for r in rig.replies(7) if r.startswith("Sorry @outsider")]
    assert len(refusals) == 1
    assert len(rig.sessions()) == 1
    assert rig.sessions()[0].turns == 1, "nothing was fed to the session"
