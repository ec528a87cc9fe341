"""The `llm` engine: an agent whose turns are a conversation with a provider's model.

A turn replays the session's conversation so far (`Turn.history`), adds the turn's
inputs as one user message, and then asks the model again and again: each answer's text
streams into the transcript as it comes; each tool call it makes is carried out through
`Tools` and its result goes back to the model, until it answers without calling a tool,
calls `task_completed`, or has been asked `max_steps` times. Calls to
`delegate_to_sub_agent` in one answer run at the same time; the other calls run in the
order the model made them. Every message is kept (`Tools.remember`) so the next turn,
say for a follow-up comment, continues where this one ended.

Before each call the engine knows the request's size: the tokens the provider reported
for the previous call plus an estimate of what was added since. Past `compact_at` of the
model's context window it compacts (bot.agents.context): old tool outputs become stubs
first, then the older turns are summarized by the model into one message; each
compaction is a `compaction` transcript event and is remembered, so later turns replay
the compacted conversation. A provider's context-length error compacts once and asks
again. Tool outputs longer than `tool_output_limit` characters are cut with a marker.

`tool_choice` `any` or `tool` forces a tool call on the first model call of a turn;
the calls after it are `auto`, so the model can still answer in words once it has
used the forced tool. `none` sends no tools at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.agents import context as cx
from bot.agents.base import (
    DELEGATE,
    SYSTEM_PROMPT_EVENT,
    AgentSpec,
    EngineError,
    ToolResult,
    Tools,
    Turn,
    TurnInput,
)
from bot.agents.models import context_window, price_of
from bot.agents.providers import seen
from bot.agents.providers.base import (
    ContextTooLong,
    Message,
    OnText,
    Params,
    Provider,
    ProviderConfig,
    ProviderError,
    Request,
    Response,
    StreamInterrupted,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from bot.agents.tools import tool_specs

log = logging.getLogger(__name__)

LLM_ENGINE = "llm"
OPTIONS_KEY = "llm"  # AgentSpec.options[OPTIONS_KEY] holds an LLMOptions
STREAM_RETRIES = 2  # a stream cut mid-way is asked again this many times

INPUT_HEADINGS = {
    "task": "Task from @{author}:",
    "comment": "@{author} commented in the thread:",
    "operator": "Message from the operator ({author}):",
    "message": "Message from session {author}:",
    "spawn": "Your spawned task {author} finished:",
}
CONTEXT_LINES = (
    ("repository", "Repository: {}"),
    ("thread", "Thread: {}"),
    ("url", "Link: {}"),
    ("session", "Session: {}"),
    ("parent", "Delegated by session: {}"),
)
SUB_AGENTS_HEADING = "Sub-agents you can delegate to with delegate_to_sub_agent:"
STEPS_EXHAUSTED = "stopped after {steps} model calls in turn {turn} (maxSteps)"
STREAM_CUT = "the model's stream was cut ({error}); asking again ({attempt} of {most})"
PROVIDER_FAILED = "provider {provider} failed: {error}"
TOO_LONG = (
    "the request did not fit the model's context window ({error}); compacting and asking again"
)
COMPACT_AT = 0.75  # share of the context window past which the conversation is compacted
TOOL_OUTPUT_LIMIT = 20_000  # characters of one tool output the model gets
KEEP_TOOL_OUTPUTS = 2  # the newest tool outputs compaction leaves whole
# A compaction aims well below `compact_at`, so the next one is turns away: each one
# rewrites the prefix the prompt cache holds.
COMPACT_TO = 0.5  # of the window: past this after stubbing, the older turns are summarized
TAIL_SHARE = 0.25  # of the window: the newest messages a summary leaves as they were
SUMMARY_SHARE = 0.5  # of the window: most of the text a summary is made from
SUMMARY_MAX_TOKENS = 1024
SUMMARIZE = (
    "Summarize the conversation below for your own later use: the task, what was "
    "decided and done (files, tools and their important results), what is still open. "
    "Be brief and concrete; write only the summary.\n\n"
)
NO_SUMMARY = "({count} earlier messages were left out; no summary could be made: {error})"


@dataclass(frozen=True)
class LLMOptions:
    """What `engine: llm` adds to an agent (read from threadline.yml by bot.agents.config)."""

    provider: ProviderConfig  # from `providers:`, the API key read from its variable
    params: Params  # the agent's runtimeParams (and `model`): session level
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    max_steps: int = 20  # model calls per turn
    sub_agents: Mapping[str, str] | None = None  # a coordinator's agent ids -> descriptions
    context_window: int | None = None  # tokens; None: the provider's, else the model's
    compact_at: float = COMPACT_AT
    tool_output_limit: int = TOOL_OUTPUT_LIMIT  # characters


def llm_options(spec: AgentSpec) -> LLMOptions:
    options = spec.options.get(OPTIONS_KEY)
    if not isinstance(options, LLMOptions):
        raise TypeError(f"agent {spec.id!r}: options[{OPTIONS_KEY!r}] must hold LLMOptions")
    return options


def params_from(data: Mapping[str, Any]) -> Params:
    """Prompt-level runtimeParams (camelCase, as the seed material spells them) as Params;
    unknown or ill-typed fields are left out."""

    def number(key: str) -> float | None:
        value = data.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None  # type: ignore[arg-type]

    def whole(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    stops = data.get("stopSequences")
    specific = data.get("providerSpecific")
    model = data.get("model")
    system = data.get("systemPrompt")
    return Params(
        model=model if isinstance(model, str) and model else None,
        temperature=number("temperature"),
        max_tokens=whole("maxTokens"),
        top_p=number("topP"),
        top_k=whole("topK"),
        stop_sequences=tuple(str(s) for s in stops) if isinstance(stops, list) else None,
        system_prompt=system if isinstance(system, str) else None,
        provider_specific=dict(specific) if isinstance(specific, Mapping) else {},
    )


def system_prompt(spec: AgentSpec, params: Params, options: LLMOptions, turn: Turn) -> str:
    """The agent's prompt, where the session lives, the thread's context (the same in
    every turn, so the prompt cache keeps it) and a coordinator's sub-agents."""
    parts = [params.system_prompt if params.system_prompt is not None else spec.system_prompt]
    context = [
        line.format(turn.context[key]) for key, line in CONTEXT_LINES if turn.context.get(key)
    ]
    if context:
        parts.append("\n".join(context))
    if turn.thread_context:
        parts.append(turn.thread_context)
    if options.sub_agents:
        listed = [
            f"- {agent}: {about or '(no description)'}"
            for agent, about in options.sub_agents.items()
        ]
        parts.append("\n".join([SUB_AGENTS_HEADING, *listed]))
    return "\n\n".join(part for part in parts if part)


