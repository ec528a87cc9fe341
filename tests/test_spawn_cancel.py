"""`cancel_spawn` reaches a spawned sub-agent whose turn runs in another runtime: two
runtimes share one database; one runs the sub-agent's slow model stream, the other the
coordinator's turn that cancels it. The database carries the cancel (the child session
closed as cancelled, seen by the running turn's cancel poll), the fake LLM sees its
stream's connection closed within about a second, the spawn ends cancelled and the
coordinator gets the cancellation as the spawn's result."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db.models import Spawn
from bot.sessions.turns import TurnRunner
from tests.conftest import Running, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeOpenAI
from tests.test_api import BOOTSTRAP, V1
from tests.test_api_control import llm as llm  # the fixture: the fake OpenAI server
from tests.test_sessions import GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]

AGENTS = """
providers:
  fake:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_CONTROL_KEY
    maxRetries: 0
    timeoutSeconds: 60
    defaults: {{model: slow-model, maxTokens: 200}}
agents:
  boss:
    engine: script
    agentIds: [storyteller]
    active_tools: [reply, task_completed, spawn_agent, spawn_result, cancel_spawn]
    script:
      - match: task
        do:
          - call: {{tool: spawn_agent, args: {{agent: storyteller, task: "a slow story", nonblocking: true}}}}
          - reply: "spawned"
      - when: 'stop it'
        do:
          - call: {{tool: cancel_spawn, args: {{task_id: task-1}}}}
          - call: {{tool: spawn_result, args: {{task_id: task-1}}}}
          - reply: "stopped it"
      - match: spawn
        do:
          - reply: "result of {{author}}: {{input}}"
  storyteller:
    engine: llm
    provider: fake
    systemPrompt: You tell stories.
defaultAgent: boss
sessions:
  keepSessionOpenForComments: true
"""
# How long after the cancel the fake may still be streaming: the running turn's process
# asks the database every 0.5 s; the rest is room for a loaded machine.
CANCEL_SEEN_WITHIN = 1.5


@pytest.fixture
async def two(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[tuple[GitHubRig, Running]]:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS.format(url=llm.base_url), encoding="utf-8")
    configured = with_settings(
        github_settings(settings, fake_github, str(path)), operator_token=BOOTSTRAP
    )
    async with run_app(configured) as first, run_app(configured) as second:
        yield GitHubRig(first, fake_github), second


def runner(app: Running) -> TurnRunner:
    assert app.runner is not None
    return app.runner


def only(app: Running, runs: Running) -> None:
    """Let `runs`'s turn runner take new turns and the other one's none."""
    runner(app).concurrency = 8 if app is runs else 0
    runner(app).wakeup.set()


async def test_cancel_spawn_stops_the_sub_agents_stream_in_another_runtime(
    two: tuple[GitHubRig, Running], llm: FakeOpenAI
) -> None:
    rig, other = two
    here = rig.app
    store = here.runtime.sessions.store
    for app in (here, other):
        only(app, runs=other)  # the coordinator's first turn and the spawn run there
    await rig.comment(7, "@threadline start the story")
    await eventually(lambda: llm.in_flight == 1, "the sub-agent's model call streams", 30)
    [call] = llm.requests
    [boss] = [s for s in store.recent(limit=10) if s.parent_id is None]
    [child] = store.children(boss.id)
    started = [e.data for e in store.transcript(child.id) if e.kind == "turn_started"]
    assert [s["runner"] for s in started] == [runner(other).name]
    # From now on this runtime runs the coordinator's turns; the other keeps the stream.
    for app in (here, other):
        only(app, runs=here)
    await rig.comment(7, "stop it")
    await eventually(lambda: call.disconnected, "the fake sees its connection closed", 10)
    assert call.ended is not None
    with here.engine.connect() as conn:
        [spawn] = conn.execute(select(Spawn)).all()
    assert (spawn.state, spawn.ok, spawn.result) == ("cancelled", False, "cancelled")
    # The spawn's end (stored by the cancelling turn) against the fake's last write.
    wall = time.time() - time.monotonic()
    finished: datetime = spawn.finished_at
    took = (call.ended + wall) - finished.timestamp()
    assert took < CANCEL_SEEN_WITHIN, f"the stream ran on {took:.2f} s after the cancel"
    stopped = [e for e in store.transcript(boss.id) if e.kind == "turn_started"][-1]
    assert stopped.data["runner"] == runner(here).name
    await eventually(lambda: "stopped it" in rig.replies(7), "the coordinator's reply")
    results = {
        e.data["tool"]: e.data
        for e in store.transcript(boss.id)
        if e.kind == "tool_result" and e.data["tool"] in ("cancel_spawn", "spawn_result")
    }
    assert results["cancel_spawn"]["ok"] is True
    assert "task-1 cancelled" in results["cancel_spawn"]["content"]
    assert (results["spawn_result"]["ok"], results["spawn_result"]["content"]) == (
        False,
        "cancelled",
    )
    gone = store.get(child.id)
    assert gone is not None
    assert (gone.state, gone.close_reason, gone.closed_by) == (
        "closed",
        "cancelled",
        f"session:{boss.id}",
    )
    assert len(llm.requests) == 1, "the sub-agent does not run again"
    assert "tool_call" not in [e.kind for e in store.transcript(child.id)]


async def test_cancelling_a_spawns_own_turn_ends_the_spawn_as_cancelled(
    two: tuple[GitHubRig, Running], llm: FakeOpenAI
) -> None:
    """A cancel aimed at the spawned session itself (the API's, from the runtime that
    does not run it) stops its stream the same way; the spawn ends cancelled and the
    coordinator is woken with that as the spawn's result."""
    rig, other = two
    here = rig.app
    store = here.runtime.sessions.store
    for app in (here, other):
        only(app, runs=other)
    await rig.comment(7, "@threadline start the story")
    await eventually(lambda: llm.in_flight == 1, "the sub-agent's model call streams", 30)
    [call] = llm.requests
    [boss] = [s for s in store.recent(limit=10) if s.parent_id is None]
    [child] = store.children(boss.id)
    async with here.http.post(
        f"{here.url}{V1}/sessions/{child.id}/cancel",
        json={"wait": 10},
        headers={"Authorization": f"Bearer {BOOTSTRAP}"},
    ) as response:
        answer = await response.json()
    assert response.status == 200, answer
    assert answer["cancelling"] is True
    await eventually(lambda: call.disconnected, "the fake sees its connection closed", 10)
    await eventually(
        lambda: any(r.startswith("result of task-1") for r in rig.replies(7)),
        "the coordinator is woken by the spawn's end",
        20,
    )
    [reply] = [r for r in rig.replies(7) if r.startswith("result of task-1")]
    assert "task-1 (storyteller) cancelled" in reply
    with here.engine.connect() as conn:
        [spawn] = conn.execute(select(Spawn)).all()
    assert (spawn.state, spawn.ok) == ("cancelled", False)
    gone = store.get(child.id)
    assert gone is not None
    assert (gone.state, gone.close_reason, gone.closed_by) == (
        "closed",
        "cancelled",
        "operator:operator",
    )
    assert len(llm.requests) == 1
