"""What an engine gets for one turn, and what it may do: call tools and say things.

An engine knows its provider (or its script) and this interface, nothing of hosts or
sessions. The session runtime builds a `Turn`, hands the engine a `Tools` object bound
to the session, and records everything that passes through it in the transcript.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Tools a session offers (each agent is allowed a subset).
UPDATE_STATUS = "update_status"  # {"steps": [{"title": str, "done": bool}, ...], "summary": str}
REPLY = "reply"  # {"body": str}: a message in the session's thread
TASK_COMPLETED = "task_completed"  # {"output": str}: the final answer; close or stay open
SESSION_TOOLS = (UPDATE_STATUS, REPLY, TASK_COMPLETED)


@dataclass(frozen=True)
class AgentSpec:
    """A configured agent: who it is, which engine runs it, what it may use."""

    id: str
    engine: str  # "script" (offline, deterministic); "llm" and "command" come later
    description: str = ""
    system_prompt: str = ""
    tools: tuple[str, ...] = SESSION_TOOLS
    # Engine-specific settings, validated by that engine (e.g. the script's rules).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnInput:
    """One message the agent gets in a turn, in the order they arrived."""

    kind: str  # "task" (what launched the session) | "comment" | "operator"
    author: str
    body: str


@dataclass(frozen=True)
class Turn:
    session_id: str
    number: int  # 1 for the first turn
    agent: AgentSpec
    task: str
    inputs: tuple[TurnInput, ...]
    thread_key: str


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    content: str = ""


class EngineError(Exception):
    """The turn failed in a way the agent cannot recover from; the session fails with it."""


class Tools(Protocol):
    async def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        """Run one tool; a tool the agent may not use answers ok=False and is recorded."""
        ...

    async def say(self, text: str) -> None:
        """Record text the agent produced (kept in the transcript, not posted)."""
        ...


class Engine(Protocol):
    async def run_turn(self, turn: Turn, tools: Tools) -> None:
        """Work on the turn's inputs through `tools`; raise EngineError to fail the session."""
        ...
