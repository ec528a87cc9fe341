"""Compaction keeps every provider's ordering rules: property tests over random
conversations, each compacted and then checked by the strict fake servers' own
validators (Anthropic: alternating roles, every tool_use answered in the next turn;
OpenAI: tool messages right after the assistant message with those call ids), and the
Anthropic cache breakpoints checked by the fake's cache rules."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.agents import context as cx
from bot.agents.providers import anthropic_messages as am
from bot.agents.providers import openai_chat as oc
from bot.agents.providers.base import Message, ToolCall, ToolSpec
from tests.fakes.llm import FakeAnthropic, FakeOpenAI, LLMRequest

TOOLS = (ToolSpec("look", "Look something up.", {"type": "object"}),)
words = st.text(alphabet="abcdefghij ", min_size=0, max_size=300)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Exchanges as the engine keeps them: a user message, then steps of an assistant
    message (text and/or calls, possibly empty) each followed by the results of its
    calls; ending the way a request ends (a user message or tool results)."""
    out: list[Message] = []
    ids = iter(range(10_000))
    for _ in range(draw(st.integers(1, 6))):
        out.append(Message("user", draw(words) or "hi"))
        for _ in range(draw(st.integers(0, 3))):
            calls = tuple(
                ToolCall(f"c{next(ids)}", "look", {"q": draw(words)})
                for _ in range(draw(st.integers(0, 3)))
            )
            out.append(Message("assistant", draw(words), calls))
            out += [
                Message("tool", draw(words), tool_call_id=c.id, is_error=draw(st.booleans()))
                for c in calls
            ]
    if out[-1].role == "assistant":
        out.append(Message("user", draw(words) or "and?"))
    return out


def strict_check(messages: list[Message]) -> None:
    """Both fakes accept the messages as their APIs would (BadRequest otherwise)."""
    anthropic, openai = FakeAnthropic(), FakeOpenAI()
    wire = am.messages_of(tuple(messages))
    tools, system = am.mark_cache([am._tool(t) for t in TOOLS], "system prompt", wire)
    body: dict[str, Any] = {"model": "claude-x", "messages": wire, "tools": tools}
    body["system"] = system
    anthropic._validate_messages(list(body["messages"]))
    anthropic._count(LLMRequest("POST", "/v1/messages", {}, body, time.monotonic()))
    openai._validate_messages(list(oc.messages_of(tuple(messages), "system prompt")))


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(0, 4), st.integers(0, 2_000), words)
def test_compacted_conversations_keep_the_ordering_rules(
    messages: list[Message], keep: int, tail: int, summary: str
) -> None:
    strict_check(messages)  # the generator itself makes valid conversations
    stubbed, _ = cx.stub_tool_outputs(messages, keep)
    strict_check(stubbed)
    cut = cx.choose_cut(stubbed, tail)
    if cut is None:
        return
    compacted = cx.summarized(stubbed, cut, summary or "nothing yet")
    strict_check(compacted)
    assert compacted[0].role == "user"
    newest = stubbed[-1]
    if len(compacted) > 1:
        assert compacted[-1] == newest, "the newest message is always kept"
    else:  # the summary joined it
        assert compacted[0].text.endswith(newest.text)
    # Every call kept has its result kept, and every result its call.
    calls = {c.id for m in compacted for c in m.tool_calls}
    results = {m.tool_call_id for m in compacted if m.role == "tool"}
    assert calls == results
    # A replayed compaction entry gives back the compacted conversation.
    entry = cx.compaction_entry(compacted, {"tokens_before": 1})
    later = Message("user", "later")
    assert cx.replay([*[m.to_dict() for m in messages], entry, later.to_dict()]) == [
        *compacted,
        later,
    ]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=5_000), st.integers(10, 3_000))
def test_capped_tool_outputs_say_what_was_cut(text: str, limit: int) -> None:
    capped = cx.cap_output(text, limit)
    if len(text) <= limit:
        assert capped == text
        return
    assert f"cut {len(text) - limit} of {len(text)} characters" in capped
    assert capped.startswith(text[: limit - limit // 4])
    assert len(capped) < limit + 200


def test_an_empty_end_turn_answer_does_not_make_two_user_turns() -> None:
    """An assistant answer with no text and no calls is left out of the Anthropic
    request; the comment after it joins the user turn before it."""
    messages = (
        Message("user", "first"),
        Message("assistant", "", (ToolCall("c1", "look", {}),)),
        Message("tool", "found", tool_call_id="c1"),
        Message("assistant", ""),
        Message("user", "second"),
    )
    wire = am.messages_of(messages)
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert wire[-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "found", "is_error": False},
        {"type": "text", "text": "second"},
    ]
    FakeAnthropic()._validate_messages(list(wire))
