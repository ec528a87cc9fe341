"""The tools a session offers, as a model sees them: a description and a JSON Schema each.

`tool_specs(names, choice)` gives what goes into a provider request for an agent: only
the tools it may use (`active_tools`), and none at all when `tool_choice` is `none`.
The runtime (`bot.sessions.tools`) carries them out; an engine only passes them along.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from bot.agents import base as b
from bot.agents.providers.base import ToolChoice, ToolSpec


def _object(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


_TEXT = {"type": "string"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 100}

SCHEMAS: Mapping[str, tuple[str, dict[str, Any]]] = MappingProxyType(
    {
        b.UPDATE_STATUS: (
            "Show progress in the thread's status comment: a checklist of steps and a "
            "one-line summary. Call it when you start and as steps finish.",
            _object(
                {
                    "steps": {
                        "type": "array",
                        "items": _object({"title": _TEXT, "done": {"type": "boolean"}}, ["title"]),
                    },
                    "summary": _TEXT,
                },
                ["steps"],
            ),
        ),
        b.REPLY: (
            "Post a message (Markdown) in the session's thread for the people there to read.",
            _object({"body": _TEXT}, ["body"]),
        ),
        b.TASK_COMPLETED: (
            "Finish the task with its final output. Call it once, when the work is done.",
            _object({"output": _TEXT}, ["output"]),
        ),
        b.POST_REVIEW_THREAD: (
            "Open a review thread on a line (or a range of lines) of the pull request's "
            "diff. `side` RIGHT is the new file, LEFT the old one.",
            _object(
                {
                    "path": _TEXT,
                    "line": {"type": "integer", "minimum": 1},
                    "start_line": {"type": "integer", "minimum": 1},
                    "side": {"type": "string", "enum": ["RIGHT", "LEFT"]},
                    "body": _TEXT,
                },
                ["path", "line", "body"],
            ),
        ),
        b.READ_FILE: (
            "Read a file of the repository: from the workspace when the session has one, "
            "else at the pull request's head commit (or the default branch for an issue). "
            "`start_line` and `end_line` (workspace only) pick lines. Large files are cut.",
            _object(
                {
                    "path": _TEXT,
                    "start_line": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                },
                ["path"],
            ),
        ),
        b.GET_DIFF: (
            "Get the pull request's unified diff. Large diffs are cut.",
            _object({}),
        ),
        b.MEMORY_WRITE: (
            "Keep a note for later sessions of this agent in this repository.",
            _object({"key": _TEXT, "value": _TEXT}, ["key", "value"]),
        ),
        b.MEMORY_READ: (
            "Read the note `key` kept by earlier sessions, or every note when no key is given.",
            _object({"key": _TEXT}),
        ),
        b.DELEGATE: (
            "Give a self-contained task to one of your sub-agents. It remembers nothing of "
            "earlier delegations: include every instruction and all the context it needs. "
            "Call this several times in one response to run independent tasks at once; "
            "their results come back together.",
            _object(
                {
                    "agent_id": _TEXT,
                    "task": _TEXT,
                    "runtimeParams": {"type": "object"},
                },
                ["agent_id", "task"],
            ),
        ),
        b.PROPOSE_CHANGE: (
            "Propose a change to the repository: either `files` (each path with its complete "
            "new content, or content null to delete it) or a unified `diff` against the default "
            "branch; in a session with a workspace, neither: what the workspace changed. Nothing is written until a maintainer approves; then it becomes a branch "
            "and a pull request. The session waits for the decision after this turn.",
            _object(
                {
                    "title": _TEXT,
                    "description": _TEXT,
                    "files": {
                        "type": "array",
                        "items": _object(
                            {"path": _TEXT, "content": {"type": ["string", "null"]}},
                            ["path", "content"],
                        ),
                    },
                    "diff": _TEXT,
                },
                ["title"],
            ),
        ),
        b.REQUEST_APPROVAL: (
            "Ask a maintainer to approve before going on (the session waits after this turn). "
            "If this session or one of its delegations proposed a change that is still "
            "waiting, the approval applies it.",
            _object({"subject": _TEXT}, ["subject"]),
        ),
        b.SESSIONS_LIST: (
            "List the sessions you may see, newest first.",
            _object({"filter": _TEXT, "limit": _LIMIT}),
        ),
        b.SESSIONS_HISTORY: (
            "Read the transcript of a session, by key or id.",
            _object(
                {"key": _TEXT, "limit": _LIMIT, "offset": {"type": "integer", "minimum": 0}},
                ["key"],
            ),
        ),
        b.SESSIONS_SEARCH: (
            "Search the transcripts of earlier sessions, best matches first.",
            _object(
                {"query": _TEXT, "limit": _LIMIT, "exclude_current": {"type": "boolean"}},
                ["query"],
            ),
        ),
        b.SESSIONS_SEND: (
            "Send a message to another live session; optionally wait for its reply.",
            _object(
                {
                    "key": _TEXT,
                    "message": _TEXT,
                    "wait_for_reply": {"type": "boolean"},
                    "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 600},
                },
                ["key", "message"],
            ),
        ),
        b.LIST_FILES: (
            "List the workspace's files (tracked and new, .gitignore respected), optionally "
            "only those matching a glob `pattern` such as `src/*.py`.",
            _object({"pattern": _TEXT}),
        ),
        b.WRITE_FILE: (
            "Write a file of the workspace (created with its folders if missing) with the "
            "complete new `content`.",
            _object({"path": _TEXT, "content": _TEXT}, ["path", "content"]),
        ),
        b.EDIT_FILE: (
            "Replace the exact text `old` by `new` in a file of the workspace. `old` must "
            "occur exactly once: include enough surrounding lines.",
            _object({"path": _TEXT, "old": _TEXT, "new": _TEXT}, ["path", "old", "new"]),
        ),
        b.CODE_SEARCH: (
            "Search the workspace's files for a regular expression; answers path:line:text. "
            "`path` is an optional glob limiting the files searched.",
            _object(
                {
                    "query": _TEXT,
                    "path": _TEXT,
                    "max_results": {"type": "integer", "minimum": 1, "maximum": 200},
                },
                ["query"],
            ),
        ),
        b.RUN_COMMAND: (
            "Run a command in the workspace's sandbox (no network, limited time, memory and "
            "output): `command` is an argv list, or a text run by sh. Answers the exit code "
            "and the output (its middle cut when long).",
            _object(
                {
                    "command": {"oneOf": [{"type": "array", "items": _TEXT, "minItems": 1}, _TEXT]},
                    "timeout": {"type": "number", "minimum": 1, "maximum": 3600},
                    "cwd": _TEXT,
                },
                ["command"],
            ),
        ),
        b.SPAWN_AGENT: (
            "Start one of your sub-agents on a self-contained task (it remembers nothing: "
            "include all the context). Blocking (the default) answers its result; with "
            "`nonblocking` true it answers a task id at once, the sub-agent works on while "
            "your turn may end, and its result arrives later as your input. `active_tools` "
            "narrows its tools for this run; `tool_choice` is auto, any, none or "
            '{"type": "tool", "name": ...}.',
            _object(
                {
                    "agent": _TEXT,
                    "task": _TEXT,
                    "nonblocking": {"type": "boolean"},
                    "active_tools": {"type": "array", "items": _TEXT},
                    "tool_choice": {"oneOf": [_TEXT, {"type": "object"}]},
                },
                ["agent", "task"],
            ),
        ),
        b.SPAWN_STATUS: (
            "The state of one of your spawns (running, done, failed, cancelled).",
            _object({"task_id": _TEXT}, ["task_id"]),
        ),
        b.SPAWN_RESULT: (
            "The output of one of your finished spawns.",
            _object({"task_id": _TEXT}, ["task_id"]),
        ),
        b.SPAWN_LIST: (
            "Your spawns with their task ids and states, optionally only those in `state`.",
            _object(
                {"state": {"type": "string", "enum": ["running", "done", "failed", "cancelled"]}}
            ),
        ),
        b.CANCEL_SPAWN: (
            "Stop one of your running spawns; its result never arrives.",
            _object({"task_id": _TEXT}, ["task_id"]),
        ),
        b.TASK_LIST: (
            "All the work this session handed out (spawns and delegations) and its state.",
            _object({}),
        ),
    }
)


def tool_specs(names: Iterable[str], choice: ToolChoice) -> tuple[ToolSpec, ...]:
    """The tools a request offers: the agent's allowed ones, in its order; none for `none`."""
    if choice.mode == "none":
        return ()
    return tuple(
        ToolSpec(name, SCHEMAS[name][0], SCHEMAS[name][1]) for name in names if name in SCHEMAS
    )
