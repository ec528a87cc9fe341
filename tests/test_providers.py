"""Both provider adapters over real loopback HTTP against the fake APIs in tests/fakes/llm.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest

from bot.agents.providers import build_provider
from bot.agents.providers.anthropic_messages import AnthropicMessagesProvider
from bot.agents.providers.base import (
    ANTHROPIC,
    OPENAI,
    Message,
    Params,
    Provider,
    ProviderConfig,
    ProviderError,
    Request,
    StreamInterrupted,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from bot.agents.providers.openai_chat import OpenAIChatProvider
from tests.fakes.llm import (
    Call,
    Failure,
    FakeAnthropic,
    FakeLLM,
    FakeOpenAI,
    LLMRequest,
    Reply,
    overlapping,
)

REPLY_TOOL = ToolSpec(
    "reply",
    "Post a reply in the thread.",
    {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]},
)
LABEL_TOOL = ToolSpec(
    "add_label",
    "Add a label to the pull request.",
    {"type": "object", "properties": {"label": {"type": "string"}}},
)
TOOLS = (REPLY_TOOL, LABEL_TOOL)


@dataclass
class Rig:
    """A fake API of one kind and the providers made to talk to it."""

    kind: str
    fake: FakeLLM
    providers: list[Provider] = field(default_factory=list)

    def provider(self, **config: Any) -> Provider:
        made = build_provider(self.fake.provider_config(**config))
        self.providers.append(made)
        return made

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the last request."""
        return self.fake.requests[-1].body


@pytest.fixture(params=[OPENAI, ANTHROPIC])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    fake: FakeLLM = FakeOpenAI() if request.param == OPENAI else FakeAnthropic()
    async with fake:
        made = Rig(request.param, fake)
        try:
            yield made
        finally:
            for provider in made.providers:
                await provider.close()


class Deltas:
    """An `on_text` that keeps what it got, and whether the answer was still streaming."""

    def __init__(self, fake: FakeLLM | None = None) -> None:
        self.pieces: list[str] = []
        self.while_streaming: list[bool] = []
        self.fake = fake

    async def __call__(self, text: str) -> None:
        self.pieces.append(text)
        if self.fake is not None:
            self.while_streaming.append(self.fake.requests[-1].ended is None)


def ask(text: str = "hello", **changes: Any) -> Request:
    fields: dict[str, Any] = {
        "params": Params(model="model-a"),
        "messages": (Message("user", text),),
    }
    fields.update(changes)
    return Request(**fields)


def done_word(kind: str, tools: bool = False) -> str:
    if kind == OPENAI:
        return "tool_calls" if tools else "stop"
    return "tool_use" if tools else "end_turn"


# ---------------------------------------------------------------- build_provider


def test_build_provider_picks_the_adapter_by_kind() -> None:
    openai_provider = build_provider(ProviderConfig("o", OPENAI, "k", base_url="http://x/v1"))
    anthropic_provider = build_provider(ProviderConfig("a", ANTHROPIC, "k", base_url="http://x"))
    assert isinstance(openai_provider, OpenAIChatProvider)
    assert isinstance(anthropic_provider, AnthropicMessagesProvider)
    assert openai_provider.config.id == "o"
    with pytest.raises(ValueError, match=r"provider 'g': unknown kind 'gemini'"):
        build_provider(ProviderConfig("g", "gemini", "k"))


# ---------------------------------------------------------------- streaming