def user_message(inputs: Sequence[TurnInput]) -> Message:
    blocks = [
        INPUT_HEADINGS.get(item.kind, "{author}:").format(author=item.author) + "\n" + item.body
        for item in inputs
    ]
    return Message("user", "\n\n".join(blocks))


class LLMEngine:
    """Runs one LLM agent's turns against its provider (one engine per agent)."""

    def __init__(self, spec: AgentSpec, provider: Provider) -> None:
        self.spec = spec
        self.options = llm_options(spec)
        self.provider = provider
        # The size of a request the provider refused as too long: its window is smaller
        # than we were told, so compaction aims below this from then on.
        self._refused_at: int | None = None

    async def run_turn(self, turn: Turn, tools: Tools) -> None:
        params = Params.merge(
            self.provider.config.defaults, self.options.params, params_from(turn.params)
        )
        if not params.model:
            raise EngineError(f"agent {self.spec.id}: no model (set model or runtimeParams.model)")
        system = system_prompt(self.spec, params, self.options, turn)
        params = Params.merge(params, Params(system_prompt=system))
        if turn.number == 1:  # the inspector shows the prompt as it was sent
            await tools.note(SYSTEM_PROMPT_EVENT, {"engine": LLM_ENGINE, "text": system})
        messages = cx.replay(turn.history)
        if turn.inputs:
            asked = user_message(turn.inputs)
            messages.append(asked)
            await tools.remember(asked.to_dict())
        # The turn's agent may carry a narrower tool_choice than the configured one (a
        # spawn's or a schedule's `tool_choice`).
        own = turn.agent.options.get(OPTIONS_KEY)
        choice = own.tool_choice if isinstance(own, LLMOptions) else self.options.tool_choice
        known: tuple[int, int] | None = None  # (tokens reported, messages they covered)
        for step in range(self.options.max_steps):
            specs = tool_specs(turn.agent.tools, choice)
            if choice.mode != "none":
                specs = (*specs, *turn.external_tools)
            size = self._size(system, specs, messages, known)
            if size > self.options.compact_at * self._window(params):
                messages = await self._compact(params, system, specs, messages, size, tools)
                known = None
            try:
                response = await self._ask(Request(params, tuple(messages), specs, choice), tools)
            except ContextTooLong as exc:
                await tools.say(TOO_LONG.format(error=exc))
                self._refused_at = min(size, self._refused_at or size)
                messages = await self._compact(
                    params, system, specs, messages, size, tools, forced=True
                )
                known = None
                try:
                    response = await self._ask(
                        Request(params, tuple(messages), specs, choice), tools
                    )
                except ContextTooLong as again:  # once only: the session fails with it
                    raise EngineError(
                        PROVIDER_FAILED.format(provider=self.options.provider.id, error=again)
                    ) from again
            await self._count(response.usage, response.model or params.model or "", tools)
            answer = Message("assistant", response.text, response.tool_calls)
            messages.append(answer)
            await tools.remember(answer.to_dict())
            known = (response.usage.input_tokens + response.usage.output_tokens, len(messages))
            if response.text.strip():
                await tools.say(response.text)
            if not response.tool_calls:
                return
            for result in await self._run_calls(response.tool_calls, tools):
                messages.append(result)
                await tools.remember(result.to_dict())
            if tools.completed:
                return
            if step == 0 and choice.mode in ("any", "tool"):
                choice = ToolChoice("auto")
        await tools.say(STEPS_EXHAUSTED.format(steps=self.options.max_steps, turn=turn.number))

    def _window(self, params: Params) -> int:
        """The model's context window (the agent's, the provider's or the model family's),
        or less when the provider refused a request smaller than that."""
        window = context_window(
            params.model or "", self.options.context_window, self.provider.config.context_window
        )
        return min(window, self._refused_at or window)

    @staticmethod
    def _size(
        system: str,
        specs: Sequence[ToolSpec],
        messages: Sequence[Message],
        known: tuple[int, int] | None,
    ) -> int:
        """The next request's size: what the provider reported for the last one plus an
        estimate of the messages added since (all of it estimated when nothing is known)."""
        if known is None or known[0] <= 0:
            return cx.request_tokens(system, specs, messages)
        reported, covered = known
        return reported + sum(cx.tokens_of(m) for m in messages[covered:])

    async def _count(self, usage: Usage, model: str, tools: Tools) -> None:
        price = price_of(model, self.provider.config.prices)
        await tools.usage(
            usage.input_tokens,
            usage.output_tokens,
            model,
            cache_read=usage.cache_read,
            cache_write=usage.cache_write,
            cost_micros=price.cost(usage) if price else 0,
        )

    async def _compact(
        self,
        params: Params,
        system: str,
        specs: Sequence[ToolSpec],
        messages: list[Message],
        before: int,
        tools: Tools,
        *,
        forced: bool = False,
    ) -> list[Message]:
        """Old tool outputs as stubs; if that is not enough (or the provider refused the
        request as too long), the older turns summarized by the model into one message.
        Recorded as a `compaction` event and remembered."""
        window = self._window(params)
        limit = min(COMPACT_TO, self.options.compact_at) * window
        compacted, stubbed = cx.stub_tool_outputs(messages, KEEP_TOOL_OUTPUTS)
        after = cx.request_tokens(system, specs, compacted)
        summarized = 0
        if forced or after > limit:
            cut = cx.choose_cut(compacted, int(TAIL_SHARE * window))
            if cut is not None:
                summary = await self._summary(params, compacted[:cut], window, tools)
                compacted = cx.summarized(compacted, cut, summary)
                summarized = cut
                after = cx.request_tokens(system, specs, compacted)
        data = {
            "tokens_before": before,
            "tokens_after": after,
            "window": window,
            "stubbed_outputs": stubbed,
            "summarized_messages": summarized,
            "forced": forced,
        }
        await tools.note("compaction", data)
        await tools.remember(cx.compaction_entry(compacted, data))
        return compacted

    async def _summary(
        self, params: Params, older: Sequence[Message], window: int, tools: Tools
    ) -> str:
        """The model's summary of `older` (made from their text, so no pairing rule can
        be broken by it); a note of what was left out if the call fails."""
        text = cx.cap_output(cx.render(older), int(SUMMARY_SHARE * window) * cx.CHARS_PER_TOKEN)
        request = Request(
            Params.merge(params, Params(max_tokens=SUMMARY_MAX_TOKENS)),
            (Message("user", SUMMARIZE + text),),
        )

        async def quiet(_: str) -> None:
            """The summary is not the agent speaking: nothing streams to the transcript."""

        try:
            response = await self._complete(request, quiet)
        except ProviderError as exc:
            return NO_SUMMARY.format(count=len(older), error=exc)
        await self._count(response.usage, response.model or params.model or "", tools)
        return response.text.strip() or NO_SUMMARY.format(count=len(older), error="empty answer")

    async def _complete(self, request: Request, on_text: OnText) -> Response:
        """One call to the provider; its outcome is what health reports of it."""
        try:
            response = await self.provider.complete(request, on_text)
        except ProviderError as exc:
            seen.refused(self.provider.config.id, exc)
            raise
        seen.answered(self.provider.config.id)
        return response

    async def _ask(self, request: Request, tools: Tools) -> Response:
        for attempt in range(STREAM_RETRIES + 1):
            try:
                return await self._complete(request, tools.stream)
            except StreamInterrupted as exc:
                if attempt == STREAM_RETRIES:
                    raise EngineError(
                        PROVIDER_FAILED.format(provider=self.options.provider.id, error=exc)
                    ) from exc
                await tools.say(
                    STREAM_CUT.format(error=exc, attempt=attempt + 1, most=STREAM_RETRIES)
                )
            except ContextTooLong:
                raise  # the caller compacts and asks again
            except ProviderError as exc:
                raise EngineError(
                    PROVIDER_FAILED.format(provider=self.options.provider.id, error=exc)
                ) from exc
        raise AssertionError("unreachable")

    async def _run_calls(self, calls: Sequence[ToolCall], tools: Tools) -> list[Message]:
        """Delegations at once, the rest in order; results in the order of the calls."""
        delegations = {
            index: asyncio.ensure_future(self._call(call, tools))
            for index, call in enumerate(calls)
            if call.name == DELEGATE
        }
        results: list[ToolResult] = []
        try:
            for index, call in enumerate(calls):
                if index not in delegations:
                    results.append(await self._call(call, tools))
                else:
                    results.append(ToolResult(False))  # filled in below
            for index, task in delegations.items():
                results[index] = await task
        finally:
            for task in delegations.values():
                task.cancel()
        limit = self.options.tool_output_limit
        return [
            Message(
                "tool",
                cx.cap_output(result.content, limit),
                tool_call_id=call.id,
                is_error=not result.ok,
            )
            for call, result in zip(calls, results, strict=True)
        ]

    async def _call(self, call: ToolCall, tools: Tools) -> ToolResult:
        if call.raw_arguments and not call.arguments:
            try:
                json.loads(call.raw_arguments)
            except ValueError:
                return ToolResult(False, f"the arguments of {call.name} are not valid JSON")
        return await tools.call(call.name, call.arguments, call_id=call.id)

    async def close(self) -> None:
        await self.provider.close()
