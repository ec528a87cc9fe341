"""Spawned sub-agents end to end: a script coordinator spawns non-blocking sub-agents over
a real webhook, ends its turn, and is woken by their results; cancel_spawn stops one; a
result whose settling a dead worker never did is settled by the sweep, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.config import Settings
from bot.db.models import SessionInput, Spawn
from bot.events import ThreadRef
from bot.sessions.spawn_store import SpawnStore, task_number
from bot.sessions.store import Launch, SessionOptions, SessionStore
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]

SPAWN_TOOLS = "[reply, task_completed, spawn_agent, spawn_status, spawn_result, spawn_list, cancel_spawn, task_list]"
AGENTS = f"""
agents:
  boss:
    engine: script
    agentIds: [quick, slow]
    maxDelegations: 3
    active_tools: {SPAWN_TOOLS}
    script:
      - match: task
        when: cancel
        do:
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "job C", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: slow, task: "job D", nonblocking: true}}}}
          - reply: "spawned C and D"
      - match: task
        when: limit
        do:
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "one", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "two", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "three", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "four", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: boss, task: "me", nonblocking: true}}}}
          - reply: "tried five"
      - match: task
        when: blocking
        do:
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "inline job", active_tools: [task_completed]}}}}
          - call: {{tool: task_list, args: {{}}}}
          - task_completed: "blocking spawn done"
      - match: task
        do:
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "job A", nonblocking: true}}}}
          - call: {{tool: spawn_agent, args: {{agent: quick, task: "job B", nonblocking: true}}}}
          - call: {{tool: spawn_status, args: {{task_id: task-1}}}}
          - call: {{tool: spawn_result, args: {{task_id: task-9}}}}
          - reply: "spawned A and B"
          - task_completed: "handed out"
      - match: spawn
        when: 'job C'
        do:
          - call: {{tool: cancel_spawn, args: {{task_id: task-2}}}}
          - call: {{tool: spawn_list, args: {{}}}}
          - reply: "got {{author}}, cancelled task-2"
      - match: spawn
        do:
          - call: {{tool: spawn_result, args: {{task_id: "{{author}}"}}}}
          - reply: "result of {{author}}: {{input}}"
          - task_completed: "collected"
  quick:
    engine: script
    script:
      - do:
          - task_completed: "did {{input}}"
  slow:
    engine: script
    script:
      - do:
          - sleep: 20
          - task_completed: "slow finished {{input}}"
sessions:
  keepSessionOpenForComments: false
