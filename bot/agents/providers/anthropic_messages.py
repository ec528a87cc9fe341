"""Messages through the official `anthropic` SDK, streamed.

Wire format: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-streaming
"""

from __future__ import annotations

import json
from typing import Any, cast

import anthropic
import httpx2
from anthropic.types import MessageParam, ToolChoiceParam, ToolUnionParam

from bot.agents.providers.assemble import (
    PartialCall,
    broke_off,
    effective_params,
    sdk_failure,
)
from bot.agents.providers.base import (
    Message,
    OnText,
    ProviderConfig,
    ProviderError,
    Request,
    Response,
    StreamInterrupted,
    ToolChoice,
    ToolSpec,
    Usage,
)

# The API requires max_tokens on every request; this is what we ask for when no layer
# of runtimeParams sets it.
DEFAULT_MAX_TOKENS = 4096
# What a prompt cache breakpoint says: cache the request up to and including this block
# (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching). The API takes
# at most four per request; we use three: the tools, the system prompt and the last
# message, which the API may extend backwards to the longest prefix it already holds.
EPHEMERAL = {"type": "ephemeral"}
TOO_LONG = "prompt is too long"  # the API's words for a request past the context window


class AnthropicMessagesProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._client = anthropic.AsyncAnthropic(
            api_key=config.api_key,
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            max_retries=config.max_retries,
        )

    async def complete(self, request: Request, on_text: OnText) -> Response:
        params = effective_params(request, self.config)
        # The installed SDK takes no sampling arguments of its own (newer models set
        # them themselves), so they go into the body as the API documents them.
        sampling = {
            name: value
            for name, value in (
                ("temperature", params.temperature),
                ("top_p", params.top_p),
                ("top_k", params.top_k),
            )
            if value is not None
        }
        extra_body = {**sampling, **params.provider_specific}
        tools, tool_choice = tool_arguments(request)
        messages = messages_of(request.messages)
        system: Any = params.system_prompt or anthropic.omit
        if self.config.caching:
            tools, system = mark_cache(tools, system, messages)
        try:
            stream = await self._client.messages.create(
                model=cast(str, params.model),
                max_tokens=params.max_tokens or DEFAULT_MAX_TOKENS,
                messages=messages,
                stream=True,
                system=system,
                stop_sequences=list(params.stop_sequences or ()) or anthropic.omit,
                tools=tools,
                tool_choice=tool_choice,
                extra_body=extra_body or None,
            )
        except anthropic.APIError as exc:
            # `from None`: the SDK's own message may quote the key; a chained traceback
            # would print it to the log.
            raise self._failure(exc) from None

        text: list[str] = []
        calls: dict[int, PartialCall] = {}
        start_inputs: dict[int, str] = {}  # input a server sent whole in content_block_start
        stop_reason: str | None = None
        finished = False
        input_tokens = output_tokens = cache_read = cache_write = 0
        model = ""
        try:
            async with stream:
                async for event in stream:
                    if event.type == "message_start":
                        model = event.message.model
                        usage = event.message.usage
                        input_tokens = usage.input_tokens
                        output_tokens = usage.output_tokens
                        cache_read = usage.cache_read_input_tokens or 0
                        cache_write = usage.cache_creation_input_tokens or 0
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls[event.index] = PartialCall(block.id, block.name)
                            if block.input:
                                start_inputs[event.index] = json.dumps(block.input)
                        elif block.type == "text" and block.text:
                            text.append(block.text)
                            await on_text(block.text)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            text.append(delta.text)
                            await on_text(delta.text)
                        elif delta.type == "input_json_delta" and event.index in calls:
                            calls[event.index].pieces.append(delta.partial_json)
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
                        if event.usage.input_tokens is not None:
                            input_tokens = event.usage.input_tokens
                    elif event.type == "message_stop":
                        finished = True
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise StreamInterrupted(self._interrupted(exc)) from None
        if not finished:
            raise StreamInterrupted(
                f"provider {self.config.id!r}: the stream ended before message_stop"
            )
        for index, whole in start_inputs.items():
            if not calls[index].pieces:
                calls[index].pieces.append(whole)
        return Response(
            text="".join(text),
            tool_calls=tuple(calls[i].finish(f"toolu_{i}") for i in sorted(calls)),
            # The API's input_tokens counts only what came after the last cache hit
            # or write; ours counts the whole request.
            usage=Usage(
                input_tokens + cache_read + cache_write,
                output_tokens,
                cache_read=cache_read,
                cache_write=cache_write,
            ),
            stop_reason=stop_reason or "",
            model=model,
        )

    async def close(self) -> None:
        await self._client.close()

    def _failure(self, exc: anthropic.APIError) -> ProviderError:
        status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
        detail = None if status is None else _body_message(exc.body)
        return sdk_failure(
            self.config,
            exc.message,
            status=status,
            detail=detail,
            connection=isinstance(exc, anthropic.APIConnectionError),
            base_url=self._client.base_url,
            too_long=status == 400 and TOO_LONG in (detail or "").lower(),
        )

    def _interrupted(self, exc: Exception) -> str:
        if isinstance(exc, anthropic.APIError):
            return broke_off(self.config, _body_message(exc.body) or exc.message)
        return broke_off(self.config, f"{type(exc).__name__}: {exc}")


