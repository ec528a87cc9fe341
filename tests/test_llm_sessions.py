"""LLM agents end to end: webhooks in over loopback HTTP, fake OpenAI-compatible and
Anthropic servers answering (also over loopback, in their wire formats), the fake GitHub
recording what Threadline writes, and the transcript telling what happened."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.agents.base import Budget, BudgetExceeded
from bot.config import Settings
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Call, Failure, FakeAnthropic, FakeOpenAI, LLMRequest, Reply, overlapping
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]  # the fixture, shared with test_sessions

OPENAI_KEY = "sk-openai-test-5e1f0c2d9a8b7c6d"
ANTHROPIC_KEY = "sk-ant-test-a1b2c3d4e5f60718"
REVIEWERS = ("security", "performance", "api")

AGENTS = """
providers:
  local-openai:
    kind: openai
    baseUrl: {openai}
    apiKeyEnv: TL_TEST_OPENAI_KEY
    maxRetries: 2
    timeoutSeconds: 10
    defaults: {{model: coordinator-model, temperature: 0.5, maxTokens: 900}}
  claude:
    kind: anthropic
    baseUrl: {anthropic}
    apiKeyEnv: TL_TEST_ANTHROPIC_KEY
    maxRetries: 2
    timeoutSeconds: 10
    defaults: {{model: reviewer-model, maxTokens: 700, topK: 40}}
agents:
  coordinator:
    engine: llm
    provider: local-openai
    description: Coordinates pull request reviews
    systemPrompt: You coordinate reviews of pull requests.
    runtimeParams: {{temperature: 0.1, providerSpecific: {{seed: 7}}}}
    agentIds: [security, performance, api]
    maxDelegations: {max_delegations}
{coordinator_extra}
  security:
    engine: llm
    provider: claude
    description: Looks for security problems
    systemPrompt: "agent=security"
    active_tools: [get_diff, post_review_thread, task_completed]
    runtimeParams: {{temperature: 0.2}}
  performance:
    engine: llm
    provider: claude
    description: Looks for performance problems
    systemPrompt: "agent=performance"
    active_tools: [get_diff, post_review_thread, task_completed]
  api:
    engine: llm
    provider: claude
    description: Checks API contracts
    systemPrompt: "agent=api"
    active_tools: [get_diff, post_review_thread, task_completed]
sessions:
  keepSessionOpenForComments: true
"""

LINES = {"security": 3, "performance": 5, "api": 8}
# Prompt-level runtimeParams one delegation carries (over the agent's and the provider's).
PROMPT_PARAMS = {"security": {"runtimeParams": {"temperature": 0.9, "maxTokens": 300}}}


def agents_file(
    tmp: Path,
    openai: FakeOpenAI,
    anthropic: FakeAnthropic,
    *,
    max_delegations: int = 5,
    coordinator_extra: str = "",
) -> str:
    path = tmp / "threadline.yml"
    path.write_text(
        AGENTS.format(
            openai=openai.base_url,
            anthropic=anthropic.base_url,
            max_delegations=max_delegations,
            coordinator_extra=coordinator_extra,
        ),
        encoding="utf-8",
    )
    return str(path)


def reviewer_of(request: LLMRequest) -> str:
    found = re.search(r"agent=(\w+)", request.system)
    assert found, request.system
    return found.group(1)


def reviewer(request: LLMRequest) -> Reply:
    """A sub-agent: reads the diff, opens one review thread, completes with a verdict."""
    name = reviewer_of(request)
    done = [r["content"] for r in request.tool_results]
    if not done:
        return Reply(text=[f"{name} reading. "], calls=[Call("get_diff", {})], delay=0.3)
    if any("review thread queued" in str(c) for c in done):
        verdict = f"{name}: one finding on line {LINES[name]}"
        return Reply(calls=[Call("task_completed", {"output": verdict})])
    body = f"[{name}] look at this line"
    where = {"path": "src/retry.py", "line": LINES[name], "body": body}
    return Reply(calls=[Call("post_review_thread", where)], delay=0.2)


def coordinator(request: LLMRequest) -> Reply:
    """Delegates the three reviews in one answer, then aggregates; answers follow-ups."""
    results = request.tool_results
    last = request.last_user_text
    if results and all("one finding" in str(r["content"]) for r in results):
        summary = "\n".join(sorted(str(r["content"]) for r in results))
        return Reply(
            text=["All three reviews are in."],
            calls=[
                Call("reply", {"body": "Review summary:\n" + summary}),
                Call("task_completed", {"output": summary}),
            ],
        )
    if results:  # after reply/task_completed, or a follow-up's reply
        return Reply(text=["Done."])
    if "follow-up" in last:
        return Reply(calls=[Call("reply", {"body": "Follow-up answered: tests look fine."})])
    calls = [
        Call(
            "delegate_to_sub_agent",
            {
                "agent_id": name,
                "task": f"Review pull request #12 of {REPO} for {name} issues. "
                "Use get_diff, post one review thread per finding, then task_completed.",
                **PROMPT_PARAMS.get(name, {}),
            },
        )
        for name in REVIEWERS
    ]
    return Reply(text=["Delegating three reviews."], calls=calls)


@dataclass
class LLMRig(GitHubRig):
    openai: FakeOpenAI
    anthropic: FakeAnthropic

    def sessions(self) -> list[Any]:
        """The sessions of threads (delegations left out), newest first."""
        return [s for s in super().sessions() if s.parent_id is None]

    def transcript(self, session_id: str) -> list[Any]:
        return self.app.runtime.sessions.store.transcript(session_id)

    def children(self, session_id: str) -> list[Any]:
        return self.app.runtime.sessions.store.children(session_id)


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic]]:
    monkeypatch.setenv("TL_TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TL_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    async with (
        FakeOpenAI(api_key=OPENAI_KEY) as openai,
        FakeAnthropic(api_key=ANTHROPIC_KEY) as anthropic,
    ):
        openai.responder = coordinator
        anthropic.responder = reviewer
        yield openai, anthropic


def make_rig(
    settings: Settings, gh: FakeGitHub, fakes: tuple[FakeOpenAI, FakeAnthropic], config: str
) -> Any:
    return run_app(github_settings(settings, gh, config))


@pytest.fixture
async def rig(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> AsyncIterator[LLMRig]:
    openai, anthropic = fakes
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = agents_file(tmp_path, openai, anthropic)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        yield LLMRig(app, fake_github, openai, anthropic)


DIFF = """diff --git a/src/retry.py b/src/retry.py
--- a/src/retry.py
+++ b/src/retry.py
@@ -1,3 +1,9 @@
 import time
