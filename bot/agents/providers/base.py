"""What an LLM engine asks of a provider, in words of our own: no SDK type crosses this line.

A provider adapter (`openai_chat`, `anthropic_messages`) turns a `Request` into one call
of its official SDK with streaming on, hands each text delta to `on_text` as it comes,
assembles tool calls from their chunks, and returns one `Response`. Retries of 429 and
5xx before the stream starts are the SDK's (`max_retries`, honouring `retry-after`); a
stream cut after it started raises `StreamInterrupted`, which the engine may retry.

Messages are provider-neutral and JSON-friendly (`to_dict` / `from_dict`), so a
session's conversation can be kept in its transcript and replayed into a later turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

from bot.agents.models import Price
from bot.agents.models import Usage as Usage  # re-exported: providers' results carry it

Role = Literal["user", "assistant", "tool"]
ChoiceMode = Literal["auto", "any", "none", "tool"]
OnText = Callable[[str], Awaitable[None]]

OPENAI = "openai"  # Chat Completions, and every server that speaks it
ANTHROPIC = "anthropic"  # Messages
PROVIDER_KINDS = (OPENAI, ANTHROPIC)
COMPAT_KINDS = ("vllm", "ollama")  # OpenAI-compatible servers that also take top_k


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: Mapping[str, Any]  # parsed; {} when the model sent nothing or bad JSON
    raw_arguments: str = ""  # as the model sent them (kept when they did not parse)


@dataclass(frozen=True)
class Message:
    """One message of a conversation.

    user: `text`. assistant: `text` and/or `tool_calls`. tool: the result of the call
    `tool_call_id` in `text`, `is_error` when the tool refused or failed.
    """

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.tool_calls:
            data["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": dict(c.arguments)}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.is_error:
            data["is_error"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        calls = tuple(
            ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
            for c in data.get("tool_calls") or ()
        )
        return cls(
            role=data["role"],
            text=str(data.get("text") or ""),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            is_error=bool(data.get("is_error")),
        )


@dataclass(frozen=True)
class ToolChoice:
    """`tool_choice`: auto (model decides), any (must call some tool), none (no tools are
    sent at all: text only), tool (must call the tool `name`)."""

    mode: ChoiceMode = "auto"
    name: str | None = None


@dataclass(frozen=True)
class Params:
    """`runtimeParams`. None means "not set here": a layer only overrides what it sets."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] | None = None
    system_prompt: str | None = None
    provider_specific: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def over(self, lower: Params) -> Params:
        """These params laid over `lower`: set fields win, `provider_specific` merges
        shallowly (this layer's keys win)."""
        values = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "provider_specific" and getattr(self, f.name) is not None
        }
        merged = {**lower.provider_specific, **self.provider_specific}
        return replace(lower, **values, provider_specific=MappingProxyType(merged))

    @staticmethod
    def merge(*layers: Params) -> Params:
        """Lowest precedence first: provider defaults, session, prompt."""
        result = Params()
        for layer in layers:
            result = layer.over(result)
        return result


@dataclass(frozen=True)
class Request:
    params: Params  # merged; `model` is required by then
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)


@dataclass(frozen=True)
class Response:
    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    stop_reason: str  # the provider's own word: "stop", "tool_calls", "end_turn", ...
    model: str = ""


class ProviderError(Exception):
    """A provider call failed after the SDK's own retries. Never carries the API key."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class ContextTooLong(ProviderError):
    """The API refused the request because it does not fit the model's context window
    (OpenAI: 400 `context_length_exceeded`; Anthropic: 400 "prompt is too long")."""


class StreamInterrupted(ProviderError):
    """The stream started and was cut before it finished; the whole call may be retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True)
class ProviderConfig:
    """`providers.<id>` in threadline.yml, with the API key already read from its
    environment variable (the file names the variable, never the key)."""

    id: str
    kind: str  # one of PROVIDER_KINDS
    api_key: str = field(repr=False)
    base_url: str | None = None
    timeout_seconds: float = 120.0
    max_retries: int = 3
    defaults: Params = field(default_factory=Params)
    # An OpenAI-compatible server that takes more than Chat Completions does (`top_k`):
    # "vllm" or "ollama"; None for OpenAI itself and servers that take only its fields.
    compat: str | None = None
    context_window: int | None = None  # tokens; None: the model family's default
    caching: bool = True  # Anthropic: put cache_control breakpoints on the stable prefix
    # `prices:` by model-name prefix, over the defaults of bot.agents.models.PRICES
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))


class Provider(Protocol):
    config: ProviderConfig

    async def complete(self, request: Request, on_text: OnText) -> Response:
        """One streamed call; `on_text` gets each text delta as it arrives."""
        ...

    async def close(self) -> None:
        """Release the HTTP client."""
        ...