async def test_text_deltas_arrive_in_order_while_the_answer_streams(rig: Rig) -> None:
    pieces = ["The ", "build ", "is ", "green", "."]
    rig.fake.enqueue(Reply(text=pieces, gap=0.02, input_tokens=31, output_tokens=5))
    on_text = Deltas(rig.fake)

    response = await rig.provider().complete(ask(), on_text)

    assert on_text.pieces == pieces
    assert response.text == "".join(pieces) == "The build is green."
    assert on_text.while_streaming[0] is True  # the first delta came before the answer ended
    assert response.tool_calls == ()
    assert response.usage == Usage(31, 5)
    assert response.stop_reason == done_word(rig.kind)
    assert response.model == "model-a"
    sent = rig.fake.requests[-1]
    assert sent.status == 200
    assert sent.body["stream"] is True
    if rig.kind == OPENAI:
        assert sent.headers["authorization"] == f"Bearer {rig.fake.api_key}"
        assert sent.body["stream_options"] == {"include_usage": True}
    else:
        key_header = sent.headers.get("x-api-key") or sent.headers["authorization"]
        assert rig.fake.api_key in key_header
        assert sent.headers["anthropic-version"]


async def test_tool_call_chunks_assemble_into_tool_calls(rig: Rig) -> None:
    rig.fake.enqueue(
        Reply(
            text=["Labelling", " and replying."],
            calls=[
                Call("add_label", {"label": "needs-review"}, id="call-1"),
                Call("reply", {"body": 'On it: {"quoted": true}', "n": [1, 2]}, id="call-2"),
            ],
            output_tokens=40,
        )
    )
    on_text = Deltas()

    response = await rig.provider().complete(ask(tools=TOOLS), on_text)

    assert response.text == "Labelling and replying."
    assert on_text.pieces == ["Labelling", " and replying."]
    assert [(c.id, c.name, dict(c.arguments)) for c in response.tool_calls] == [
        ("call-1", "add_label", {"label": "needs-review"}),
        ("call-2", "reply", {"body": 'On it: {"quoted": true}', "n": [1, 2]}),
    ]
    assert json.loads(response.tool_calls[1].raw_arguments) == response.tool_calls[1].arguments
    assert response.stop_reason == done_word(rig.kind, tools=True)
    assert response.usage.output_tokens == 40


async def test_arguments_that_are_not_a_json_object_give_empty_arguments_and_keep_the_raw(
    rig: Rig,
) -> None:
    rig.fake.enqueue(
        Reply(calls=[Call("reply", '{"body": "unterminated'), Call("add_label", "[1, 2]")])
    )

    response = await rig.provider().complete(ask(tools=TOOLS), Deltas())

    broken, listed = response.tool_calls
    assert (broken.name, dict(broken.arguments), broken.raw_arguments) == (
        "reply",
        {},
        '{"body": "unterminated',
    )
    assert (listed.name, dict(listed.arguments), listed.raw_arguments) == (
        "add_label",
        {},
        "[1, 2]",
    )
    assert broken.id
    assert listed.id
    assert broken.id != listed.id


# ---------------------------------------------------------------- what goes on the wire


def expected_tools(kind: str) -> list[dict[str, Any]]:
    if kind == OPENAI:
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in TOOLS
        ]
    return [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in TOOLS
    ]


CHOICES: dict[str, dict[str, Any]] = {
    OPENAI: {
        "auto": "auto",
        "any": "required",
        "tool": {"type": "function", "function": {"name": "reply"}},
    },
    ANTHROPIC: {
        "auto": {"type": "auto"},
        "any": {"type": "any"},
        "tool": {"type": "tool", "name": "reply"},
    },
}


@pytest.mark.parametrize("mode", ["auto", "any", "tool"])
async def test_tools_and_tool_choice_on_the_wire(rig: Rig, mode: str) -> None:
    rig.fake.enqueue(Reply(text=["ok"]))
    choice = ToolChoice(mode, "reply" if mode == "tool" else None)  # type: ignore[arg-type]

    # (cache breakpoints have tests of their own: see test_prompt_cache.py)
    await rig.provider(caching=False).complete(ask(tools=TOOLS, tool_choice=choice), Deltas())

    assert rig.body["tools"] == expected_tools(rig.kind)
    assert rig.body["tool_choice"] == CHOICES[rig.kind][mode]


