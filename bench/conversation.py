"""A scripted 10-turn conversation with tool calls against the strict fake LLM servers:
input tokens per turn, the share read from the prompt cache, compactions and cost, for
both providers, each beside the same run with caching and compaction off.

The engine under test is Threadline's own (`bot.agents.llm.LLMEngine`, its providers,
their SDKs, real HTTP on loopback); the fakes count a quarter of the characters of a
request as its tokens, cache as their APIs do (tests/fakes/llm.py) and refuse a
request past their window. Each turn a user asks about another file; the model reads
it (a tool call with a ~3,000-character result) and answers.

Targets (exit code 1 when one is missed):
- from the third turn on, at least 80% of each Anthropic request's input is a cache read,
  but for the first request after a compaction: a compaction rewrites the prefix it
  shortens, so that one request writes the cache afresh (shown, not counted as missed);
- no request over the window;
- the 10 turns' billable input (cache reads at 10% of the input price, Anthropic's cache
  writes at 125%) at most 40% of the baseline run's.

    .venv/bin/python bench/conversation.py [--turns 10] [--window 12000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # tests/ is not installed; it sits beside bench/
    sys.path.insert(0, str(HERE.parent))

from bot.agents.base import AgentSpec, ToolResult, Turn, TurnInput  # noqa: E402
from bot.agents.llm import OPTIONS_KEY, LLMEngine, LLMOptions  # noqa: E402
from bot.agents.providers import build_provider  # noqa: E402
from bot.agents.providers.base import ANTHROPIC, OPENAI, Params  # noqa: E402
from tests.fakes.llm import Call, FakeAnthropic, FakeLLM, FakeOpenAI, LLMRequest, Reply  # noqa: E402

MODELS = {ANTHROPIC: "claude-sonnet-4-5", OPENAI: "gpt-4.1"}
TOOLS = ("read_file", "reply", "update_status", "task_completed")
SYSTEM = (
    "You are a careful reviewer of one repository. Read the files you are asked about "
    "with read_file before you answer, quote the lines you mean, and keep answers short. "
) * 40
READ_SHARE_TARGET = 0.8
BILLABLE_TARGET = 0.4


def source(number: int) -> str:
    """A file of about 3,000 characters, different per turn."""
    return "".join(
        f"def handler_{number}_{i}(event, context):\n    return process(event, {i})\n\n"
        for i in range(48)
    )


def scripted(request: LLMRequest) -> Reply:
    """Read the file the user asked about, then answer; summarize when asked to."""
    last = request.messages[-1]
    content = last.get("content")
    if last.get("role") == "tool":
        piece, text = "result", str(content)
    elif isinstance(content, str):
        piece, text = "text", content
    else:
        block = content[-1]
        piece = "result" if block.get("type") == "tool_result" else "text"
        text = str(block.get("content") if piece == "result" else block.get("text"))
    if text.startswith("Summarize the conversation"):
        return Reply(text=["The user asked about several files; each was read and explained."])
    asked = re.findall(r"file number (\d+)", json.dumps(request.messages))[-1]
    if piece == "text":
        return Reply(calls=[Call("read_file", {"path": f"src/mod{asked}.py"})], output_tokens=30)
    answer = f"File {asked} defines 48 handlers; each passes its event on with its index. " * 3
    return Reply(text=[answer], output_tokens=90)


@dataclass
class BenchTools:
    """The engine's `Tools`, in memory: what a session would keep and count."""

    turn: int = 0
    remembered: list[Mapping[str, Any]] = field(default_factory=list)
    notes: list[tuple[int, str, Mapping[str, Any]]] = field(default_factory=list)
    cost_micros: int = 0
    requests: list[LLMRequest] = field(default_factory=list)  # the fake's, to mark exempt ones
    exempt: set[int] = field(default_factory=set)  # ids of requests right after a compaction

    async def call(
        self, name: str, args: Mapping[str, Any], *, call_id: str | None = None
    ) -> ToolResult:
        if name == "read_file":
            number = int(re.sub(r"\D", "", str(args.get("path"))) or 0)
            return ToolResult(True, source(number))
        return ToolResult(True, "ok")

    async def say(self, text: str) -> None:
        pass

    async def stream(self, text: str) -> None:
        pass

    async def remember(self, message: Mapping[str, Any]) -> None:
        self.remembered.append(dict(message))

    async def usage(
        self,
        input_tokens: int,
        output_tokens: int,
        model: str,
        *,
        cache_read: int = 0,
        cache_write: int = 0,
        cost_micros: int = 0,
    ) -> None:
        self.cost_micros += cost_micros

    async def note(self, kind: str, data: Mapping[str, Any]) -> None:
        self.notes.append((self.turn, kind, dict(data)))
        if kind == "compaction":
            self.exempt.add(len(self.requests))  # the index the next request will get

    @property
    def completed(self) -> bool:
        return False


@dataclass
class Run:
    kind: str
    baseline: bool
    turns: list[list[LLMRequest]]
    compactions: list[tuple[int, Mapping[str, Any]]]
    cost_micros: int
    window: int
    exempt: set[int]  # ids of the requests right after a compaction (and summary requests)

    def billable(self) -> float:
        write = 1.25 if self.kind == ANTHROPIC else 1.0
        return sum(
            r.usage.uncached + 0.1 * r.usage.cache_read + write * r.usage.cache_write
            for turn in self.turns
            for r in turn
            if r.usage
        )