+def retry(fn, times=3):
+    for attempt in range(times):
+        try:
+            return fn()
+        except Exception:
+            time.sleep(2 ** attempt)
"""


def dump(events: list[Any]) -> str:
    return json.dumps([(e.kind, e.data) for e in events], default=str)


async def test_a_coordinator_delegates_three_reviews_at_once_and_continues_on_follow_up(
    rig: LLMRig,
) -> None:
    await rig.comment(12, "@threadline review this PR")
    await eventually(
        lambda: rig.replies(12) and rig.replies(12)[-1].startswith("Review summary:"),
        "the coordinator's summary",
        within=30,
    )
    [session] = rig.sessions()
    await eventually(lambda: rig.sessions()[0].state == "idle", "the turn ends")

    # Three sub-agent sessions, linked to the coordinator's, each with its own transcript.
    children = rig.children(session.id)
    assert sorted(c.agent_id for c in children) == sorted(REVIEWERS)
    assert all(c.parent_id == session.id and c.state == "closed" for c in children)
    assert all(c.close_reason == "done" and c.completed for c in children)
    # Their first model calls ran at the same time (each takes 0.3 s before answering).
    firsts = [r for r in rig.anthropic.requests if not r.tool_results]
    assert len(firsts) == 3
    assert overlapping(firsts)

    # Review threads went to GitHub through the host adapter, at the pull's head commit.
    reviews = rig.gh.requests_to("POST", r"/repos/.*/pulls/12/reviews")
    assert len(reviews) == 3
    posted = sorted((r.json["comments"][0]["line"], r.json["commit_id"]) for r in reviews)
    assert posted == [(3, "a" * 40), (5, "a" * 40), (8, "a" * 40)]
    summary = rig.replies(12)[-1]
    for name in REVIEWERS:
        assert f"{name}: one finding on line {LINES[name]}" in summary

    # The coordinator's request carried exactly its tools (no post_review_thread: not
    # allowed by default for a coordinator) and the merged runtimeParams.
    first = rig.openai.requests[0]
    assert first.tool_names == [
        "update_status",
        "reply",
        "task_completed",
        "read_file",
        "get_diff",
        "memory_write",
        "memory_read",
        "delegate_to_sub_agent",
    ]
    assert first.body["tool_choice"] == "auto"
    assert first.body["model"] == "coordinator-model"  # provider default
    assert first.body["temperature"] == 0.1  # the agent's runtimeParams win
    assert first.body["max_tokens"] == 900  # provider default kept
    assert first.body["seed"] == 7  # providerSpecific, passed through
    assert "security: Looks for security problems" in first.system
    # provider defaults < the agent's runtimeParams < the delegation's (prompt level)
    child_request = next(r for r in rig.anthropic.requests if reviewer_of(r) == "security")
    assert child_request.body["temperature"] == 0.9  # prompt over the agent's 0.2
    assert child_request.body["max_tokens"] == 300  # prompt over the provider's 700
    assert child_request.body["top_k"] == 40  # the provider's default, untouched
    assert child_request.tool_names == ["get_diff", "post_review_thread", "task_completed"]
    plain = next(r for r in rig.anthropic.requests if reviewer_of(r) == "performance")
    assert plain.body["max_tokens"] == 700
    assert "temperature" not in plain.body  # no layer sets it

    # The transcript has every step: delegations, usage, streamed text, no API key.
    events = rig.transcript(session.id)
    kinds = [e.kind for e in events]
    assert kinds.count("delegation_started") == 3
    finished = [e.data for e in events if e.kind == "delegation_finished"]
    assert sorted(f["child"] for f in finished) == sorted(c.id for c in children)
    assert all(f["ok"] for f in finished)
    usage = [e.data for e in events if e.kind == "usage"]
    assert len(usage) == 2
    assert all(u["input_tokens"] == 11 for u in usage)
    assert "delta" in kinds
    assert "conversation" in kinds
    everything = dump(events) + "".join(dump(rig.transcript(c.id)) for c in children)
    assert OPENAI_KEY not in everything
    assert ANTHROPIC_KEY not in everything
    for child in children:
        child_kinds = [e.kind for e in rig.transcript(child.id)]
        assert child_kinds[0] == "launched"
        assert "usage" in child_kinds
        assert child_kinds[-1] == "closed"
    assert session.spec is not None
    assert session.spec["llm"]["provider"] == "local-openai"
    assert OPENAI_KEY not in json.dumps(session.spec)

    # A follow-up comment continues the same session, with the conversation so far.
    await rig.comment(12, "one follow-up: what about tests?")
    await eventually(
        lambda: rig.replies(12)[-1] == "Follow-up answered: tests look fine.", "the follow-up"
    )
    assert len(rig.sessions()) == 1
    follow = next(r for r in rig.openai.requests if "follow-up" in r.last_user_text)
    roles = [m["role"] for m in follow.messages]
    assert roles[0] == "system"
    assert roles.count("user") == 2
    assert any(m.get("tool_calls") for m in follow.messages), "earlier tool calls replayed"
    assert not rig.children(session.id)[3:], "no new delegations"


async def test_the_delegation_limit_holds_and_a_failed_delegation_can_be_retried(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    openai, anthropic = fakes
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    # The first attempt of the security review fails for good (500 after the retries).
    anthropic.enqueue(Failure(500), Failure(500), Failure(500))

    def coordinate(request: LLMRequest) -> Reply:
        results = request.tool_results
        if not results:
            return Reply(
                calls=[Call("delegate_to_sub_agent", {"agent_id": "security", "task": "t1"})]
            )
        contents = [str(r["content"]) for r in results]
        if any("failed" in c for c in contents) and len(request.messages) < 6:
            return Reply(
                calls=[
                    Call("delegate_to_sub_agent", {"agent_id": "security", "task": "t2"}),
                    Call("delegate_to_sub_agent", {"agent_id": "api", "task": "t3"}),
                ]
            )
        if any("limit reached" in c for c in contents):
            return Reply(calls=[Call("task_completed", {"output": " | ".join(contents)})])
        return Reply(text=["stop"])

    openai.responder = coordinate
    config = agents_file(tmp_path, openai, anthropic, max_delegations=2)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, openai, anthropic)
        await rig.comment(12, "@threadline review")
        await eventually(lambda: rig.sessions() and rig.sessions()[0].output, "completed", 30)
        [session] = rig.sessions()
        output = session.output
        assert "one finding on line 3" in output  # the retried delegation succeeded
        assert "delegation limit reached: at most 2 per session" in output
        children = rig.children(session.id)
        assert [c.agent_id for c in children] == ["security", "security"]
        assert [c.state for c in children] == ["failed", "closed"]
        refused = [e for e in rig.transcript(session.id) if e.kind == "delegation_refused"]
        assert [e.data["agent"] for e in refused] == ["api"]


async def test_a_token_budget_closes_the_session_and_says_so(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    openai, anthropic = fakes
    # Every answer costs 18 tokens and asks for another status update: 40 runs out at 54.
    openai.responder = lambda request: Reply(
        calls=[Call("update_status", {"steps": [{"title": "think"}], "summary": "thinking"})]
    )
    extra = "    budget: {tokens: 40}"
    config = agents_file(tmp_path, openai, anthropic, coordinator_extra=extra)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, openai, anthropic)
        await rig.comment(12, "@threadline think forever")
        await eventually(lambda: rig.sessions()[0].state == "closed", "closed", 30)
        [session] = rig.sessions()
        assert session.close_reason == "budget"
        assert (session.tokens_in, session.tokens_out) == (33, 21)
        assert len(openai.requests) == 3
        await eventually(
            lambda: any("token budget of 40 spent" in r for r in rig.replies(12)), "the notice"
        )


async def test_a_stream_cut_mid_way_is_asked_again(
    rig: LLMRig,
) -> None:
    rig.openai.enqueue(Reply(text=["Delegat", "ing ", "now"], cut_after=2))
    await rig.comment(12, "@threadline review this PR")
    await eventually(
        lambda: rig.replies(12) and rig.replies(12)[-1].startswith("Review summary:"),
        "the summary despite the cut",
        within=30,
    )
    [session] = rig.sessions()
    said = [e.data["text"] for e in rig.transcript(session.id) if e.kind == "message"]
    assert any("stream was cut" in text for text in said)


async def test_tool_choice_and_active_tools_reach_the_request(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    openai, anthropic = fakes
    extra = "    active_tools: [reply, task_completed]\n    tool_choice: {type: tool, name: reply}"
    openai.responder = lambda request: (
        Reply(calls=[Call("reply", {"body": "forced reply"})])
        if not request.tool_results
        else Reply(text=["ok"])
    )
    config = agents_file(tmp_path, openai, anthropic, coordinator_extra=extra)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, openai, anthropic)
        await rig.comment(12, "@threadline hello")
        await eventually(lambda: rig.replies(12)[-1:] == ["forced reply"], "the reply")
        await eventually(lambda: len(openai.requests) >= 2, "the model is asked again")
        first, second = openai.requests[:2]
        # A coordinator always gets delegate_to_sub_agent on top of its active_tools.
        assert first.tool_names == ["reply", "task_completed", "delegate_to_sub_agent"]
        assert first.body["tool_choice"] == {"type": "function", "function": {"name": "reply"}}
        assert second.body["tool_choice"] == "auto"  # forced on the turn's first call only


async def test_an_outsiders_message_cannot_start_an_llm_session(rig: LLMRig) -> None:
    await rig.comment(12, "@threadline review this PR", author="outsider")
    await eventually(
        lambda: any("only people with write access" in r for r in rig.replies(12)), "refusal"
    )
    assert rig.openai.requests == []


NOTES_AGENTS = """
providers:
  local-openai:
    kind: openai
    baseUrl: {openai}
    apiKeyEnv: TL_TEST_OPENAI_KEY
    defaults: {{model: notes-model}}