def _body_message(body: object) -> str:
    """`error.message` of an error body: {"type": "error", "error": {"type", "message"}}."""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
    return ""


def messages_of(messages: tuple[Message, ...]) -> list[MessageParam]:
    """Our messages as Messages API turns.

    Tool results go back as `tool_result` blocks of a user turn, all results of one
    assistant turn in one user turn (the API wants every `tool_use` answered in the
    turn right after it); a user message that follows them joins that turn as text.
    An assistant message with neither text nor calls is left out: the API refuses
    empty content and it carries nothing. Roles alternate: a user message that would
    follow another user turn (say after an empty answer was left out) joins it.
    """
    out: list[dict[str, Any]] = []
    results_open = False  # the last turn is a user turn of tool results
    for message in messages:
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text,
                "is_error": message.is_error,
            }
            if results_open:
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
                results_open = True
        elif message.role == "user":
            if not message.text:
                continue  # nothing to say, and the API refuses empty content
            if out and out[-1]["role"] == "user":
                _blocks(out[-1]).extend(_text_blocks(message.text))
                results_open = False
            else:
                out.append({"role": "user", "content": message.text})
        else:
            blocks: list[dict[str, Any]] = []
            if message.text:
                blocks.append({"type": "text", "text": message.text})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                for c in message.tool_calls
            ]
            if blocks and out and out[-1]["role"] == "assistant":
                _blocks(out[-1]).extend(blocks)
            elif blocks:
                out.append({"role": "assistant", "content": blocks})
                results_open = False
    return cast(list[MessageParam], out)


def _text_blocks(text: str) -> list[dict[str, Any]]:
    """Text as content blocks: none for empty text (the API refuses empty text blocks)."""
    return [{"type": "text", "text": text}] if text else []


def _blocks(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A turn's content as a list of blocks (a plain string becomes one text block)."""
    content = turn["content"]
    if isinstance(content, str):
        turn["content"] = content = _text_blocks(content)
    return cast(list[dict[str, Any]], content)


def mark_cache(tools: Any, system: Any, messages: list[MessageParam]) -> tuple[Any, Any]:
    """Cache breakpoints on the stable prefix: the last tool, the system prompt (as one
    text block) and the last block of the last message; `messages` is marked in place.
    Three breakpoints, within the API's four."""
    if isinstance(tools, list) and tools:
        tools = [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]
    if isinstance(system, str):
        system = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    if messages:
        last = cast(dict[str, Any], messages[-1])
        blocks = _blocks(last)
        if blocks:
            blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    return tools, system


def tool_arguments(request: Request) -> tuple[Any, Any]:
    """(`tools`, `tool_choice`) for the SDK.

    "none" sends no tools, except when the conversation already holds tool calls: the
    API refuses `tool_use` / `tool_result` blocks in a request without tools, so there
    the tools go along with `{"type": "none"}`, which forbids calling them.
    """
    if not request.tools:
        return anthropic.omit, anthropic.omit
    choice: ToolChoice = request.tool_choice
    if choice.mode == "none" and not _has_tool_blocks(request.messages):
        return anthropic.omit, anthropic.omit
    specs = [_tool(tool) for tool in request.tools]
    mapped: ToolChoiceParam
    if choice.mode == "none":
        mapped = {"type": "none"}
    elif choice.mode == "any":
        mapped = {"type": "any"}
    elif choice.mode == "tool":
        if not choice.name:
            raise ProviderError('tool_choice "tool" needs the name of a tool')
        mapped = {"type": "tool", "name": choice.name}
    else:
        mapped = {"type": "auto"}
    return specs, mapped


def _tool(tool: ToolSpec) -> ToolUnionParam:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": cast(Any, dict(tool.parameters)),
    }


def _has_tool_blocks(messages: tuple[Message, ...]) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in messages)