async def test_tool_choice_none_sends_no_tools(rig: Rig) -> None:
    rig.fake.enqueue(Reply(text=["just text"]))

    response = await rig.provider().complete(
        ask(tools=TOOLS, tool_choice=ToolChoice("none")), Deltas()
    )

    assert response.text == "just text"
    assert "tools" not in rig.body
    assert "tool_choice" not in rig.body


async def test_no_tools_sends_neither_tools_nor_tool_choice(rig: Rig) -> None:
    rig.fake.enqueue(Reply(text=["ok"]))
    await rig.provider().complete(ask(tool_choice=ToolChoice("any")), Deltas())
    assert "tools" not in rig.body
    assert "tool_choice" not in rig.body


async def test_a_tool_round_trip_is_replayed_in_the_api_s_own_shape(rig: Rig) -> None:
    """Turn one asks for two tools; turn two sends the calls and their results back, the
    way the engine keeps them (through to_dict / from_dict, as in a transcript)."""
    rig.fake.enqueue(
        Reply(
            text=["Checking."],
            calls=[
                Call("add_label", {"label": "bug"}, id="c-1"),
                Call("reply", {"body": "hi"}, id="c-2"),
            ],
        ),
        Reply(text=["Done."]),
    )
    provider = rig.provider(caching=False)
    first = await provider.complete(ask("label it", tools=TOOLS), Deltas())
    conversation = (
        Message("user", "label it"),
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message("tool", "labelled", tool_call_id="c-1"),
        Message("tool", "permission denied", tool_call_id="c-2", is_error=True),
        Message("user", "and now?"),
    )
    replayed = tuple(Message.from_dict(json.loads(json.dumps(m.to_dict()))) for m in conversation)

    second = await provider.complete(
        ask(
            messages=replayed,
            tools=TOOLS,
            params=Params(model="model-a", system_prompt="Be brief."),
        ),
        Deltas(),
    )

    assert second.text == "Done."
    assert rig.fake.requests[-1].status == 200  # the fake checks the pairing of calls and results
    if rig.kind == OPENAI:
        assert rig.body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "label it"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "c-1",
                        "type": "function",
                        "function": {"name": "add_label", "arguments": '{"label": "bug"}'},
                    },
                    {
                        "id": "c-2",
                        "type": "function",
                        "function": {"name": "reply", "arguments": '{"body": "hi"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c-1", "content": "labelled"},
            {"role": "tool", "tool_call_id": "c-2", "content": "permission denied"},
            {"role": "user", "content": "and now?"},
        ]
    else:
        assert rig.body["system"] == "Be brief."
        assert rig.body["messages"] == [
            {"role": "user", "content": "label it"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "c-1",
                        "name": "add_label",
                        "input": {"label": "bug"},
                    },
                    {"type": "tool_use", "id": "c-2", "name": "reply", "input": {"body": "hi"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "c-1",
                        "content": "labelled",
                        "is_error": False,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "c-2",
                        "content": "permission denied",
                        "is_error": True,
                    },
                    {"type": "text", "text": "and now?"},
                ],
            },
        ]


async def test_openai_assistant_calls_without_text_send_null_content() -> None:
    async with FakeOpenAI() as fake:
        fake.enqueue(Reply(text=["ok"]))
        provider = build_provider(fake.provider_config())
        try:
            conversation = (
                Message("user", "go"),
                Message("assistant", "", tool_calls=(ToolCall("c-9", "reply", {"body": "x"}),)),
                Message("tool", "posted", tool_call_id="c-9"),
            )
            await provider.complete(ask(messages=conversation, tools=TOOLS), Deltas())
        finally:
            await provider.close()
        assert fake.requests[-1].status == 200
        assert fake.requests[-1].body["messages"][1]["content"] is None


