"""What an engine gets for one turn, and what it may do: call tools and say things.

An engine knows its provider (or its script) and this interface, nothing of hosts or
sessions. The session runtime builds a `Turn`, hands the engine a `Tools` object bound
to the session, and records everything that passes through it in the transcript.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.agents.providers.base import ToolSpec

# Tools a session offers (each agent is allowed a subset; schemas in bot.agents.tools).
UPDATE_STATUS = "update_status"  # {"steps": [{"title": str, "done": bool}, ...], "summary": str}
REPLY = "reply"  # {"body": str}: a message in the session's thread
TASK_COMPLETED = "task_completed"  # {"output": str}: the final answer; close or stay open
POST_REVIEW_THREAD = "post_review_thread"  # {"path", "line", "start_line"?, "side"?, "body"}
READ_FILE = "read_file"  # {"path": str}: a file at the pull request's head, size-capped
GET_DIFF = "get_diff"  # {}: the pull request's unified diff, size-capped
MEMORY_WRITE = "memory_write"  # {"key": str, "value": str}: a note kept per repository
MEMORY_READ = "memory_read"  # {"key"?: str}: one note, or all of them
DELEGATE = "delegate_to_sub_agent"  # {"agent_id", "task", "runtimeParams"?}: coordinators only
SESSIONS_LIST = "sessions_list"  # {"filter"?: str, "limit"?: int}
SESSIONS_HISTORY = "sessions_history"  # {"key": str, "limit"?: int, "offset"?: int}
SESSIONS_SEARCH = "sessions_search"  # {"query": str, "limit"?: int, "exclude_current"?: bool}
SESSIONS_SEND = "sessions_send"  # {"key", "message", "wait_for_reply"?, "timeout_seconds"?}
PROPOSE_CHANGE = "propose_change"  # {"title", "description"?, "files"? | "diff"?}: a gate
REQUEST_APPROVAL = "request_approval"  # {"subject"}: wait for a maintainer's yes
# Spawns (bot.sessions.spawns): sub-agents a coordinator starts, blocking or not.
SPAWN_AGENT = "spawn_agent"  # {"agent", "task", "nonblocking"?, "active_tools"?, "tool_choice"?}
SPAWN_STATUS = "spawn_status"  # {"task_id"}: running, done, failed or cancelled
SPAWN_RESULT = "spawn_result"  # {"task_id"}: the finished spawn's output
SPAWN_LIST = "spawn_list"  # {"state"?}: this session's spawns, to find task ids again
CANCEL_SPAWN = "cancel_spawn"  # {"task_id"}: stop a running spawn
TASK_LIST = "task_list"  # {}: all work this session handed out (spawns and delegations)
SPAWN_TOOLS = (SPAWN_AGENT, SPAWN_STATUS, SPAWN_RESULT, SPAWN_LIST, CANCEL_SPAWN, TASK_LIST)
# Workspace tools (an agent with `workspace: read-only | read-write`; bot.workspaces.tools).
# read_file reads the worktree when the session has one.
LIST_FILES = "list_files"  # {"pattern"?: glob}: files, .gitignore respected
WRITE_FILE = "write_file"  # {"path", "content"}
EDIT_FILE = "edit_file"  # {"path", "old", "new"}: exact, refuses an ambiguous match
CODE_SEARCH = "code_search"  # {"query": regex, "path"?: glob, "max_results"?: int}
RUN_COMMAND = "run_command"  # {"command": argv list | shell text, "timeout"?, "cwd"?}

# The transcript event an engine records when it first talks to its model or CLI in a
# session: the system prompt exactly as sent (the inspector shows it).
SYSTEM_PROMPT_EVENT = "system_prompt"

# What an agent may use when its configuration does not say (`active_tools`).
SESSION_TOOLS = (UPDATE_STATUS, REPLY, TASK_COMPLETED)
PR_TOOLS = (POST_REVIEW_THREAD, READ_FILE, GET_DIFF)
MEMORY_TOOLS = (MEMORY_WRITE, MEMORY_READ)
DIRECTORY_TOOLS = (SESSIONS_LIST, SESSIONS_HISTORY, SESSIONS_SEARCH, SESSIONS_SEND)
WORKSPACE_READ_TOOLS = (LIST_FILES, READ_FILE, CODE_SEARCH, RUN_COMMAND)
WORKSPACE_WRITE_TOOLS = (WRITE_FILE, EDIT_FILE)
WORKSPACE_TOOLS = (LIST_FILES, CODE_SEARCH, WRITE_FILE, EDIT_FILE, RUN_COMMAND)  # not READ_FILE
WORKSPACE_MODES = ("none", "read-only", "read-write")
ALL_TOOLS = (
    *SESSION_TOOLS,
    *PR_TOOLS,
    *MEMORY_TOOLS,
    DELEGATE,
    *DIRECTORY_TOOLS,
    PROPOSE_CHANGE,
    REQUEST_APPROVAL,
    *WORKSPACE_TOOLS,
    *SPAWN_TOOLS,
)


@dataclass(frozen=True)
class Budget:
    """`budget`: a session of this agent closes (reason `budget`) past any of these."""

    tokens: int | None = None  # input (cached ones too) + output tokens over the session
    turns: int | None = None
    minutes: float | None = None  # wall time since the session started
    cost_micros: int | None = None  # `maxCostUsd` in US$ 1e-6, weighed by the price table


@dataclass(frozen=True)
class SessionAccess:
    """`sessionAccess`: which sessions the session tools let this agent see and message.

    A session's key is `<agent id>:<thread key>`. `key_prefix` limits what is visible to
    keys starting with it; `allowed_keys` are visible as well; `cross_agent` lets the
    agent see other agents' sessions; `can_send` allows `sessions_send`. An agent with
    no `sessionAccess` sees and may message every session.
    """

    key_prefix: str | None = None
    allowed_keys: tuple[str, ...] = ()
    can_send: bool = True
    cross_agent: bool = False

    def visible(self, key: str, agent_id: str, caller_agent_id: str) -> bool:
        """Whether the session `key` (of agent `agent_id`) is visible to the caller."""
        if key in self.allowed_keys:
            return True
        if not self.cross_agent and agent_id != caller_agent_id:
            return False
        return self.key_prefix is None or key.startswith(self.key_prefix)


# Kinds of paths a change may touch only when the agent's `allowProtectedPaths` names them
# (bot.sessions.protected says which paths they are).
PROTECTED_CI = "ci"
PROTECTED_THREADLINE = "threadline"
PROTECTED_KINDS = (PROTECTED_CI, PROTECTED_THREADLINE)


@dataclass(frozen=True)
class McpServer:
    """An external MCP server whose tools an agent may call (bot/agents/mcp_config.py):
    streamable HTTP at `url`, or a program (`command`) spoken to over stdio."""

    name: str
    url: str | None = None
    command: tuple[str, ...] = ()
    # Values read from the named environment variables when the file was read.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    network: bool = False
    trusted: bool = False
    read_only_paths: tuple[str, ...] = ()
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class AgentSpec:
    """A configured agent: who it is, which engine runs it, what it may use."""

    id: str
    engine: str  # "script" (offline, deterministic) or "llm" (a provider's API)
    description: str = ""
    system_prompt: str = ""
    tools: tuple[str, ...] = SESSION_TOOLS
    agent_ids: tuple[str, ...] = ()  # a coordinator's sub-agents (delegate_to_sub_agent)
    max_delegations: int = 10  # per session
    budget: Budget = field(default_factory=Budget)
    access: SessionAccess | None = None
    # The kinds of protected paths (PROTECTED_KINDS) its changes may touch.
    allow_protected: frozenset[str] = frozenset()
    # `workspace`: none, or a git worktree of the repository the agent reads (read-only)
    # or also changes (read-write); commands run in the sandbox either way.
    workspace: str = "none"
    # `workspace: {network: true}`: the agent's commands may use the network.
    workspace_network: bool = False
    # `workspace: {outsiderCode: run}`: commands run even on a fork's (an outsider's) code.
    workspace_outsider_code: bool = False
    # `workspace: {setup: [...]}`: commands (argv) run once per workspace before the
    # agent starts, with network (server file only), e.g. to install dependencies.
    workspace_setup: tuple[tuple[str, ...], ...] = ()
    # `mcpServers`: external MCP servers whose tools join the agent's (as mcp__<server>__<tool>).
    mcp_servers: tuple[McpServer, ...] = ()
    # `threadContext: false`: the session's thread is not read for it (no host reads, no
    # `context` event); for agents that do not use it (a script, a formatter).
    thread_context: bool = True
    # Engine-specific settings, validated by that engine (e.g. the script's rules).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnInput:
    """One message the agent gets in a turn, in the order they arrived."""

    # "task" (what launched the session) | "comment" | "operator" | "message" (another
    # session's) | "spawn" (a non-blocking spawn's result; author: its task id)
    kind: str
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
    # The conversation of earlier turns as the engine remembered it (`Tools.remember`),
    # oldest first: what an LLM engine replays so a follow-up continues the session.
    history: tuple[Mapping[str, Any], ...] = ()
    # Prompt-level runtimeParams (a delegation's), over the agent's own (session level).
    params: Mapping[str, Any] = field(default_factory=dict)
    # Where the session lives, for the engine's context: repository, thread, its URL.
    context: Mapping[str, Any] = field(default_factory=dict)
    # The agent's external MCP servers' tools in this turn (bot/sessions/mcp_tools.py).
    external_tools: tuple[ToolSpec, ...] = ()
    # The thread as read when the session started (bot.sessions.context): the pull
    # request or issue, files, earlier comments, a review thread's hunk; the same text
    # in every turn of the session, untrusted parts fenced. "" when there is none.
    thread_context: str = ""


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    content: str = ""


def tool_json(value: Any) -> str:
    """A tool's answer as JSON text for the model (non-ASCII kept, anything else as str)."""
    return json.dumps(value, ensure_ascii=False, default=str)


