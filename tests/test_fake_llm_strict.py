"""The fake LLM servers are as strict about caching and size as the APIs they stand
for, so a request the real API would refuse or not cache shows up in tests."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fakes.llm import BadRequest, Counted, FakeAnthropic, FakeOpenAI, LLMRequest

EPHEMERAL = {"type": "ephemeral"}
LONG = "word " * 1200  # about 1,500 tokens at 4 characters a token


def request(body: dict[str, Any]) -> LLMRequest:
    return LLMRequest("POST", "/v1/messages", {}, {"model": "claude-x", **body}, time.monotonic())


def marked(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": EPHEMERAL}


def count(fake: FakeAnthropic, body: dict[str, Any]) -> Counted:
    return fake._count(request(body))


def test_a_cache_hit_needs_a_byte_identical_prefix_up_to_a_breakpoint() -> None:
    fake = FakeAnthropic()
    first = {"system": [marked(LONG)], "messages": [{"role": "user", "content": "a"}]}
    written = count(fake, first)
    assert (written.cache_read, written.cache_write) == (0, written.cache_write)
    assert written.cache_write > 1024
    again = count(fake, first)
    assert again.cache_read == written.cache_write
    changed = {**first, "system": [marked(LONG + "!")]}
    assert count(fake, changed).cache_read == 0
    unmarked = {**first, "system": [{"type": "text", "text": LONG}]}
    assert count(fake, unmarked) == Counted(written.input_tokens), "no breakpoint, no cache"


def test_nothing_below_the_minimum_cacheable_length_is_cached() -> None:
    fake = FakeAnthropic()
    short = {"system": [marked("short")], "messages": [{"role": "user", "content": "a"}]}
    assert count(fake, short).cache_write == 0
    assert count(fake, short).cache_read == 0
    haiku = {**short, "system": [marked("w " * 3000)]}  # ~1,500 tokens: < Haiku's 2,048
    assert (
        fake._count(
            LLMRequest("POST", "/v1/messages", {}, {"model": "claude-haiku-4", **haiku}, 0.0)
        ).cache_write
        == 0
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"system": [marked(f"s{i}") for i in range(5)]},
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        ({"system": [marked("")]}, "cache_control cannot be set for empty text blocks"),
        (
            {"messages": [{"role": "user", "content": "a", "cache_control": EPHEMERAL}]},
            "messages.0.cache_control: Extra inputs are not permitted",
        ),
        (
            {"system": [{"type": "text", "text": "s", "cache_control": {"type": "forever"}}]},
            "system.0.cache_control: expected",
        ),
    ],
)
def test_misplaced_cache_control_is_a_400(body: dict[str, Any], message: str) -> None:
    body = {"messages": [{"role": "user", "content": "a"}], **body}
    with pytest.raises(BadRequest, match=message):
        count(FakeAnthropic(), body)


def test_past_the_window_is_the_api_s_own_400() -> None:
    anthropic, openai = FakeAnthropic(), FakeOpenAI()
    anthropic.context_window = openai.context_window = 100
    with pytest.raises(BadRequest, match=r"prompt is too long: \d+ tokens > 100 maximum"):
        count(anthropic, {"messages": [{"role": "user", "content": LONG}]})
    body = {"model": "m", "messages": [{"role": "user", "content": LONG}]}
    with pytest.raises(BadRequest) as caught:
        openai._count(LLMRequest("POST", "/v1/chat/completions", {}, body, 0.0))
    assert caught.value.code == "context_length_exceeded"


def test_openai_caches_a_seen_prefix_from_1024_tokens_in_steps_of_128() -> None:
    fake = FakeOpenAI()
    first = [{"role": "system", "content": LONG}, {"role": "user", "content": "a"}]
    body = {"model": "m", "messages": first}
    made = fake._count(LLMRequest("POST", "/", {}, body, 0.0))
    assert made.cache_read == 0
    later = {"model": "m", "messages": [*first, {"role": "user", "content": "b"}]}
    hit = fake._count(LLMRequest("POST", "/", {}, later, 0.0)).cache_read
    assert hit >= 1024
    assert (hit - 1024) % 128 == 0
    assert hit <= made.input_tokens
    other = {"model": "m", "messages": [{"role": "system", "content": "x"}, *first[1:]]}
    assert fake._count(LLMRequest("POST", "/", {}, other, 0.0)).cache_read == 0


def test_anthropic_roles_must_alternate() -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(BadRequest, match="roles must alternate"):
        FakeAnthropic()._validate_messages(messages)
