"""A non-blocking spawn between LLM agents over the fake providers: the coordinator's
turn ends, the sub-agent's request carries the spawn's active_tools and tool_choice,
and the coordinator is asked again with the result as its input."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Call, FakeAnthropic, FakeOpenAI, LLMRequest, Reply
from tests.test_llm_sessions import DIFF, REPO, LLMRig, agents_file, fakes
from tests.test_sessions import eventually, fake_github, github_settings

__all__ = ["fake_github", "fakes"]

SPAWN = {
    "agent": "security",
    "task": f"Check pull request #12 of {REPO} for secrets.",
    "nonblocking": True,
    "active_tools": ["task_completed"],
    "tool_choice": {"type": "tool", "name": "task_completed"},
}


def coordinator(request: LLMRequest) -> Reply:
    if request.tool_results:
        return Reply(text=["Waiting for it."])
    if "Your spawned task task-1 finished" in request.last_user_text:
        line = request.last_user_text.splitlines()[-1]
        return Reply(calls=[Call("reply", {"body": f"security says: {line}"})])
    return Reply(calls=[Call("spawn_agent", SPAWN)])


def security(request: LLMRequest) -> Reply:
    return Reply(calls=[Call("task_completed", {"output": "no secrets found"})])


async def test_a_spawned_llm_agent_gets_its_run_s_tools_and_wakes_the_coordinator(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    openai, anthropic = fakes
    openai.responder = coordinator
    anthropic.responder = security
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    extra = "    active_tools: [reply, task_completed, spawn_agent, spawn_status]"
    config = agents_file(tmp_path, openai, anthropic, coordinator_extra=extra)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, openai, anthropic)
        await rig.comment(12, "@threadline look for secrets")
        await eventually(
            lambda: rig.replies(12)[-1:] == ["security says: no secrets found"],
            "the coordinator relays the result",
            within=60.0,
        )
        (sub,) = anthropic.requests
        # The spawn's active_tools and tool_choice, not the agent's configured ones.
        assert sub.tool_names == ["task_completed"]
        assert sub.body["tool_choice"] == {"type": "tool", "name": "task_completed"}
        (session,) = rig.sessions()

        def turns() -> list[dict[str, object]]:
            return [e.data for e in rig.transcript(session.id) if e.kind == "turn_finished"]

        await eventually(lambda: len(turns()) >= 2, "the woken turn ends")
        assert turns()[0] == {"turn": 1, "state": "idle"}  # ended while the spawn ran
        first, *later = openai.requests
        assert "spawn_agent" in first.tool_names
        assert any("Your spawned task task-1 finished" in r.last_user_text for r in later)
