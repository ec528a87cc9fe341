"""/api/v1's control of running sessions over real HTTP: cancel a turn in flight (the fake
LLM sees its stream's connection closed), `/stop` in a thread, approve a pending gate,
one-shot tasks, per-session overrides (allowed and refused), server-sent events that
resume, and the bad inputs of issue 18, each in the one error shape with nothing made."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.api.tokens import TokenStore
from bot.config import Settings
from bot.db import make_engine
from bot.hosts.local_seed import DEMO_PULL, DEMO_REPO
from bot.sessions.store import SessionStore
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeOpenAI, LLMRequest, Reply
from tests.procs import Proc, start
from tests.test_api import BOOTSTRAP, V1, Api, api_settings, assert_error, gh
from tests.test_session_processes import comment, env_for, github
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github", "gh", "github"]  # fixtures shared with test_api and test_sessions

KEY = "sk-control-test-0a1b2c3d4e5f"
THREAD = {"host": "local", "repo": DEMO_REPO, "kind": "pull", "number": DEMO_PULL}
ALLOWED = (
    "exitCriteria, listenToComments, keepSessionOpenForComments, runtimeParams, "
    "coordinatorModelKey, metadata.provider, additionalInstructions"
)
AGENTS = """
providers:
  fake:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_CONTROL_KEY
    maxRetries: 0
    timeoutSeconds: 30
    defaults: {{model: slow-model, maxTokens: 200}}
  other:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_CONTROL_KEY
    maxRetries: 0
    timeoutSeconds: 30
    defaults: {{model: other-model, maxTokens: 333}}
agents:
  talker:
    engine: llm
    provider: fake
    description: talks, slowly when asked to
    systemPrompt: You talk.
  gatekeeper:
    engine: script
    active_tools: [reply, request_approval, task_completed]
    script:
      - match: task
        do:
          - call: {{tool: request_approval, args: {{subject: ship it}}}}
          - reply: "waiting for approval"
      - when: '^Approved by'
        do:
          - reply: "approved: {{input}}"
          - task_completed: "{{input}}"
      - do:
          - reply: "heard: {{input}}"
  helper:
    engine: script
    script:
      - match: task
        do:
          - reply: "task: {{input}}"
          - task_completed: "done {{input}}"
      - do:
          - reply: "heard: {{input}}"
sessions:
  keepSessionOpenForComments: true
  apiOverrides: [{allowed}]
