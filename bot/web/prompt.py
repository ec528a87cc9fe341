"""The session page's "System prompt": the prompt exactly as the engine sent it (its
`system_prompt` transcript event: the agent's prompt, where the session lives, the
thread's context), or, before any was sent, the agent's prompt as configured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.agents.base import SYSTEM_PROMPT_EVENT
from bot.web.queries import Reads


@dataclass(frozen=True)
class ShownPrompt:
    text: str
    sent: bool  # True: as sent to the model or CLI; False: as configured, nothing sent yet
    engine: str | None = None
    first_prompt: str | None = None  # a CLI's first input (the command engine)


def configured_prompt(spec: Mapping[str, Any] | None) -> str | None:
    if not spec:
        return None
    for key in ("system_prompt", "systemPrompt"):
        value = spec.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def shown_prompt(
    reads: Reads, session_id: str, spec: Mapping[str, Any] | None
) -> ShownPrompt | None:
    page = reads.events(session_id, kinds=(SYSTEM_PROMPT_EVENT,), last=True, limit=1)
    if page.events:
        data = page.events[-1].data
        first = data.get("prompt")
        return ShownPrompt(
            text=str(data.get("text") or ""),
            sent=True,
            engine=str(data.get("engine") or "") or None,
            first_prompt=first if isinstance(first, str) else None,
        )
    configured = configured_prompt(spec)
    return None if configured is None else ShownPrompt(configured, sent=False)