agents:
  scribe:
    engine: llm
    provider: local-openai
    systemPrompt: "agent=scribe"
    active_tools: [reply, task_completed, memory_write, memory_read, sessions_list,
                   sessions_history, sessions_search, sessions_send]
    sessionAccess: {{cross_agent: true}}
  quiet:
    engine: llm
    provider: local-openai
    systemPrompt: "agent=quiet"
    active_tools: [reply, sessions_list, sessions_send]
    sessionAccess: {{key_prefix: "quiet:", can_send: false}}
sessions:
  keepSessionOpenForComments: true
"""
ISSUE_KEY = f"scribe:github:{REPO}/issues/7"


def last_calls(request: LLMRequest) -> list[str]:
    """The tools called in the request's last assistant message."""
    for message in reversed(request.messages):
        if message.get("role") == "assistant":
            return [c["function"]["name"] for c in message.get("tool_calls") or []]
    return []


def notes_agent(request: LLMRequest) -> Reply:
    asked = request.last_user_text
    called = last_calls(request) if request.tool_results else []
    results = " || ".join(str(r["content"]) for r in request.tool_results)
    if called == ["reply"] or called == ["task_completed"]:
        return Reply(text=["done"])
    if "agent=quiet" in request.system:
        if not called:
            return Reply(
                calls=[
                    Call("sessions_list", {}),
                    Call("sessions_send", {"key": ISSUE_KEY, "message": "hi"}),
                ]
            )
        return Reply(calls=[Call("reply", {"body": "quiet saw: " + results})])
    if asked.startswith("Message from session"):
        return Reply(text=["Still here; the note on retries is in memory."])
    if "remember" in asked:
        if not called:
            note = {"key": "retries", "value": "use exponential backoff with jitter"}
            return Reply(calls=[Call("memory_write", note)])
        return Reply(calls=[Call("reply", {"body": "Noted about backoff."})])
    if not called:
        return Reply(calls=[Call("memory_read", {}), Call("sessions_search", {"query": "backoff"})])
    if called == ["memory_read", "sessions_search"]:
        ask = {"key": ISSUE_KEY, "message": "Are you there?", "wait_for_reply": True}
        return Reply(calls=[Call("sessions_send", {**ask, "timeout_seconds": 20})])
    everything = " || ".join(str(m["content"]) for m in request.messages if m["role"] == "tool")
    return Reply(calls=[Call("reply", {"body": "Known: " + everything})])