"""


def slow_or_quick(request: LLMRequest) -> Reply:
    """A long stream (about 20 s) when the last message asks for it, else a short one."""
    if "slow" in request.last_user_text:
        return Reply(text=["word "] * 200, gap=0.1)
    return Reply(text=[f"you said: {request.last_user_text[-40:]}"])


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("TL_TEST_CONTROL_KEY", KEY)
    async with FakeOpenAI(api_key=KEY) as fake:
        fake.responder = slow_or_quick
        yield fake


def config_file(tmp: Path, llm: FakeOpenAI, default: str = "talker") -> str:
    path = tmp / "threadline.yml"
    text = AGENTS.format(url=llm.base_url, allowed=ALLOWED) + f"defaultAgent: {default}\n"
    path.write_text(text, encoding="utf-8")
    return str(path)


@dataclass
class Rig(Api):
    llm: FakeOpenAI

    def kinds(self, session_id: str) -> list[str]:
        return [e.kind for e in self.app.runtime.sessions.store.transcript(session_id)]

    def events(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        store = self.app.runtime.sessions.store
        return [e.data for e in store.transcript(session_id) if e.kind == kind]

    def state(self, session_id: str) -> str:
        found = self.app.runtime.sessions.store.get(session_id)
        assert found is not None
        return found.state


@pytest.fixture
async def rig(
    settings: Settings, gh: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[Rig]:
    changed = api_settings(settings, gh, config=config_file(tmp_path, llm))
    async with run_app(changed) as app:
        yield Rig(app, TokenStore(app.engine), llm)


async def launch(rig: Rig, body: dict[str, Any], token: str = BOOTSTRAP) -> str:
    status, launched = await rig.call("POST", "/sessions", token, body)
    assert status == 201, launched
    return str(launched["id"])


# ------------------------------------------------------------------ cancel


async def test_cancel_aborts_the_model_stream_and_leaves_the_session_idle(rig: Rig) -> None:
    token, _ = rig.tokens.create("ci", "operator")
    sid = await launch(rig, {"agent": "talker", "task": "tell a slow story"}, token)
    await eventually(lambda: rig.llm.in_flight == 1, "the model call is streaming")
    [call] = rig.llm.requests
    asked = time.monotonic()
    status, answer = await rig.call("POST", f"/sessions/{sid}/cancel", token, {"wait": 10})
    took = time.monotonic() - asked
    assert status == 200, answer
    assert answer["cancelling"] is True
    assert answer["session"]["state"] == "idle"
    assert took < 5, took  # seen within about a second; generous for a busy machine
    await eventually(lambda: call.disconnected, "the fake sees its connection closed", 5)
    assert call.ended is not None
    assert call.ended - call.started < 15
    kinds = rig.kinds(sid)
    assert kinds.index("cancel_requested") < kinds.index("cancelled") < kinds.index("turn_finished")
    assert "failed" not in kinds
    assert "closed" not in kinds
    [asked_data] = rig.events(sid, "cancel_requested")
    assert (asked_data["by"], asked_data["how"]) == ("operator:ci", "api")
    assert rig.events(sid, "cancelled")[0]["by"] == "operator:ci"
    # Nothing in flight now: a second cancel says so, and the session carries on.
    status, again = await rig.call("POST", f"/sessions/{sid}/cancel", token)
    assert (status, again["cancelling"]) == (200, False)
    status, turn = await rig.call(
        "POST", f"/sessions/{sid}/prompt", token, {"input": "quick one", "wait": 20}
    )
    assert status == 200, turn
    assert turn["finished"] is True
    assert turn["session"]["state"] == "idle"
    assert len(rig.llm.requests) == 2
    assert not rig.llm.requests[1].disconnected
    actions = [(a.token, a.action) for a in rig.tokens.audit_lines()]
    assert ("ci", "cancel") in actions


async def test_cancel_of_a_closed_session_is_a_conflict(rig: Rig) -> None:
    sid = await launch(rig, {"agent": "helper", "task": "x"})
    status, _ = await rig.call("DELETE", f"/sessions/{sid}", BOOTSTRAP)
    assert status == 200
    status, body = await rig.call("POST", f"/sessions/{sid}/cancel", BOOTSTRAP)
    assert_error(status, body, 409, "not_live")


# ------------------------------------------------------------------ approve


@pytest.mark.parametrize("thread", [None, THREAD], ids=["headless", "thread"])
async def test_approve_answers_the_pending_gate_as_a_maintainer_would(
    rig: Rig, thread: dict[str, Any] | None
) -> None:
    token, _ = rig.tokens.create("lead", "operator")
    viewer, _ = rig.tokens.create("watcher", "viewer")
    body: dict[str, Any] = {"agent": "gatekeeper", "task": "ship the fix"}
    if thread is not None:
        body["thread"] = thread
    sid = await launch(rig, body, token)
    await eventually(lambda: rig.state(sid) == "awaiting_approval", "the gate is open")
    status, refused = await rig.call("POST", f"/sessions/{sid}/approve", viewer)
    assert_error(status, refused, 403, "forbidden")
    status, decided = await rig.call("POST", f"/sessions/{sid}/approve", token, {})
    assert status == 200, decided
    assert decided["gate"]["status"] == "approved"
    assert decided["gate"]["subject"] == "ship it"
    await eventually(
        lambda: any(
            e.get("tool") == "reply" and "approved: Approved by @operator:lead" in e["args"]["body"]
            for e in rig.events(sid, "tool_call")
        ),
        "the agent resumes with the approval as its input",
    )
    inputs = rig.events(sid, "input")
    assert ("approval", "operator:lead") in [(i["kind"], i["author"]) for i in inputs]
    status, again = await rig.call("POST", f"/sessions/{sid}/approve", token)
    assert_error(status, again, 409, "nothing_to_approve")
    assert ("lead", "approve", sid) in [
        (a.token, a.action, a.target) for a in rig.tokens.audit_lines()
    ]


async def test_request_changes_through_the_api_needs_a_comment(rig: Rig) -> None:
    sid = await launch(rig, {"agent": "gatekeeper", "task": "ship"})
    await eventually(lambda: rig.state(sid) == "awaiting_approval", "the gate is open")
    status, body = await rig.call("POST", f"/sessions/{sid}/approve", BOOTSTRAP, {"approve": False})
    assert_error(status, body, 422, "invalid")
    status, body = await rig.call(
        "POST", f"/sessions/{sid}/approve", BOOTSTRAP, {"approve": False, "comment": "smaller"}
    )
    assert status == 200, body
    assert body["gate"]["status"] == "changes_requested"
    await eventually(
        lambda: any(
            "heard: @operator:operator requested changes: smaller" in e["args"]["body"]
            for e in rig.events(sid, "tool_call")
            if e.get("tool") == "reply"
        ),
        "the agent hears what to change",
    )


# ------------------------------------------------------------------ tasks


async def test_a_task_runs_one_turn_answers_its_result_and_closes(rig: Rig) -> None:
    token, _ = rig.tokens.create("bot", "operator")
    status, result = await rig.call(
        "POST", "/tasks", token, {"agent": "helper", "task": "sum the numbers", "wait": 20}
    )
    assert status == 200, result
    assert result["finished"] is True
    assert result["output"] == "done sum the numbers"
    assert result["replies"] == ["task: sum the numbers"]
    assert result["session"]["state"] == "closed"
    assert result["session"]["thread"] is None
    sid = result["session"]["id"]
    assert rig.kinds(sid).count("turn_started") == 1
    # An LLM agent's answer that does not call task_completed still closes the session.
    status, result = await rig.call("POST", "/tasks", token, {"agent": "talker", "task": "hi"})
    assert status == 200, result
    assert result["finished"] is True
    assert result["session"]["state"] == "closed"
    assert ("bot", "task") in [(a.token, a.action) for a in rig.tokens.audit_lines()]


async def test_a_task_that_outlasts_its_wait_is_stopped_and_closed(rig: Rig) -> None:
    status, result = await rig.call(
        "POST", "/tasks", BOOTSTRAP, {"agent": "talker", "task": "a slow one", "wait": 1}
    )
    assert status == 200, result
    assert result["finished"] is False
    assert result["session"]["state"] == "closed"
    await eventually(lambda: rig.llm.requests[0].disconnected, "the stream is dropped", 5)


# ------------------------------------------------------------------ overrides


async def test_allowed_overrides_reach_the_session_and_its_model_calls(rig: Rig) -> None:
    body = {
        "agent": "talker",
        "task": "hello",
        "runtimeParams": {"temperature": 0.25, "topP": 0.5},
        "coordinatorModelKey": "big-model",
        "metadata": {"provider": "other"},
        "additionalInstructions": "Answer in French.",
        "keepSessionOpenForComments": True,
        "listenToComments": False,
        "exitCriteria": {
            "timeLimit": {"maxDurationMinutes": 5},
            "userSignals": {"explicit": ["fin"]},
        },
    }
    sid = await launch(rig, body)
    await eventually(lambda: rig.state(sid) == "idle", "the turn ends")
    [call] = rig.llm.requests
    assert call.body["model"] == "big-model"
    assert call.body["temperature"] == 0.25
    assert call.body["top_p"] == 0.5
    assert call.body["max_tokens"] == 333  # the other provider's default
    assert call.system.startswith("You talk.\n\nAnswer in French.")
    found = rig.app.runtime.sessions.store.get(sid)
    assert found is not None
    assert found.options.time_limit_minutes == 5
    assert found.options.user_signals == ("fin",)
    assert found.options.listen_to_comments is False
    # The same clientRequestId with other overrides is another launch: refused.
    status, _first = await rig.call(
        "POST", "/sessions", BOOTSTRAP, {**body, "clientRequestId": "o"}
    )
    assert status == 201
    status, other = await rig.call(
        "POST", "/sessions", BOOTSTRAP, {**body, "clientRequestId": "o", "runtimeParams": {}}
    )
    assert_error(status, other, 409, "idempotency_conflict")


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"agentIds": ["helper"]}, 403, "override_not_allowed"),
        ({"runtimeParams": {"temperature": "hot"}}, 422, "invalid"),
        ({"runtimeParams": {"colour": 1}}, 422, "invalid"),
        ({"metadata": {"provider": "nowhere"}}, 422, "invalid"),
        ({"listenToComments": "yes"}, 422, "invalid"),
        ({"exitCriteria": {"timeLimit": {"maxDurationMinutes": -1}}}, 422, "invalid"),
        ({"additionalInstructions": "x" * 9000}, 413, "too_large"),
    ],
)
async def test_refused_overrides_create_nothing(
    rig: Rig, extra: dict[str, Any], status: int, code: str
) -> None:
    got, body = await rig.call(
        "POST", "/sessions", BOOTSTRAP, {"agent": "talker", "task": "x", **extra}
    )
    assert_error(got, body, status, code)
    got, body = await rig.call(
        "POST", "/tasks", BOOTSTRAP, {"agent": "talker", "task": "x", **extra}
    )
    assert_error(got, body, status, code)
    assert rig.sessions() == 0
    assert rig.llm.requests == []


async def test_agents_name_their_engine_provider_and_tools(rig: Rig) -> None:
    status, listed = await rig.call("GET", "/agents", BOOTSTRAP)
    assert status == 200, listed
    agents = {a["id"]: a for a in listed["agents"]}
    assert (agents["talker"]["engine"], agents["talker"]["providers"]) == ("llm", ["fake"])
    assert (agents["helper"]["engine"], agents["helper"]["providers"]) == ("script", [])
    assert "request_approval" in agents["gatekeeper"]["tools"]
    assert [a["id"] for a in listed["agents"] if a["default"]] == ["talker"]


async def test_model_overrides_need_an_llm_agent(rig: Rig) -> None:
    got, body = await rig.call(
        "POST", "/sessions", BOOTSTRAP, {"agent": "helper", "task": "x", "coordinatorModelKey": "m"}
    )
    assert_error(got, body, 422, "invalid")
    assert "engine llm" in body["error"]["message"]
    assert rig.sessions() == 0


async def test_by_default_only_the_life_of_a_session_may_be_overridden(
    settings: Settings, gh: FakeGitHub
) -> None:
    async with run_app(api_settings(settings, gh)) as app:
        api = Api(app, TokenStore(app.engine))
        status, ok = await api.call(
            "POST", "/sessions", BOOTSTRAP, {"task": "x", "keepSessionOpenForComments": False}
        )
        assert status == 201, ok
        status, body = await api.call(
            "POST", "/sessions", BOOTSTRAP, {"task": "y", "additionalInstructions": "be brief"}
        )
        assert_error(status, body, 403, "override_not_allowed")
        assert (
            "exitCriteria, listenToComments, keepSessionOpenForComments" in body["error"]["message"]
        )
        assert api.sessions() == 1


# ------------------------------------------------------------------ server-sent events


async def read_events(
    response: aiohttp.ClientResponse, count: int | None, within: float = 15.0
) -> tuple[list[tuple[int | None, str, Any]], bool]:
    """(id, event name, data) of each event read, until `count` of them or the end."""
    got: list[tuple[int | None, str, Any]] = []
    ident: int | None = None
    name, data = "message", ""
    deadline = time.monotonic() + within
    while count is None or len(got) < count:
        line = await asyncio.wait_for(response.content.readline(), deadline - time.monotonic())
        if not line:
            return got, True
        text = line.decode().rstrip("\n")
        if text.startswith("id: "):
            ident = int(text[4:])
        elif text.startswith("event: "):
            name = text[7:]
        elif text.startswith("data: "):
            data = text[6:]
        elif text == "" and data:
            got.append((ident, name, json.loads(data)))
            if name == "end":
                return got, False
            ident, name, data = None, "message", ""
    return got, False


async def test_events_as_server_sent_events_resume_and_end_with_the_session(rig: Rig) -> None:
    viewer, _ = rig.tokens.create("watcher", "viewer")
    sid = await launch(rig, {"agent": "helper", "task": "stream me"})
    url = f"{rig.app.url}{V1}/sessions/{sid}/events"
    headers = {"Authorization": f"Bearer {viewer}", "Accept": "text/event-stream"}
    async with rig.app.http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first, ended = await read_events(response, 3)
    assert not ended
    last = first[-1][0]
    assert last is not None
    assert all(i is not None for i, _, _ in first)
    assert [i for i, _, _ in first] == sorted(i for i, _, _ in first)
    status, paged = await rig.call("GET", f"/sessions/{sid}/events?limit=3", viewer)
    assert [e["id"] for e in paged["events"]] == [i for i, _, _ in first]
    assert [e for e in paged["events"]] == [data for _, _, data in first]
    # Reconnect after the last one seen; the session closes meanwhile: the rest, then end.
    status, _closed = await rig.call("DELETE", f"/sessions/{sid}", BOOTSTRAP)
    assert status == 200
    resumed = {**headers, "Last-Event-ID": str(last)}
    async with rig.app.http.get(url, headers=resumed) as response:
        rest, ended = await read_events(response, None)
    assert not ended  # it said `end` rather than being cut
    assert rest[-1][1] == "end"
    ids = [i for i, name, _ in rest if name != "end"]
    assert ids
    assert min(ids) > last
    kinds = [data["kind"] for _, name, data in rest if name != "end"]
    # `closed` is streamed; the turn being stopped may record its last events after it
    # and before the stream sees the session closed, never anything of a new turn.
    assert "closed" in kinds
    assert "turn_started" not in kinds[kinds.index("closed") :]
    status, page = await rig.call("GET", f"/sessions/{sid}/events?limit=1000", viewer)
    streamed = [i for i, _, _ in first] + ids
    # The stream ends at `closed`; a turn being stopped may still record after it.
    assert [e["id"] for e in page["events"]][: len(streamed)] == streamed


async def test_the_event_stream_of_a_session_the_token_may_not_see_is_404(rig: Rig) -> None:
    limited, _ = rig.tokens.create("demo-only", "viewer", [DEMO_REPO])
    sid = await launch(rig, {"agent": "helper", "task": "headless"})
    async with rig.app.http.get(
        f"{rig.app.url}{V1}/sessions/{sid}/events",
        headers={"Authorization": f"Bearer {limited}", "Accept": "text/event-stream"},
    ) as response:
        assert_error(response.status, await response.json(), 404, "not_found")


# ------------------------------------------------------------------ bad input


async def test_every_bad_input_gets_the_one_error_shape_and_makes_nothing(rig: Rig) -> None:
    viewer, _ = rig.tokens.create("watcher", "viewer")
    old, _ = rig.tokens.create("old", "operator")
    rig.tokens.revoke("old")
    cases: list[tuple[str, str, str | None, Any, bytes | None, int, str]] = [
        ("POST", "/tasks", BOOTSTRAP, None, b"{nope", 400, "bad_json"),
        ("POST", "/tasks", BOOTSTRAP, {"task": 3}, None, 422, "invalid"),
        ("POST", "/tasks", BOOTSTRAP, {"task": "x", "wait": "long"}, None, 422, "invalid"),
        ("POST", "/tasks", BOOTSTRAP, {"task": "x" * 70000}, None, 413, "too_large"),
        ("POST", "/tasks", BOOTSTRAP, {"task": "x", "agent": "nobody"}, None, 422, "unknown_agent"),
        ("POST", "/tasks", viewer, {"task": "x"}, None, 403, "forbidden"),
        ("POST", "/tasks", old, {"task": "x"}, None, 401, "unauthorized"),
        ("POST", "/sessions/s-00000000/cancel", BOOTSTRAP, None, None, 404, "not_found"),
        ("POST", "/sessions/s-00000000/approve", BOOTSTRAP, None, None, 404, "not_found"),
        ("POST", "/sessions/s-00000000/cancel", viewer, None, None, 403, "forbidden"),
        ("POST", "/sessions/s-00000000/cancel", old, None, None, 401, "unauthorized"),
        ("POST", "/sessions/s-00000000/cancel", BOOTSTRAP, None, b"[", 400, "bad_json"),
        ("POST", "/sessions/s-00000000/cancel", BOOTSTRAP, {"wait": -1}, None, 422, "invalid"),
        ("POST", "/sessions/s-00000000/approve", BOOTSTRAP, {"approve": 1}, None, 422, "invalid"),
    ]
    unknown_threads = [
        {
            "host": "github",
            "repo": "octo/other",
            "kind": "issue",
            "number": 99,
            "installationId": 9,
        },
        {"host": "github", "repo": "octo/other", "kind": "pull", "number": 98, "installationId": 9},
        {
            "host": "github",
            "repo": "octo/nothing",
            "kind": "issue",
            "number": 3,
            "installationId": 9,
        },
        {"host": "local", "repo": DEMO_REPO, "kind": "pull", "number": 77},
        {"host": "gitlab", "repo": "group/project", "kind": "issue", "number": 1},
    ]
    for thread in unknown_threads:
        for path in ("/sessions", "/tasks"):
            cases.append(
                (
                    "POST",
                    path,
                    BOOTSTRAP,
                    {"task": "x", "thread": thread},
                    None,
                    422,
                    "unknown_thread",
                )
            )
    for method, path, token, body, raw, status, code in cases:
        got, answer = await rig.call(method, path, token, body, raw=raw)
        assert_error(got, answer, status, code)
    assert rig.sessions() == 0
    assert rig.tokens.audit_lines() == []
    # A thread that is there launches.
    thread = {
        "host": "github",
        "repo": "octo/other",
        "kind": "pull",
        "number": 4,
        "installationId": 9,
    }
    status, launched = await rig.call(
        "POST", "/sessions", BOOTSTRAP, {"agent": "helper", "task": "x", "thread": thread}
    )
    assert status == 201, launched


# ------------------------------------------------------------------ /stop in a thread


@pytest.fixture
async def thread_rig(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    config = config_file(tmp_path, llm, default="talker")
    async with run_app(github_settings(settings, fake_github, config)) as app:
        yield GitHubRig(app, fake_github)


async def test_stop_in_a_thread_stops_the_turn_and_keeps_the_session(
    thread_rig: GitHubRig, llm: FakeOpenAI
) -> None:
    rig = thread_rig
    await rig.comment(12, "@threadline tell a slow story")
    await eventually(lambda: llm.in_flight == 1, "the model call is streaming")
    [call] = llm.requests
    [session] = rig.sessions()
    await rig.comment(12, "/stop", author="outsider")  # no write access: refused
    await rig.comment(12, "/stop")
    await eventually(lambda: call.disconnected, "the fake sees its connection closed", 10)
    store = rig.app.runtime.sessions.store
    await eventually(lambda: store.get(session.id).state == "idle", "the session is idle")
    kinds = rig.session_events(session.id)
    assert "command_refused" in kinds
    assert kinds.index("cancel_requested") < kinds.index("cancelled")
    [asked] = [e.data for e in store.transcript(session.id) if e.kind == "cancel_requested"]
    assert (asked["by"], asked["how"]) == ("maintainer", "comment")
    await eventually(
        lambda: any(r.startswith("Stopped turn 1 of session") for r in rig.replies(12)),
        "the thread is told",
    )
    # /stop with nothing in flight says so; /cancel still ends the session.
    await rig.comment(12, "/stop")
    await eventually(
        lambda: any("nothing to stop" in r for r in rig.replies(12)), "nothing to stop"
    )
    await rig.comment(12, "/cancel")
    await eventually(lambda: store.get(session.id).state == "closed", "/cancel closes")
    assert store.get(session.id).close_reason == "cancelled"
    assert REPO == "octo-org/hello-world"


# ------------------------------------------------------------------ across processes


@pytest.mark.slow
async def test_cancel_reaches_the_turn_in_another_process(
    database_url: str, tmp_path: Path, procs: list[Proc], github: FakeGitHub, llm: FakeOpenAI
) -> None:
    """The web process (no workers) takes the cancel; the worker process running the
    turn sees the request in the database and drops the model's stream."""
    config = Path(config_file(tmp_path, llm))
    env = {
        **env_for(github, config),
        "THREADLINE_OPERATOR_TOKEN": BOOTSTRAP,
        "TL_TEST_CONTROL_KEY": KEY,
    }
    web = start(procs, ["serve", "--workers", "0"], database_url, tmp_path, "web", env)
    base = web.wait_for(r"listening on (http://[\d.]+:\d+)").group(1)
    start(procs, ["worker"], database_url, tmp_path, "worker", env)
    engine = make_engine(database_url)
    store = SessionStore(engine)
    try:
        await comment(github, base, 7, "@threadline tell a slow story")
        await eventually(lambda: llm.in_flight >= 1, "the worker's model call is streaming", 40)
        [session] = store.recent(limit=5)
        assert session.state == "busy"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}{V1}/sessions/{session.id}/cancel",
                json={"wait": 15},
                headers={"Authorization": f"Bearer {BOOTSTRAP}"},
            ) as response,
        ):
            answer = await response.json()
        assert response.status == 200, answer
        assert (answer["cancelling"], answer["session"]["state"]) == (True, "idle")
        # Every model call of the turn is dropped (a lease that lapsed on a busy machine can
        # make the runner start the turn a second time; both stop).
        await eventually(
            lambda: all(r.disconnected for r in llm.requests),
            "the fake sees its connections closed",
            10,
        )
        kinds = [e.kind for e in store.transcript(session.id)]
        assert kinds.index("cancel_requested") < kinds.index("cancelled")
        started = next(e.data for e in store.transcript(session.id) if e.kind == "turn_started")
        stopped = next(e.data for e in store.transcript(session.id) if e.kind == "cancelled")
        assert stopped["by"] == "operator:operator"
        assert started["runner"].startswith("turns-")
    finally:
        engine.dispose()