async def test_anthropic_none_after_tool_calls_keeps_the_tools_and_forbids_them() -> None:
    """The Messages API refuses tool_use / tool_result blocks in a request without tools,
    so "none" there sends the tools with tool_choice {"type": "none"}."""
    async with FakeAnthropic() as fake:
        fake.enqueue(Reply(text=["Summary."]))
        provider = build_provider(fake.provider_config(caching=False))
        conversation = (
            Message("user", "go"),
            Message("assistant", "", tool_calls=(ToolCall("t-1", "reply", {"body": "x"}),)),
            Message("tool", "posted", tool_call_id="t-1"),
        )
        try:
            response = await provider.complete(
                ask(messages=conversation, tools=TOOLS, tool_choice=ToolChoice("none")), Deltas()
            )
        finally:
            await provider.close()
        assert response.text == "Summary."
        assert fake.requests[-1].body["tool_choice"] == {"type": "none"}
        assert fake.requests[-1].body["tools"] == expected_tools(ANTHROPIC)
        # An assistant message without text has no empty text block (the API refuses those).
        assert fake.requests[-1].body["messages"][1]["content"] == [
            {"type": "tool_use", "id": "t-1", "name": "reply", "input": {"body": "x"}}
        ]


# ---------------------------------------------------------------- params


DEFAULTS = Params(
    model="model-default",
    temperature=0.1,
    max_tokens=100,
    top_k=40,
    system_prompt="default prompt",
    provider_specific=MappingProxyType({"metadata": {"user_id": "u-1"}, "seed": 1}),
)
SESSION = Params(
    temperature=0.5,
    stop_sequences=("END",),
    provider_specific=MappingProxyType({"seed": 2, "service_tier": "auto"}),
)
PROMPT = Params(
    model="model-special",
    top_p=0.9,
    system_prompt="You review pull requests.",
    provider_specific=MappingProxyType({"service_tier": "priority"}),
)


@pytest.mark.parametrize("engine_merges_defaults", [True, False])
async def test_params_precedence_reaches_the_body(rig: Rig, engine_merges_defaults: bool) -> None:
    """Provider defaults < session < prompt; only set fields override; provider_specific
    merges shallowly. The adapter lays the request over the defaults itself, so it makes
    no difference whether the engine merged them in already."""
    rig.fake.enqueue(Reply(text=["ok"]))
    params = (
        Params.merge(DEFAULTS, SESSION, PROMPT)
        if engine_merges_defaults
        else Params.merge(SESSION, PROMPT)
    )

    await rig.provider(defaults=DEFAULTS, caching=False).complete(ask(params=params), Deltas())

    body = rig.body
    common = {
        "model": "model-special",
        "temperature": 0.5,
        "max_tokens": 100,
        "top_p": 0.9,
        # OpenAI has no top_k (and refuses it): only a declared vLLM/Ollama server gets it
        "top_k": 40 if rig.kind == ANTHROPIC else None,
        "metadata": {"user_id": "u-1"},
        "seed": 2,
        "service_tier": "priority",
    }
    assert {k: body.get(k) for k in common} == common
    if rig.kind == OPENAI:
        assert body["stop"] == ["END"]
        assert body["messages"][0] == {"role": "system", "content": "You review pull requests."}
    else:
        assert body["stop_sequences"] == ["END"]
        assert body["system"] == "You review pull requests."
        assert body["messages"][0] == {"role": "user", "content": "hello"}


@pytest.mark.parametrize("compat", [None, "vllm", "ollama"])
async def test_top_k_reaches_only_servers_that_take_it(compat: str | None) -> None:
    async with FakeOpenAI() as fake:
        fake.enqueue(Reply(text=["ok"]))
        provider = build_provider(fake.provider_config(compat=compat))
        try:
            await provider.complete(ask(params=Params(model="m", top_k=20)), Deltas())
        finally:
            await provider.close()
        assert fake.requests[-1].body.get("top_k") == (None if compat is None else 20)


