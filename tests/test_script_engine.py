"""bot.agents.script: rules run in order per input, placeholders fill safely, tools see it all."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from bot.agents.base import (
    REPLY,
    SESSION_TOOLS,
    TASK_COMPLETED,
    UPDATE_STATUS,
    AgentSpec,
    EngineError,
    ToolResult,
    Turn,
    TurnInput,
)
from bot.agents.config import Config, build_engine, parse_config
from bot.agents.script import (
    MAX_SLEEP_SECONDS,
    Fail,
    Reply,
    Rule,
    Say,
    ScriptEngine,
    Sleep,
    TaskCompleted,
    UpdateStatus,
    fill,
    script_spec,
)


class RecordingTools:
    """Tools that record every call and say in order, refusing tools the agent may not use."""

    def __init__(self, allowed: Sequence[str] = SESSION_TOOLS) -> None:
        self.allowed = tuple(allowed)
        self.events: list[tuple[Any, ...]] = []

    async def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        ok = name in self.allowed
        self.events.append(("call", name, dict(args), ok))
        return ToolResult(ok=ok, content="" if ok else "not allowed")

    async def say(self, text: str) -> None:
        self.events.append(("say", text))

    def calls(self, name: str) -> list[dict[str, Any]]:
        return [event[2] for event in self.events if event[0] == "call" and event[1] == name]

    def replies(self) -> list[str]:
        return [args["body"] for args in self.calls(REPLY)]

    def said(self) -> list[str]:
        return [event[1] for event in self.events if event[0] == "say"]


def task(body: str, author: str = "maintainer") -> TurnInput:
    return TurnInput(kind="task", author=author, body=body)


def comment(body: str, author: str = "alice") -> TurnInput:
    return TurnInput(kind="comment", author=author, body=body)


def make_turn(agent: AgentSpec, *inputs: TurnInput, number: int = 1, task_text: str = "") -> Turn:
    first = next((item.body for item in inputs if item.kind == "task"), task_text)
    return Turn(
        session_id="s-7f3a",
        number=number,
        agent=agent,
        task=task_text or first,
        inputs=inputs,
        thread_key="github:octo/repo#1",
    )


def rule(*actions: Any, when: str = "", kind: str | None = None) -> Rule:
    return Rule(actions=tuple(actions), when=re.compile(when), kind=kind)


async def run(
    rules: Sequence[Rule], *inputs: TurnInput, tools: RecordingTools | None = None, **turn: Any
) -> RecordingTools:
    spec = script_spec("tester", rules)
    recorder = tools or RecordingTools()
    await build_engine(spec).run_turn(make_turn(spec, *inputs, **turn), recorder)
    return recorder


async def test_the_first_matching_rule_wins() -> None:
    rules = [
        rule(Reply("fix"), when=r"(?i)\bfix\b"),
        rule(Reply("fix again"), when="fix"),
        rule(Reply("anything")),
    ]
    tools = await run(rules, comment("please FIX this"), comment("fixture"), comment("hello"))
    assert tools.replies() == ["fix", "fix again", "anything"]


async def test_each_input_runs_its_rule_in_order_and_actions_in_order() -> None:
    rules = [rule(Say("first {input}"), Reply("then {input}"))]
    tools = await run(rules, comment("a"), comment("b"))
    assert [event[0:2] for event in tools.events] == [
        ("say", "first a"),
        ("call", REPLY),
        ("say", "first b"),
        ("call", REPLY),
    ]
    assert tools.replies() == ["then a", "then b"]


async def test_match_limits_a_rule_to_one_input_kind() -> None:
    rules = [
        rule(Reply("task"), kind="task"),
        rule(Reply("comment"), kind="comment"),
        rule(Reply("other")),
    ]
    operator = TurnInput(kind="operator", author="root", body="note")
    tools = await run(rules, task("do it"), comment("hi"), operator)
    assert tools.replies() == ["task", "comment", "other"]


async def test_when_searches_the_body_anywhere_with_inline_flags() -> None:
    rules = [rule(Reply("done"), when=r"(?mi)^/done\b")]
    tools = await run(rules, comment("> quoted /done"), comment("ok\n/DONE now"))
    assert tools.replies() == ["done"]


async def test_no_matching_rule_says_so_and_posts_nothing() -> None:
    tools = await run([rule(Reply("x"), when="^never$")], comment("hello", author="bob"))
    assert tools.events == [("say", "script: no rule matches the comment from @bob; nothing to do")]


async def test_update_status_checks_the_first_done_steps() -> None:
    status = UpdateStatus(("Read {input}", "Review", "Summarize"), done=2, summary="for @{author}")
    tools = await run([rule(status)], comment("diff"))
    assert tools.calls(UPDATE_STATUS) == [
        {
            "steps": [
                {"title": "Read diff", "done": True},
                {"title": "Review", "done": True},
                {"title": "Summarize", "done": False},
            ],
            "summary": "for @alice",
        }
    ]


async def test_task_completed_posts_the_output() -> None:
    tools = await run([rule(TaskCompleted("did: {task}"))], task("review"))
    assert tools.calls(TASK_COMPLETED) == [{"output": "did: review"}]


async def test_every_placeholder_is_filled() -> None:
    text = "{input}|{author}|{task}|{session}|{turn}|{agent}"
    tools = await run([rule(Reply(text))], comment("hi", author="bob"), number=3, task_text="T")
    assert tools.replies() == ["hi|bob|T|s-7f3a|3|tester"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{input}", "<in>"),
        ("{unknown} stays", "{unknown} stays"),
        ("{input.__class__}", "{input.__class__}"),
        ("{input[0]}", "{input[0]}"),
        ("{input!r} {input:>9}", "{input!r} {input:>9}"),
        ("{0} {}", "{0} {}"),
        ("{{input}} is literal", "{input} is literal"),
        ("{{{input}}}", "{<in>}"),
        ("unbalanced { and }", "unbalanced { and }"),
    ],
)
def test_fill_substitutes_names_only(template: str, expected: str) -> None:
    assert fill(template, {"input": "<in>"}) == expected


async def test_placeholders_in_the_input_are_not_expanded_or_evaluated() -> None:
    body = "{task} {input.__class__.__mro__} {{"
    tools = await run([rule(Reply("got: {input}"))], comment(body), task_text="secret")
    assert tools.replies() == [f"got: {body}"]


async def test_sleep_holds_the_turn_while_the_loop_runs_on() -> None:
    tools = RecordingTools()
    rules = [rule(Reply("before"), Sleep(0.3), Reply("after"))]
    turn = asyncio.create_task(run(rules, comment("x"), tools=tools))
    await asyncio.sleep(0.05)
    assert tools.replies() == ["before"]  # held in the sleep; this coroutine still runs
    await turn
    assert tools.replies() == ["before", "after"]


async def test_sleep_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    await run([rule(Sleep(3600), Sleep(-1))], comment("x"))
    assert slept == [MAX_SLEEP_SECONDS, 0.0]


async def test_fail_raises_engine_error_and_stops_the_turn() -> None:
    tools = RecordingTools()
    rules = [rule(Reply("before"), Fail("broken by @{author}"), Reply("after"))]
    with pytest.raises(EngineError, match=r"^broken by @alice$"):
        await run(rules, comment("x"), comment("y"), tools=tools)
    assert tools.replies() == ["before"]


async def test_a_tool_the_agent_may_not_use_is_still_called() -> None:
    spec = script_spec("limited", [rule(TaskCompleted("out"), Reply("still here"))], tools=[REPLY])
    tools = RecordingTools(allowed=spec.tools)
    await build_engine(spec).run_turn(make_turn(spec, task("go")), tools)
    assert tools.events == [
        ("call", TASK_COMPLETED, {"output": "out"}, False),
        ("call", REPLY, {"body": "still here"}, True),
    ]


def test_from_spec_needs_parsed_rules() -> None:
    spec = AgentSpec(id="raw", engine="script", options={"script": [{"do": []}]})
    with pytest.raises(TypeError, match="'raw'"):
        ScriptEngine.from_spec(spec)


def test_an_engine_without_a_builder_is_refused() -> None:
    with pytest.raises(ValueError, match="'gpt'"):
        build_engine(AgentSpec(id="x", engine="gpt"))


async def test_the_built_in_echo_agent_restates_and_completes_the_task() -> None:
    echo = Config.default().agent()
    tools = RecordingTools()
    await build_engine(echo).run_turn(make_turn(echo, task("review this", author="bob")), tools)
    assert tools.replies() == ["Got it, @bob: review this"]
    assert tools.calls(TASK_COMPLETED) == [{"output": "review this"}]
    statuses = tools.calls(UPDATE_STATUS)
    assert [[step["done"] for step in s["steps"]] for s in statuses] == [
        [True, False],
        [True, True],
    ]
    assert tools.events[-1][1] == TASK_COMPLETED


async def test_the_built_in_echo_agent_answers_follow_ups_without_completing() -> None:
    echo = Config.default().agent()
    tools = RecordingTools()
    turn = make_turn(echo, comment("and line 45?"), comment("thanks"), number=2, task_text="t")
    await build_engine(echo).run_turn(turn, tools)
    assert tools.replies() == ["Got it, @alice: and line 45?", "Got it, @alice: thanks"]
    assert tools.calls(TASK_COMPLETED) == []
    assert len(tools.calls(UPDATE_STATUS)) == 4


async def test_a_script_from_the_file_runs() -> None:
    config = parse_config(
        """\
agents:
  bot:
    engine: script
    script:
      - when: '(?i)^hello'
        match: comment
        do:
          - reply: "Hi {author}, turn {turn}"
          - update_status: {steps: [greet], done: 1}
      - do:
          - say: "ignored {input}"
""",
    )
    spec = config.agent("bot")
    tools = RecordingTools()
    await build_engine(spec).run_turn(make_turn(spec, comment("HELLO"), task("x")), tools)
    assert tools.replies() == ["Hi alice, turn 1"]
    assert tools.calls(UPDATE_STATUS) == [
        {"steps": [{"title": "greet", "done": True}], "summary": ""}
    ]
    assert tools.said() == ["ignored x"]
