"""Per-turn runtimeParams on a prompt (issue 18), over real HTTP and through the MCP SDK's
client: they reach the model request of the turn that reads the prompt and no later
one, are recorded with the operator's input, and are allowed by the same rules as a
launch's overrides (a refused one queues nothing)."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.test_api import BOOTSTRAP, assert_error
from tests.test_api import gh as gh  # the fixture rig needs: a second host
from tests.test_api_control import Rig, launch
from tests.test_api_control import llm as llm  # the fixture: the fake OpenAI server
from tests.test_api_control import rig as rig  # the fixture: the app with an LLM agent
from tests.test_sessions import eventually

TURN = {"temperature": 0.75, "maxTokens": 77, "model": "turn-model", "stopSequences": ["END"]}


async def prompt(rig: Rig, sid: str, body: dict[str, Any]) -> tuple[int, Any]:
    return await rig.call("POST", f"/sessions/{sid}/prompt", BOOTSTRAP, body)


async def test_a_prompts_runtime_params_reach_its_turn_and_not_the_next(rig: Rig) -> None:
    sid = await launch(rig, {"agent": "talker", "task": "hello", "runtimeParams": {"topP": 0.5}})
    await eventually(lambda: rig.state(sid) == "idle", "the first turn ends")
    status, turn = await prompt(
        rig, sid, {"input": "warmer now", "wait": 20, "runtimeParams": TURN}
    )
    assert status == 200, turn
    assert turn["finished"] is True
    status, after = await prompt(rig, sid, {"input": "and now as usual", "wait": 20})
    assert status == 200, after
    assert after["finished"] is True
    first, hot, usual = (r.body for r in rig.llm.requests)
    assert (hot["model"], hot["temperature"], hot["max_tokens"]) == ("turn-model", 0.75, 77)
    assert hot["stop"] == ["END"]
    assert hot["top_p"] == 0.5, "the session's own params stay under the turn's"
    for other in (first, usual):
        assert (other["model"], other["max_tokens"]) == ("slow-model", 200)
        assert "temperature" not in other
        assert "stop" not in other
        assert other["top_p"] == 0.5
    inputs = rig.events(sid, "input")
    assert [(i["body"], i.get("runtimeParams")) for i in inputs] == [
        ("warmer now", TURN),
        ("and now as usual", None),
    ]
    assert inputs[0]["author"] == "operator:operator"


async def test_refused_turn_params_queue_nothing(rig: Rig) -> None:
    sid = await launch(rig, {"agent": "talker", "task": "hello"})
    helper = await launch(rig, {"agent": "helper", "task": "hello"})
    await eventually(lambda: rig.state(sid) == "idle", "the first turn ends")
    for target, params, code in [
        (sid, {"temperature": "hot"}, "invalid"),
        (sid, {"colour": 1}, "invalid"),
        (sid, [0.5], "invalid"),
        (helper, {"temperature": 0.5}, "invalid"),  # a script agent has no model
    ]:
        status, body = await prompt(rig, target, {"input": "x", "runtimeParams": params})
        assert_error(status, body, 422, code)
    assert rig.events(sid, "input") == []
    assert [r.body["max_tokens"] for r in rig.llm.requests] == [200]


async def test_mcp_prompt_and_send_carry_turn_params(rig: Rig) -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(rig.app.url + "/mcp", http_client=http)) as client,
    ):
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name in ("sessions_prompt", "pm_session"):
            schema = tools[name].input_schema["properties"]["runtimeParams"]
            assert {"temperature", "maxTokens", "model"} <= set(schema["properties"])
        made = await client.call_tool("sessions_create", {"agentId": "talker", "task": "hi"})
        sid = made.structured_content["sessionId"]
        await eventually(lambda: rig.state(sid) == "idle", "the first turn ends")
        said = await client.call_tool(
            "sessions_prompt",
            {"sessionId": sid, "prompt": "one", "wait": 20, "runtimeParams": {"maxTokens": 11}},
        )
        assert not said.is_error, said.content
        sent = await client.call_tool(
            "pm_session",
            {
                "action": "send",
                "sessionId": sid,
                "message": "two",
                "wait": 20,
                "runtimeParams": {"temperature": 0.1},
            },
        )
        assert not sent.is_error, sent.content
        plain = await client.call_tool(
            "sessions_prompt", {"sessionId": sid, "prompt": "three", "wait": 20}
        )
        assert not plain.is_error, plain.content
        bad = await client.call_tool(
            "sessions_prompt",
            {"sessionId": sid, "prompt": "four", "runtimeParams": {"maxTokens": "many"}},
        )
        assert bad.is_error
        assert bad.structured_content["error"]["code"] == "invalid"
    bodies = [r.body for r in rig.llm.requests]
    assert [b["max_tokens"] for b in bodies] == [200, 11, 200, 200]
    assert [b.get("temperature") for b in bodies] == [None, None, 0.1, None]
    assert [i["body"] for i in rig.events(sid, "input")] == ["one", "two", "three"]
