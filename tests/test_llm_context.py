"""Context windows, compaction, prompt caching and cost, end to end: webhooks in, the
strict fake LLM servers (counting tokens, refusing requests past their window, caching
only what their APIs cache), the fake GitHub, and the transcript."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import Running, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Call, FakeAnthropic, FakeLLM, FakeOpenAI, LLMRequest, Reply
from tests.test_llm_sessions import ANTHROPIC_KEY, OPENAI_KEY, LLMRig
from tests.test_sessions import REPO, eventually, fake_github, github_settings

__all__ = ["fake_github"]

OPERATOR_TOKEN = "operator-token-for-the-cost-test-0123"
WINDOW = 5_000  # tokens: the fakes refuse anything longer

CONFIG = """
providers:
  oa:
    kind: openai
    baseUrl: {openai}
    apiKeyEnv: TL_TEST_OPENAI_KEY
    maxRetries: 0
    timeoutSeconds: 10
    contextWindow: {window}
  an:
    kind: anthropic
    baseUrl: {anthropic}
    apiKeyEnv: TL_TEST_ANTHROPIC_KEY
    maxRetries: 0
    timeoutSeconds: 10
    contextWindow: {window}
    prices:
      claude-test: {{input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75}}
agents:
  chat:
    engine: llm
    provider: {provider}
    model: claude-test
    systemPrompt: "{prompt}"
    active_tools: [get_diff, reply]
{extra}
defaultAgent: chat
sessions:
  keepSessionOpenForComments: true
"""

# Long enough that tools + system prompt pass Anthropic's minimum cacheable length.
PROMPT = "You answer questions about one pull request. " * 100
DIFF = "diff --git a/big.py b/big.py\n" + "".join(f"+line {i} of a long file\n" for i in range(150))


def last_piece(request: LLMRequest) -> tuple[str, str]:
    """What the request ends with: ("text", a comment) or ("result", a tool's output)."""
    last = request.messages[-1]
    if last.get("role") == "tool":
        return "result", str(last.get("content"))
    content = last.get("content")
    if isinstance(content, str):
        return "text", content
    block = content[-1]
    if block.get("type") == "tool_result":
        return "result", str(block.get("content"))
    return "text", str(block.get("text"))


def chatty(request: LLMRequest) -> Reply:
    """Reads the diff for every comment, replies, then ends the turn with an empty answer."""
    kind, text = last_piece(request)
    if text.startswith("Summarize the conversation"):
        return Reply(text=["The user asked about the diff several times; each was answered."])
    if kind == "text":
        return Reply(calls=[Call("get_diff", {})])
    if "diff --git" in text:
        number = re.findall(r"asks question (\d+)", json.dumps(request.messages))[-1]
        return Reply(calls=[Call("reply", {"body": f"answer {number}"})])
    return Reply(text=[])  # an empty end_turn: nothing more to say


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic]]:
    monkeypatch.setenv("TL_TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TL_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    async with (
        FakeOpenAI(api_key=OPENAI_KEY) as openai,
        FakeAnthropic(api_key=ANTHROPIC_KEY) as anthropic,
    ):
        for fake in (openai, anthropic):
            fake.responder = chatty
            fake.context_window = WINDOW
            fake.measure_tokens = True
        yield openai, anthropic


def config_file(
    tmp: Path,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    provider: str,
    *,
    extra: str = "",
    window: int = WINDOW,
) -> str:
    openai, anthropic = fakes
    path = tmp / "threadline.yml"
    path.write_text(
        CONFIG.format(
            openai=openai.base_url,
            anthropic=anthropic.base_url,
            provider=provider,
            prompt=PROMPT,
            extra=extra,
            window=window,
        ),
        encoding="utf-8",
    )
    return str(path)


async def converse(rig: LLMRig, turns: int) -> None:
    await rig.comment(12, "@threadline the user asks question 1")
    await eventually(lambda: "answer 1" in rig.replies(12), "the first answer", 30)
    for number in range(2, turns + 1):
        await rig.comment(12, f"the user asks question {number}")
        answer = f"answer {number}"
        await eventually(lambda: answer in rig.replies(12), answer, 30)  # noqa: B023 (awaited here)


def fake_of(fakes: tuple[FakeOpenAI, FakeAnthropic], provider: str) -> FakeLLM:
    return fakes[0] if provider == "oa" else fakes[1]


@pytest.mark.parametrize("provider", ["oa", "an"])
async def test_a_conversation_past_the_window_completes_with_compaction(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
    provider: str,
) -> None:
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = config_file(tmp_path, fakes, provider)
    fake = fake_of(fakes, provider)
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await converse(rig, 8)
        [session] = rig.sessions()
        events = rig.transcript(session.id)

    assert all(r.status == 200 for r in fake.requests), [r.status for r in fake.requests]
    assert max(r.usage.input_tokens for r in fake.requests if r.usage) <= WINDOW
    compactions = [e.data for e in events if e.kind == "compaction"]
    assert compactions, "the conversation outgrew the window without a compaction"
    assert all(c["tokens_after"] < c["tokens_before"] for c in compactions)
    assert all(c["window"] == WINDOW for c in compactions)
    # Without compaction the 8 turns would need far more than the window.
    assert (
        sum(len(e.data["message"].get("text", "")) for e in events if e.kind == "conversation")
        > 4 * WINDOW
    )