async def converse(kind: str, *, baseline: bool, turns: int, window: int) -> Run:
    fake: FakeLLM = FakeAnthropic() if kind == ANTHROPIC else FakeOpenAI()
    async with fake:
        fake.responder = scripted
        fake.measure_tokens = True
        fake.caching = not baseline
        fake.context_window = None if baseline else window
        config = fake.provider_config(caching=not baseline, context_window=window)
        options = LLMOptions(
            provider=config,
            params=Params(model=MODELS[kind], max_tokens=1024),
            compact_at=100.0 if baseline else 0.75,  # off: never past 100 windows
        )
        spec = AgentSpec(
            "bench", "llm", system_prompt=SYSTEM, tools=TOOLS, options={OPTIONS_KEY: options}
        )
        engine = LLMEngine(spec, build_provider(config))
        tools = BenchTools(requests=fake.requests)
        per_turn: list[list[LLMRequest]] = []
        try:
            for number in range(1, turns + 1):
                tools.turn = number
                before = len(fake.requests)
                ask = TurnInput("comment", "dev", f"What does file number {number} do?")
                turn = Turn(
                    session_id="bench",
                    number=number,
                    agent=spec,
                    task="review",
                    inputs=(ask,),
                    thread_key="bench#1",
                    history=tuple(tools.remembered),
                )
                await engine.run_turn(turn, tools)
                per_turn.append(fake.requests[before:])
        finally:
            await engine.close()
        compactions = [(t, data) for t, kind_, data in tools.notes if kind_ == "compaction"]
        exempt = {id(fake.requests[i]) for i in tools.exempt if i < len(fake.requests)}
        # A summary request (no tools, a prefix of its own) is exempt too.
        exempt |= {id(r) for r in fake.requests if "Summarize the conversation" in r.last_user_text}
        return Run(kind, baseline, per_turn, compactions, tools.cost_micros, window, exempt)


def report(run: Run, base: Run) -> tuple[list[str], dict[str, Any]]:
    label = f"{run.kind}: caching and compaction on"
    print(f"\n{label} (window {run.window} tokens)")
    print(" turn  requests  input tokens  cache read  cache write  read share (min)")
    missed: list[str] = []
    shares: list[float] = []
    compacted = {turn for turn, _ in run.compactions}
    for number, requests in enumerate(run.turns, 1):
        counted = [r.usage for r in requests if r.usage]
        total = sum(u.input_tokens for u in counted)
        read = sum(u.cache_read for u in counted)
        written = sum(u.cache_write for u in counted)
        # The first request after a compaction writes the shortened prefix afresh.
        judged = [r.usage for r in requests if r.usage and id(r) not in run.exempt]
        least = min((u.cache_read / u.input_tokens for u in judged), default=1.0)
        shares.append(least)
        note = "  (compacted: the request after it is exempt)" if number in compacted else ""
        print(
            f" {number:>4}  {len(requests):>8}  {total:>12}  {read:>10}  {written:>11}"
            f"  {read / max(total, 1):>6.1%} ({least:.1%}){note}"
        )
        if run.kind == ANTHROPIC and number >= 3 and least < READ_SHARE_TARGET:
            missed.append(
                f"{run.kind} turn {number}: a request read only {least:.1%} from the cache"
            )
    biggest = max((r.usage.input_tokens for t in run.turns for r in t if r.usage), default=0)
    refused = [r for t in run.turns for r in t if r.status != 200]
    for turn, data in run.compactions:
        print(
            f" compaction in turn {turn}: {data['tokens_before']} -> {data['tokens_after']} tokens"
            f" ({data['stubbed_outputs']} outputs stubbed,"
            f" {data['summarized_messages']} messages summarized)"
        )
    if not run.compactions:
        print(" no compaction")
    if biggest > run.window or refused:
        missed.append(f"{run.kind}: a request of {biggest} tokens, {len(refused)} refused")
    ratio = run.billable() / max(base.billable(), 1)
    base_input = sum(r.usage.input_tokens for t in base.turns for r in t if r.usage)
    print(f" largest request: {biggest} tokens (window {run.window})")
    print(
        f" billable input: {run.billable():.0f} vs baseline {base.billable():.0f}"
        f" ({base_input} input tokens, no cache, no compaction): {ratio:.1%}"
    )
    print(f" cost: US$ {run.cost_micros / 1e6:.6f} vs baseline US$ {base.cost_micros / 1e6:.6f}")
    if ratio > BILLABLE_TARGET:
        missed.append(f"{run.kind}: billable input {ratio:.1%} of the baseline")
    figures = {
        "kind": run.kind,
        "input_per_turn": [sum(r.usage.input_tokens for r in t if r.usage) for t in run.turns],
        "min_read_share_per_turn": shares,
        "compactions": [data for _, data in run.compactions],
        "largest_request": biggest,
        "billable": run.billable(),
        "baseline_billable": base.billable(),
        "billable_ratio": ratio,
        "cost_micros": run.cost_micros,
        "baseline_cost_micros": base.cost_micros,
    }
    return missed, figures


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--window", type=int, default=12_000, help="context window, tokens")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    missed: list[str] = []
    figures = []
    for kind in (ANTHROPIC, OPENAI):
        run = await converse(kind, baseline=False, turns=args.turns, window=args.window)
        base = await converse(kind, baseline=True, turns=args.turns, window=args.window)
        more, data = report(run, base)
        missed += more
        figures.append(data)
    if args.json:
        text = json.dumps(figures, indent=2)
        await asyncio.to_thread(Path(args.json).write_text, text, encoding="utf-8")
    print()
    for line in missed:
        print(f"MISSED: {line}")
    if not missed:
        print("all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
