"""What both provider adapters do alike: assemble streamed tool calls, keep secrets out of
error text, and pick the parameters a request is sent with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.agents.providers.base import (
    ContextTooLong,
    Params,
    ProviderConfig,
    ProviderError,
    Request,
    ToolCall,
)

MAX_ERROR_TEXT = 500


@dataclass
class PartialCall:
    """A tool call while its pieces arrive: id and name first, arguments in fragments."""

    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)

    def finish(self, fallback_id: str) -> ToolCall:
        return parse_call(self.id or fallback_id, self.name, "".join(self.pieces))


def parse_call(call_id: str, name: str, raw: str) -> ToolCall:
    """A ToolCall with its arguments parsed; bad or non-object JSON gives {} and keeps
    `raw_arguments`, so the engine can tell the model what went wrong."""
    if not raw.strip():
        return ToolCall(call_id, name, {}, raw)
    try:
        arguments: Any = json.loads(raw)
    except ValueError:
        return ToolCall(call_id, name, {}, raw)
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, raw)
    return ToolCall(call_id, name, arguments, raw)


def effective_params(request: Request, config: ProviderConfig) -> Params:
    """The request's params laid over the provider's defaults (harmless if the engine
    already merged them: laying a merge over one of its own layers changes nothing),
    with a model required."""
    params = request.params.over(config.defaults)
    if not params.model:
        raise ProviderError(f"provider {config.id!r}: no model set (runtimeParams.model)")
    return params


def scrub(text: str, secret: str) -> str:
    """`text` without `secret` in it, shortened for a log line or a thread comment."""
    if secret:
        text = text.replace(secret, "[redacted]")
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "..."
    return text


def retryable_status(status: int | None) -> bool:
    """Statuses worth another try later: timeouts, lock conflicts, rate limits, server
    errors (the same ones the SDKs retry on their own)."""
    return status is not None and (status in (408, 409, 429) or status >= 500)


def sdk_failure(
    config: ProviderConfig,
    message: str,
    *,
    status: int | None = None,
    detail: str | None = None,
    connection: bool = False,
    base_url: object = None,
    too_long: bool = False,
) -> ProviderError:
    """An SDK's error in our words: HTTP status and the API's own message, or the
    connection problem; the API key never appears."""
    where = f"provider {config.id!r}"
    if status is not None:
        text = f"{where}: HTTP {status}: {detail or message}"
        if too_long:
            return ContextTooLong(scrub(text, config.api_key), status=status)
        return ProviderError(
            scrub(text, config.api_key), status=status, retryable=retryable_status(status)
        )
    if connection:  # timeouts too
        return ProviderError(
            scrub(f"{where}: {message} ({base_url})", config.api_key), retryable=True
        )
    return ProviderError(scrub(f"{where}: {message}", config.api_key))


def broke_off(config: ProviderConfig, detail: str) -> str:
    """What a stream cut mid-way says (for StreamInterrupted)."""
    return scrub(f"provider {config.id!r}: the stream broke off: {detail}", config.api_key)