class EngineError(Exception):
    """The turn failed in a way the agent cannot recover from; the session fails with it."""


class BudgetExceeded(Exception):
    """A session budget (tokens, turns, wall time) ran out: the session closes, reason `budget`."""


class Tools(Protocol):
    async def call(
        self, name: str, args: Mapping[str, Any], *, call_id: str | None = None
    ) -> ToolResult:
        """Run one tool; a tool the agent may not use answers ok=False and is recorded.
        `call_id` is the model's id for the call, when it gave one."""
        ...

    async def say(self, text: str) -> None:
        """Record text the agent produced (kept in the transcript, not posted)."""
        ...

    async def stream(self, text: str) -> None:
        """A piece of text as the model streams it (recorded as it comes, for watchers)."""
        ...

    async def remember(self, message: Mapping[str, Any]) -> None:
        """Keep one conversation message; later turns get it back in `Turn.history`."""
        ...

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
        """Count one model call's tokens (`input_tokens` all of them; `cache_read` and
        `cache_write` the ones read from or written to the prompt cache) and its cost in
        US$ 1e-6; raises BudgetExceeded when the session's budget is spent."""
        ...

    async def note(self, kind: str, data: Mapping[str, Any]) -> None:
        """Record an event of the engine's own in the transcript (e.g. `compaction`)."""
        ...

    @property
    def completed(self) -> bool:
        """Whether `task_completed` has been called in this turn."""
        ...


class Engine(Protocol):
    async def run_turn(self, turn: Turn, tools: Tools) -> None:
        """Work on the turn's inputs through `tools`; raise EngineError to fail the session."""
        ...