async def test_unset_params_stay_out_of_the_body(rig: Rig) -> None:
    rig.fake.enqueue(Reply(text=["ok"]))
    await rig.provider().complete(ask(), Deltas())
    body = rig.body
    for name in ("temperature", "top_p", "top_k", "stop", "stop_sequences", "system"):
        assert name not in body
    if rig.kind == OPENAI:
        assert "max_tokens" not in body
        assert body["messages"] == [{"role": "user", "content": "hello"}]
    else:
        assert body["max_tokens"] == 4096  # required by the Messages API


async def test_openai_max_completion_tokens_replaces_max_tokens() -> None:
    async with FakeOpenAI() as fake:
        fake.enqueue(Reply(text=["ok"]))
        provider = build_provider(fake.provider_config())
        params = Params(
            model="o-model",
            max_tokens=50,
            provider_specific=MappingProxyType({"max_completion_tokens": 900}),
        )
        try:
            await provider.complete(ask(params=params), Deltas())
        finally:
            await provider.close()
        assert fake.requests[-1].body["max_completion_tokens"] == 900
        assert "max_tokens" not in fake.requests[-1].body


async def test_no_model_is_a_clear_error_before_any_request(rig: Rig) -> None:
    with pytest.raises(ProviderError, match=r"provider 'fake-.*': no model set") as caught:
        await rig.provider().complete(ask(params=Params(temperature=0.2)), Deltas())
    assert caught.value.retryable is False
    assert rig.fake.requests == []


# ---------------------------------------------------------------- failures


async def test_429_with_retry_after_is_retried_by_the_sdk(rig: Rig) -> None:
    rig.fake.enqueue(Failure(429, retry_after=0.1), Reply(text=["after the wait"]))

    response = await rig.provider(max_retries=2).complete(ask(), Deltas())

    assert response.text == "after the wait"
    limited, served = rig.fake.requests
    assert (limited.status, served.status) == (429, 200)
    assert limited.ended is not None
    assert served.started - limited.ended >= 0.09  # retry-after was honoured


async def test_500_twice_then_success(rig: Rig) -> None:
    # A short retry-after keeps the test fast; without one the SDK backs off 0.5 s, 1 s.
    rig.fake.enqueue(
        Failure(500, retry_after=0.01), Failure(500, retry_after=0.01), Reply(text=["third time"])
    )

    response = await rig.provider(max_retries=2).complete(ask(), Deltas())

    assert response.text == "third time"
    assert [r.status for r in rig.fake.requests] == [500, 500, 200]


async def test_persistent_500_is_a_retryable_provider_error_without_the_key(rig: Rig) -> None:
    rig.fake.enqueue(*[Failure(500, message="upstream exploded")] * 2)

    with pytest.raises(ProviderError) as caught:
        await rig.provider(max_retries=1).complete(ask(), Deltas())

    error = caught.value
    assert not isinstance(error, StreamInterrupted)
    assert (error.status, error.retryable) == (500, True)
    assert "upstream exploded" in str(error)
    assert rig.fake.api_key not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert [r.status for r in rig.fake.requests] == [500, 500]  # one try, one SDK retry


async def test_wrong_key_is_401_not_retried_and_never_echoed(rig: Rig) -> None:
    wrong = "sk-wrong-secret-9876"

    with pytest.raises(ProviderError) as caught:
        await rig.provider(api_key=wrong).complete(ask(), Deltas())

    error = caught.value
    assert (error.status, error.retryable) == (401, False)
    assert "Incorrect API key provided" in str(error)  # the fake echoes the key it got ...
    assert wrong not in str(error)  # ... and the adapter takes it out
    assert "[redacted]" in str(error)
    assert len(rig.fake.requests) == 1
    assert rig.fake.requests[0].status == 401