async def test_memory_and_session_tools_under_access_policies(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    openai, _ = fakes
    openai.responder = notes_agent
    path = tmp_path / "threadline.yml"
    path.write_text(NOTES_AGENTS.format(openai=openai.base_url), encoding="utf-8")
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        rig = LLMRig(app, fake_github, openai, fakes[1])
        await rig.comment(7, "/agent scribe remember how retries work")
        await eventually(lambda: rig.replies(7)[-1:] == ["Noted about backoff."], "noted")
        await eventually(lambda: rig.sessions()[0].state == "idle", "idle")

        # Another session of the same agent reads the note, finds the first session's
        # words, and asks it something, waiting for the answer.
        await rig.comment(12, "/agent scribe what do we know about retries?")
        await eventually(
            lambda: rig.replies(12) and rig.replies(12)[-1].startswith("Known: "), "known", 30
        )
        known = rig.replies(12)[-1]
        assert '"retries": "use exponential backoff with jitter"' in known  # memory_read
        assert ISSUE_KEY in known
        assert "**backoff**" in known
        assert "Still here; the note on retries is in memory." in known  # sessions_send
        issue_session = next(s for s in rig.sessions() if s.thread.number == 7)
        inputs = app.runtime.sessions.store.inputs(issue_session.id)
        assert [i.kind for i in inputs][-1] == "message"

        # `quiet` sees only keys under its prefix (none yet but its own) and may not send.
        await eventually(lambda: rig.sessions()[0].state == "idle", "idle again")
        await rig.comment(12, "/done")
        await eventually(lambda: rig.sessions()[0].state == "closed", "closed")
        await rig.comment(12, "/agent quiet look around")
        await eventually(lambda: rig.replies(12)[-1].startswith("quiet saw: "), "quiet", 30)
        seen = rig.replies(12)[-1]
        assert ISSUE_KEY not in seen.split("||")[0]
        assert f'"key": "quiet:github:{REPO}/pulls/12"' in seen
        assert "may not send to other sessions" in seen

    assert OPENAI_KEY not in caplog.text


async def test_a_turn_budget_ends_the_session_at_the_next_turn(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    openai, anthropic = fakes
    openai.responder = lambda request: Reply(text=["answered"])
    config = agents_file(tmp_path, openai, anthropic, coordinator_extra="    budget: {turns: 1}")
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, openai, anthropic)
        await rig.comment(12, "@threadline one question")
        await eventually(lambda: rig.sessions()[0].state == "idle", "the first turn ends")
        await rig.comment(12, "and another")
        await eventually(lambda: rig.sessions()[0].state == "closed", "closed", 30)
        assert rig.sessions()[0].close_reason == "budget"
        assert len(openai.requests) == 1  # the second turn never asked the model
        await eventually(
            lambda: any("turn budget of 1 spent" in r for r in rig.replies(12)), "the notice"
        )


async def test_a_time_budget_counts_working_time(rig: LLMRig) -> None:
    await rig.comment(12, "@threadline review this PR")
    await eventually(lambda: rig.sessions() and rig.sessions()[0].state == "idle", "idle", 30)
    [session] = rig.sessions()
    service = rig.app.runtime.sessions
    agent = replace(service.agent_for(session), budget=Budget(minutes=5))
    service.check_budget(session, agent)  # just started: within budget
    # Started 6 minutes ago but waited for comments meanwhile (its time limit moved on
    # by the wait): within budget.
    waited = replace(session, created_at=session.created_at - timedelta(minutes=6))
    service.check_budget(waited, agent)
    # Six minutes of turns running: past it.
    worked = replace(session, time_limit_at=session.time_limit_at - timedelta(minutes=6))
    with pytest.raises(BudgetExceeded, match="time budget of 5 min spent"):
        service.check_budget(worked, agent)
