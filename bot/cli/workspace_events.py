"""Workspace and CLI-agent transcript events as readable text, for `sessions transcript`
and `sessions show`: a command with its exit code and capped output, a worktree diff,
and the events a CLI coding agent streamed (cli_*). Pure functions over event data."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

OUTPUT_LINES = 20  # of a command's output, the last ones (where failures are)
DIFF_LINES = 60
TEXT_CHARS = 300
KINDS = (
    "command",
    "worktree_diff",
    "workspace",
    "cli_started",
    "cli_tool_call",
    "cli_tool_result",
    "cli_file_change",
    "cli_result",
)


def _argv(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return shlex.join(str(part) for part in value)
    return str(value)


def _tail(text: str, lines: int) -> list[str]:
    kept = text.rstrip("\n").splitlines()
    if len(kept) <= lines:
        return kept
    return [f"[... {len(kept) - lines} lines above ...]", *kept[-lines:]]


def _head(text: str, lines: int) -> list[str]:
    kept = text.rstrip("\n").splitlines()
    if len(kept) <= lines:
        return kept
    return [*kept[:lines], f"[... {len(kept) - lines} more lines ...]"]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def command_line(data: Mapping[str, Any]) -> str:
    """`$ argv` with where, how it ended and how long it took, on one line."""
    code = data.get("exit_code")
    ended = "stopped at its time limit" if data.get("timed_out") else f"exit {code}"
    extra = []
    if data.get("setup"):
        extra.append("setup")
    if data.get("via"):
        extra.append(f"by {data['via']}")
    if data.get("cwd") not in (None, ".", ""):
        extra.append(f"in {data['cwd']}")
    seconds = data.get("seconds")
    took = f", {float(seconds):.2f} s" if isinstance(seconds, int | float) else ""
    said = f" ({', '.join(extra)})" if extra else ""
    return f"$ {_argv(data.get('argv'))}  [{ended}{took}]{said}"


def diff_files(diff: str) -> list[str]:
    """The files a git diff touches, each with its added/removed line counts."""
    shown: list[str] = []
    path, added, removed = "", 0, 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            if path:
                shown.append(f"{path} +{added} -{removed}")
            path, added, removed = line.split(" b/", 1)[-1], 0, 0
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    if path:
        shown.append(f"{path} +{added} -{removed}")
    return shown


def describe(kind: str, data: Mapping[str, Any]) -> list[str] | None:
    """The event as lines of text; None for a kind this module does not know."""
    if kind == "command":
        output = str(data.get("output") or "")
        return [command_line(data), *("    " + line for line in _tail(output, OUTPUT_LINES))]
    if kind == "worktree_diff":
        if data.get("error"):
            return [f"worktree diff: {data['error']}"]
        diff = str(data.get("diff") or "")
        base = str(data.get("base") or "")[:12]
        files = diff_files(diff)
        head = f"worktree diff against {base}: " + (", ".join(files) if files else "no changes")
        return [head, *("    " + line for line in _head(diff, DIFF_LINES))]
    if kind == "workspace":
        return [f"workspace: {data.get('error') or _short(dict(data))}"]
    if kind == "cli_started":
        resumed = f", resuming {data['resume']}" if data.get("resume") else ""
        if data.get("restored_files"):
            resumed += f" ({data['restored_files']} record files brought back)"
        network = ", with network" if data.get("network") else ""
        return [f"{data.get('cli')} started: {_argv(data.get('argv'))}{resumed}{network}"]
    if kind == "cli_tool_call":
        return [f"{data.get('cli')} calls {data.get('tool')}: {_short(data.get('input'))}"]
    if kind == "cli_tool_result":
        ok = "ok" if data.get("ok", True) else "failed"
        return [f"{data.get('cli')} tool result ({ok}): {_short(data.get('content'))}"]
    if kind == "cli_file_change":
        changes = data.get("changes") or []
        listed = ", ".join(
            f"{c.get('kind')} {c.get('path')}" for c in changes if isinstance(c, Mapping)
        )
        return [f"{data.get('cli')} changed files: {listed or '-'}"]
    if kind == "cli_result":
        parts = [
            f"{k} {data[k]}"
            for k in ("input_tokens", "output_tokens", "cost_usd", "turns")
            if data.get(k) is not None
        ]
        return [f"{data.get('cli')} finished: {', '.join(parts) or 'no usage reported'}"]
    return None