@pytest.mark.parametrize("cut", ["drop", "end", "error"])
async def test_a_stream_cut_after_it_started_raises_stream_interrupted(rig: Rig, cut: str) -> None:
    # OpenAI: the role chunk and two text chunks; Anthropic: message_start, ping,
    # content_block_start and two text deltas. Then the cut.
    before_cut = 3 if rig.kind == OPENAI else 5
    rig.fake.enqueue(
        Reply(text=["partial ", "answer ", "never finished"], cut_after=before_cut, cut=cut),  # type: ignore[arg-type]
        Reply(text=["whole answer"]),
    )
    on_text = Deltas()
    provider = rig.provider()

    with pytest.raises(StreamInterrupted) as caught:
        await provider.complete(ask(), on_text)

    assert caught.value.retryable is True
    assert caught.value.status is None
    assert rig.fake.api_key not in str(caught.value)
    assert on_text.pieces == ["partial ", "answer "]  # what came before the cut was streamed
    assert len(rig.fake.requests) == 1  # a cut stream is the engine's to retry, not the SDK's
    # The provider is still usable: the engine retries the whole call.
    response = await provider.complete(ask(), Deltas())
    assert response.text == "whole answer"


async def test_nothing_listening_is_a_retryable_connection_error(rig: Rig) -> None:
    config = rig.fake.provider_config(max_retries=0)
    await rig.fake.close()
    provider = build_provider(config)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(ask(), Deltas())
    finally:
        await provider.close()
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert not isinstance(caught.value, StreamInterrupted)


# ---------------------------------------------------------------- concurrency and the fake's hooks


async def test_calls_through_one_provider_run_concurrently(rig: Rig) -> None:
    rig.fake.enqueue(Reply(text=["one"], delay=0.3), Reply(text=["two"], delay=0.3))
    provider = rig.provider()

    results = await asyncio.gather(
        provider.complete(ask("first"), Deltas()), provider.complete(ask("second"), Deltas())
    )

    assert sorted(r.text for r in results) == ["one", "two"]
    assert rig.fake.peak_concurrency == 2
    assert overlapping(rig.fake.requests)


async def test_a_responder_decides_from_the_request(rig: Rig) -> None:
    def decide(request: LLMRequest) -> Reply:
        if request.tool_results:
            return Reply(text=[f"{r['id']} -> {r['content']}" for r in request.tool_results])
        if "reviewer" in request.system:
            return Reply(calls=[Call("reply", {"body": f"re: {request.last_user_text}"})])
        return Reply(text=[f"echo: {request.last_user_text}"])

    rig.fake.responder = decide
    provider = rig.provider()
    reviewer = Params(model="model-a", system_prompt="You are the reviewer.")

    plain = await provider.complete(ask("ping"), Deltas())
    review = await provider.complete(ask("look at #4", params=reviewer, tools=TOOLS), Deltas())

    assert plain.text == "echo: ping"
    assert [dict(c.arguments) for c in review.tool_calls] == [{"body": "re: look at #4"}]
    call = review.tool_calls[0]
    after = (
        Message("user", "look at #4"),
        Message("assistant", "", tool_calls=review.tool_calls),
        Message("tool", "posted", tool_call_id=call.id),
    )
    followed = await provider.complete(ask(messages=after, params=reviewer, tools=TOOLS), Deltas())
    assert followed.text == f"{call.id} -> posted"
    both = ["reply", "add_label"]
    assert [r.tool_names for r in rig.fake.requests] == [[], both, both]


async def test_an_unscripted_request_is_a_clear_400(rig: Rig) -> None:
    with pytest.raises(ProviderError, match="nothing scripted for request #1") as caught:
        await rig.provider().complete(ask(), Deltas())
    assert (caught.value.status, caught.value.retryable) == (400, False)


async def test_the_fake_refuses_a_tool_result_that_answers_no_call(rig: Rig) -> None:
    """The fakes are strict where the APIs are, so a mapping bug shows up as a 400."""
    rig.fake.enqueue(Reply(text=["never"]))
    conversation = (Message("user", "go"), Message("tool", "orphan", tool_call_id="nope"))

    with pytest.raises(ProviderError) as caught:
        await rig.provider().complete(ask(messages=conversation, tools=TOOLS), Deltas())

    assert caught.value.status == 400
    assert "nope" in str(caught.value)