"""


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        yield GitHubRig(app, fake_github)


def boss_session(rig: GitHubRig) -> Any:
    found = [s for s in rig.sessions() if s.parent_id is None]
    assert len(found) == 1
    return found[0]


def events(rig: GitHubRig, session_id: str) -> list[Any]:
    return list(rig.app.runtime.sessions.store.transcript(session_id))


def spawns(rig: GitHubRig) -> list[Spawn]:
    with rig.app.engine.connect() as conn:
        return list(conn.execute(select(Spawn).order_by(Spawn.number)).all())  # type: ignore[arg-type]


async def test_a_coordinator_ends_its_turn_and_is_woken_by_both_results(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline split the work")
    await eventually(
        lambda: len([r for r in rig.replies(7) if r.startswith("result of")]) == 2,
        "both results answered",
    )
    boss = boss_session(rig)
    replies = rig.replies(7)
    assert replies[0] == "spawned A and B"
    assert sorted(replies[1:]) == [
        "result of task-1: task-1 (quick) done:\ndid job A",
        "result of task-2: task-2 (quick) done:\ndid job B",
    ]
    log = events(rig, boss.id)
    kinds = [e.kind for e in log]
    # The first turn ended (with task_completed, yet the session stayed open for the
    # spawns); the results came as `spawn` inputs, taken by later turns.
    first_end = next(e for e in log if e.kind == "turn_finished")
    assert first_end.data == {"turn": 1, "state": "idle"}
    results = {e.data["input"] for e in log if e.kind == "input" and e.data["kind"] == "spawn"}
    assert len(results) == 2
    woken = [
        e.data["turn"] for e in log if e.kind == "turn_started" and results & set(e.data["inputs"])
    ]
    assert woken
    assert min(woken) >= 2
    started = [e.data for e in log if e.kind == "spawn_started"]
    assert [(s["task_id"], s["agent"], s["nonblocking"]) for s in started] == [
        ("task-1", "quick", True),
        ("task-2", "quick", True),
    ]
    # spawn_status of a running (or already done) spawn, spawn_result of an unknown one.
    tool_results = [e.data for e in log if e.kind == "tool_result"]
    status = next(r for r in tool_results if r["tool"] == "spawn_status")
    assert status["ok"]
    assert '"task_id": "task-1"' in status["content"]
    unknown = next(r for r in tool_results if r["tool"] == "spawn_result")
    assert not unknown["ok"]
    assert "no task 'task-9'" in unknown["content"]
    fetched = [r for r in tool_results if r["tool"] == "spawn_result" and r["ok"]]
    assert sorted(r["content"] for r in fetched) == ["did job A", "did job B"]
    # Woken by the results: more turns than the first, and closed once both were in.
    await eventually(lambda: boss_session(rig).state == "closed", "the boss closes")
    done = boss_session(rig)
    assert done.turns >= 2
    assert done.close_reason == "done"
    assert kinds.count("spawn_finished") == 2
    rows = spawns(rig)
    assert [(r.number, r.state, r.ok, r.result) for r in rows] == [
        (1, "done", True, "did job A"),
        (2, "done", True, "did job B"),
    ]
    children = rig.app.runtime.sessions.store.children(boss.id)
    assert {c.state for c in children} == {"closed"}
    assert all(c.started_by == f"session:{boss.id}" for c in children)


async def test_cancel_spawn_stops_the_slow_one(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline spawn and cancel")
    await eventually(
        lambda: any(r.startswith("got task-1") for r in rig.replies(7)), "the cancel reply"
    )
    boss = boss_session(rig)
    rows = spawns(rig)
    assert [(r.number, r.state) for r in rows] == [(1, "done"), (2, "cancelled")]
    slow = rig.app.runtime.sessions.store.get(rows[1].child_id)
    assert slow is not None
    assert (slow.state, slow.close_reason, slow.closed_by) == (
        "closed",
        "cancelled",
        f"session:{boss.id}",
    )
    log = events(rig, boss.id)
    listed = next(e.data for e in log if e.kind == "tool_result" and e.data["tool"] == "spawn_list")
    assert '"state": "cancelled"' in listed["content"]
    assert any(e.kind == "spawn_cancelled" for e in log)
    # The slow turn was stopped, not left to finish: no task_completed, ever; and no
    # result of task-2 reaches the coordinator.
    await asyncio.sleep(1.0)
    slow_log = [e.kind for e in events(rig, slow.id)]
    assert "tool_call" not in slow_log
    assert not any("slow finished" in r for r in rig.replies(7))
    inputs = [e.data for e in events(rig, boss.id) if e.kind == "input"]
    assert [i["author"] for i in inputs if i["kind"] == "spawn"] == ["task-1"]


async def test_limits_and_a_blocking_spawn(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline test the limit")
    await eventually(lambda: "tried five" in rig.replies(7), "the limit reply")
    boss = boss_session(rig)
    log = events(rig, boss.id)
    answers = [
        (e.data["ok"], e.data["content"])
        for e in log
        if e.kind == "tool_result" and e.data["tool"] == "spawn_agent"
    ]
    assert [ok for ok, _ in answers] == [True, True, True, False, False]
    assert "at most 3 per session" in answers[3][1]
    assert "cannot spawn 'boss'" in answers[4][1]
    await eventually(
        lambda: len(spawns(rig)) == 3 and all(r.state == "done" for r in spawns(rig)), "three done"
    )


async def test_a_blocking_spawn_answers_its_result_in_the_turn(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline blocking please")
        await eventually(lambda: boss_session(rig).state == "closed", "the boss finishes")
        boss = boss_session(rig)
        log = events(rig, boss.id)
        spawned = next(
            e.data for e in log if e.kind == "tool_result" and e.data["tool"] == "spawn_agent"
        )
        assert spawned == {
            "turn": 1,
            "tool": "spawn_agent",
            "ok": True,
            "content": "did inline job",
            "call": 1,
        }
        listed = next(
            e.data for e in log if e.kind == "tool_result" and e.data["tool"] == "task_list"
        )
        assert '"kind": "spawn"' in listed["content"]
        assert '"state": "done"' in listed["content"]
        (row,) = spawns(rig)
        assert (row.nonblocking, row.state, row.active_tools) == (False, "done", ["task_completed"])
        child = app.runtime.sessions.store.get(row.child_id)
        assert child is not None
        assert child.spec is not None
        assert child.spec["tools"] == ["task_completed"]  # narrowed by active_tools


# ------------------------------------------------------- settling, on the database


def test_a_result_no_worker_settled_is_settled_once(engine: Engine) -> None:
    sessions = SessionStore(engine)
    spawns_ = SpawnStore(engine)
    thread = ThreadRef("github", REPO, "issue", 7)

    def launch(key: str, parent: str | None = None) -> str:
        made = sessions.launch(
            Launch(
                client_request_id=key,
                thread=thread,
                installation_id=1,
                agent_id="boss" if parent is None else "quick",
                task="work",
                started_by="maintainer",
                trigger_comment_id=None,
                trigger_url=None,
                options=SessionOptions(),
                parent_id=parent,
                thread_key=None if parent is None else f"{thread.key}/delegations/1",
            ),
            max_live=10,
        )
        return made.session.id

    parent = launch("p")
    child = launch("c", parent)
    spawns_.add(
        parent, 1, child, "quick", "work", nonblocking=True, active_tools=None, tool_choice=None
    )
    assert spawns_.unsettled() == []  # the child has its task queued: still working
    # The child's turn ended with its output, and its worker died before settling.
    sessions.save_output(child, "the answer")
    sessions.close(child, "done", by=None)
    assert spawns_.unsettled() == [child]

    def outcome(agent: str, done: Any) -> tuple[bool, str]:
        return bool(done.completed), str(done.output)

    first = spawns_.settle(child, outcome)
    assert first is not None
    assert first.queued
    assert first.spawn.state == "done"
    assert spawns_.settle(child, outcome) is None  # a second process finds nothing to do
    assert spawns_.unsettled() == []
    with engine.connect() as conn:
        queued = conn.execute(
            select(SessionInput.kind, SessionInput.author, SessionInput.body).where(
                SessionInput.session_id == parent, SessionInput.kind == "spawn"
            )
        ).all()
    assert [tuple(q) for q in queued] == [("spawn", "task-1", "task-1 (quick) done:\nthe answer")]
    assert spawns_.depth(child) == 1
    assert spawns_.depth(parent) == 0


@pytest.mark.parametrize(
    ("text", "number"),
    [("task-3", 3), ("3", 3), (" task-12 ", 12), ("task-", None), ("x", None), (None, None)],
)
def test_task_numbers(text: object, number: int | None) -> None:
    assert task_number(text) == number


# ----------------------------------------------------------- per-run tool controls


def test_a_run_narrows_tools_and_keeps_its_tool_choice() -> None:
    from types import MappingProxyType

    from bot.agents.base import AgentSpec
    from bot.agents.llm import OPTIONS_KEY, LLMOptions
    from bot.agents.providers.base import Params, ProviderConfig, ToolChoice
    from bot.sessions.agents import narrowed, parse_tool_choice, run_record, with_run_choice

    provider = ProviderConfig(id="p", kind="openai", base_url="http://127.0.0.1:1", api_key="k")
    options = LLMOptions(provider=provider, params=Params(model="m"))
    agent = AgentSpec(
        id="writer",
        engine="llm",
        tools=("reply", "task_completed", "get_diff"),
        options=MappingProxyType({OPTIONS_KEY: options}),
    )
    choice = parse_tool_choice({"type": "tool", "name": "reply"})
    run = narrowed(agent, ["reply", "task_completed", "run_command"], choice)
    assert run.tools == ("reply", "task_completed")  # never wider than the agent
    assert run.options[OPTIONS_KEY].tool_choice == ToolChoice("tool", "reply")
    # Later turns rebuild the agent from the configuration and the launch record.
    again = with_run_choice(agent, run_record(run, choice))
    assert again.options[OPTIONS_KEY].tool_choice == ToolChoice("tool", "reply")
    assert with_run_choice(agent, run_record(agent, None)) is agent
    with pytest.raises(ValueError, match="may not use"):
        narrowed(agent, ["task_completed"], choice)
    for bad in ("sometimes", {"type": "tool"}, {"type": "any", "name": "x"}, 3):
        with pytest.raises(ValueError, match="tool_choice"):
            parse_tool_choice(bad)
    assert parse_tool_choice("none") == ToolChoice("none")