async def test_a_context_length_error_compacts_once_and_asks_again(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    """The agent believes in a window four times the server's: the server's 400 is the
    first it hears of it, and the session carries on."""
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = config_file(tmp_path, fakes, "an", extra="    contextWindow: 20000")
    anthropic = fakes[1]
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await converse(rig, 6)
        [session] = rig.sessions()
        events = rig.transcript(session.id)
        assert session.state != "failed"

    refused = [r for r in anthropic.requests if r.status == 400]
    assert refused, "the server never refused: the test did not reach its window"
    compactions = [e.data for e in events if e.kind == "compaction"]
    assert any(c["forced"] for c in compactions)
    said = [e.data["text"] for e in events if e.kind == "message"]
    assert any("did not fit the model's context window" in text for text in said)


async def test_anthropic_requests_cache_their_prefix_and_the_cost_is_counted(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = config_file(tmp_path, fakes, "an", window=200_000)
    anthropic = fakes[1]
    anthropic.context_window = None
    inspected = with_settings(
        github_settings(settings, fake_github, config), operator_token=OPERATOR_TOKEN
    )
    async with run_app(inspected) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await converse(rig, 3)
        [session] = rig.sessions()

        def counted() -> bool:
            usage = [e for e in rig.transcript(session.id) if e.kind == "usage"]
            return len(usage) == len(anthropic.requests) and rig.sessions()[0].state == "idle"

        await eventually(counted, "the last call counted")
        [session] = rig.sessions()
        events = rig.transcript(session.id)
        page = await rig_page(app, session.id)

    for request in anthropic.requests:
        body = request.body
        assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        last = body["messages"][-1]["content"]
        assert last[-1]["cache_control"] == {"type": "ephemeral"}
    usage = [r.usage for r in anthropic.requests if r.usage]
    assert usage[0].cache_read == 0
    assert usage[0].cache_write > 0
    # Each request reads from the cache at least all that the one before it sent.
    for earlier, later in itertools.pairwise(usage):
        assert later.cache_read >= earlier.input_tokens, usage
    recorded = [e.data for e in events if e.kind == "usage"]
    assert [u["cache_read_tokens"] for u in recorded] == [u.cache_read for u in usage]
    assert [u["cache_write_tokens"] for u in recorded] == [u.cache_write for u in usage]
    # $3 / $15 / $0.30 / $3.75 per million tokens, in micro-dollars, rounded down per call
    expected = sum(
        (
            u.uncached * 3_000_000
            + u.cache_read * 300_000
            + u.cache_write * 3_750_000
            + 7 * 15_000_000
        )
        // 1_000_000
        for u in usage
    )
    assert session.cost_micros == expected > 0
    assert session.cache_read_tokens == sum(u.cache_read for u in usage)
    assert session.tokens_in == sum(u.input_tokens for u in usage)
    assert f"{expected / 1_000_000:.6f}" in page


async def test_openai_requests_keep_their_prefix_byte_stable(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = config_file(tmp_path, fakes, "oa", window=200_000)
    openai = fakes[0]
    openai.context_window = None
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await converse(rig, 3)

    bodies = [r.body for r in openai.requests]
    for earlier, later in itertools.pairwise(bodies):
        assert later["tools"] == earlier["tools"]
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]
    assert all(r.usage and r.usage.cache_read > 0 for r in openai.requests[1:])


async def rig_page(app: Running, session_id: str) -> str:
    """The inspector's page of the session, as the operator sees it."""
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    url = f"{app.url}/inspect/sessions/{session_id}"
    async with app.http.get(url, headers=headers) as response:
        assert response.status == 200
        return await response.text()


async def test_a_cost_budget_weighs_cache_reads_and_closes_the_session(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    extra = "    budget: {maxCostUsd: 0.015}"
    config = config_file(tmp_path, fakes, "an", extra=extra, window=200_000)
    anthropic = fakes[1]
    anthropic.context_window = None
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await rig.comment(12, "@threadline the user asks question 1")
        for number in range(2, 8):
            await eventually(
                lambda: rig.sessions()[0].state in ("idle", "closed"), "the turn ended", 30
            )
            if rig.sessions()[0].state == "closed":
                break
            await rig.comment(12, f"the user asks question {number}")
        await eventually(lambda: rig.sessions()[0].state == "closed", "closed by the budget", 30)
        [session] = rig.sessions()
        await eventually(
            lambda: any("cost budget of US$ 0.015000 spent" in r for r in rig.replies(12)),
            "the notice",
        )
    assert session.close_reason == "budget"
    assert session.cost_micros >= 15_000
    # Cache reads at a tenth of the price: the session got further than at full price.
    usage = [r.usage for r in anthropic.requests if r.usage]
    assert sum(u.cache_read for u in usage) > 0
    assert sum(u.input_tokens for u in usage) * 3 > 15_000 * 1.5


async def test_a_long_tool_output_reaches_the_model_cut_with_a_marker(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> None:
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = config_file(tmp_path, fakes, "oa", extra="    toolOutputLimit: 1000", window=200_000)
    openai = fakes[0]
    async with run_app(github_settings(settings, fake_github, config)) as app:
        rig = LLMRig(app, fake_github, *fakes)
        await converse(rig, 1)
    [result] = next(r for r in openai.requests if r.tool_results).tool_results
    content = str(result["content"])
    assert f"Threadline cut {len(DIFF) - 1000} of {len(DIFF)} characters" in content
    assert content.startswith(DIFF[:750])
    assert content.rstrip().endswith(DIFF.rstrip()[-100:])
