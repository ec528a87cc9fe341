"""Chat Completions through the official `openai` SDK, streamed: OpenAI itself and every
server that speaks it (vLLM, Ollama, LM Studio, OpenRouter) by `base_url`.

Wire format: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx2
import openai
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolUnionParam,
)

from bot.agents.providers.assemble import (
    PartialCall,
    broke_off,
    effective_params,
    sdk_failure,
)
from bot.agents.providers.base import (
    COMPAT_KINDS,
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

# Local servers (Ollama, LM Studio, vLLM without --api-key) take any key, but the SDK
# refuses to send a request without one.
NO_KEY = "unused"
# The error code of a request longer than the model's context window
# (https://platform.openai.com/docs/guides/error-codes).
CONTEXT_LENGTH_CODE = "context_length_exceeded"


class OpenAIChatProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            api_key=config.api_key or NO_KEY,
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            max_retries=config.max_retries,
        )

    async def complete(self, request: Request, on_text: OnText) -> Response:
        params = effective_params(request, self.config)
        extra_body = dict(params.provider_specific)
        if params.top_k is not None and self.config.compat in COMPAT_KINDS:
            # Not a Chat Completions field (OpenAI refuses it); vLLM and Ollama read it
            # from the body, so it goes only to a server declared as one of them.
            extra_body = {"top_k": params.top_k, **extra_body}
        tools, tool_choice = tool_arguments(request.tools, request.tool_choice)
        # max_completion_tokens (what newer OpenAI models want) replaces max_tokens
        # rather than joining it: the API refuses a request that carries both.
        max_tokens = None if "max_completion_tokens" in extra_body else params.max_tokens
        try:
            stream = await self._client.chat.completions.create(
                model=cast(str, params.model),
                messages=messages_of(request.messages, params.system_prompt),
                stream=True,
                stream_options={"include_usage": True},
                temperature=_given(params.temperature),
                max_tokens=_given(max_tokens),
                top_p=_given(params.top_p),
                stop=_given(list(params.stop_sequences) if params.stop_sequences else None),
                tools=tools,
                tool_choice=tool_choice,
                extra_body=extra_body or None,
            )
        except openai.APIError as exc:
            # `from None`: the SDK's own message may quote the key; a chained traceback
            # would print it to the log.
            raise self._failure(exc) from None

        text: list[str] = []
        calls: dict[int, PartialCall] = {}
        finish: str | None = None
        usage = Usage()
        model = ""
        try:
            async with stream:
                async for chunk in stream:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage)
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue  # we ask for one choice (n=1)
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                            await on_text(delta.content)
                        for piece in delta.tool_calls or ():
                            entry = calls.setdefault(piece.index, PartialCall())
                            entry.id = entry.id or (piece.id or "")
                            if piece.function is not None:
                                entry.name = entry.name or (piece.function.name or "")
                                if piece.function.arguments:
                                    entry.pieces.append(piece.function.arguments)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise StreamInterrupted(self._interrupted(exc)) from None
        if finish is None:
            raise StreamInterrupted(
                f"provider {self.config.id!r}: the stream ended before the model finished"
            )
        return Response(
            text="".join(text),
            tool_calls=tuple(calls[index].finish(f"call_{index}") for index in sorted(calls)),
            usage=usage,
            stop_reason=finish,
            model=model,
        )

    async def close(self) -> None:
        await self._client.close()

    def _failure(self, exc: openai.APIError) -> ProviderError:
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        return sdk_failure(
            self.config,
            exc.message,
            status=status,
            detail=None if status is None else _body_message(exc.body),
            connection=isinstance(exc, openai.APIConnectionError),
            base_url=self._client.base_url,
            too_long=status == 400 and _body_code(exc.body) == CONTEXT_LENGTH_CODE,
        )

    def _interrupted(self, exc: Exception) -> str:
        if isinstance(exc, openai.APIError):
            return broke_off(self.config, _body_message(exc.body) or exc.message)
        return broke_off(self.config, f"{type(exc).__name__}: {exc}")


def _usage(usage: Any) -> Usage:
    """Chat Completions usage: `prompt_tokens` counts every input token, the
    `prompt_tokens_details.cached_tokens` read from the prompt cache among them (OpenAI
    caches on its own and bills no writes)."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(usage.prompt_tokens, usage.completion_tokens, cache_read=int(cached))


def _body_code(body: object) -> str:
    """The `code` of an error body (`context_length_exceeded`, ...)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, str):
            return code
    return ""


def _given(value: Any) -> Any:
    """The SDK's "leave this out of the body" marker for an unset value."""
    return openai.omit if value is None else value


def _body_message(body: object) -> str:
    """The `message` of an error body (the SDK hands over its `error` object)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
    return ""


def messages_of(
    messages: tuple[Message, ...], system_prompt: str | None
) -> list[ChatCompletionMessageParam]:
    """Our messages as Chat Completions messages, the system prompt first."""
    out: list[dict[str, Any]] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    for message in messages:
        if message.role == "user":
            out.append({"role": "user", "content": message.text})
        elif message.role == "tool":
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
            )
        elif message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.text or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(dict(call.arguments)),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": "assistant", "content": message.text})
    return cast(list[ChatCompletionMessageParam], out)


def tool_arguments(tools: tuple[ToolSpec, ...], choice: ToolChoice) -> tuple[Any, Any]:
    """(`tools`, `tool_choice`) for the SDK; both left out when there are no tools or
    the choice is "none" (text only)."""
    if not tools or choice.mode == "none":
        return openai.omit, openai.omit
    specs: list[ChatCompletionToolUnionParam] = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]
    mapped: ChatCompletionToolChoiceOptionParam
    if choice.mode == "any":
        mapped = "required"
    elif choice.mode == "tool":
        if not choice.name:
            raise ProviderError('tool_choice "tool" needs the name of a tool')
        mapped = {"type": "function", "function": {"name": choice.name}}
    else:
        mapped = "auto"
    return specs, mapped
