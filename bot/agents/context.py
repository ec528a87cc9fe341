"""Keeping a conversation inside the model's context window: size estimates, capped tool
outputs, stubs for old tool outputs, and the cut that a summary replaces.

Pure functions over provider-neutral `Message`s; the engine (bot.agents.llm) decides
when to use them and asks the model for the summary. Every list these functions return
keeps the pairing rules of both APIs: a tool result stays right after the assistant
message that made its call, and a call is never kept without its result, because a cut
is only ever made in front of a user or assistant message, never in front of a result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot.agents.providers.base import Message, ToolSpec

CHARS_PER_TOKEN = 4  # a rough, deliberately high estimate for English text and JSON
MESSAGE_OVERHEAD = 8  # tokens a message costs beyond its text (role, framing)
COMPACTION_ROLE = "compaction"  # a remembered entry that replaces everything before it
CUT_MARKER = "\n\n[... Threadline cut {cut} of {total} characters here (the output was longer than {limit}) ...]\n\n"
STUB = "[output elided by Threadline to save context: {chars} characters of {name}]"
SUMMARY_HEADING = "Summary of the conversation so far (older messages were compacted):\n"
RENDER_LIMIT = 2_000  # characters of one message in the text a summary is made from


def tokens_of_text(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def tokens_of(message: Message) -> int:
    return tokens_of_text(json.dumps(message.to_dict(), ensure_ascii=False)) + MESSAGE_OVERHEAD


def request_tokens(system: str, tools: Sequence[ToolSpec], messages: Iterable[Message]) -> int:
    """An estimate of a whole request with nothing known of it."""
    specs = json.dumps(
        [{"name": t.name, "description": t.description, "schema": t.parameters} for t in tools]
    )
    return (
        tokens_of_text(system)
        + tokens_of_text(specs)
        + sum(tokens_of(message) for message in messages)
    )


def cap_output(text: str, limit: int) -> str:
    """`text` within `limit` characters: its head and tail with a marker of what was cut."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    head = limit - tail
    marker = CUT_MARKER.format(cut=len(text) - limit, total=len(text), limit=limit)
    return text[:head] + marker + (text[-tail:] if tail else "")


def stub_tool_outputs(messages: Sequence[Message], keep: int) -> tuple[list[Message], int]:
    """Tool results older than the last `keep` of them as short stubs (the call and its
    result both stay, so pairing holds); how many were stubbed."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    results = [i for i, m in enumerate(messages) if m.role == "tool"]
    older = set(results[: max(0, len(results) - keep)])
    out: list[Message] = []
    stubbed = 0
    for index, message in enumerate(messages):
        if index in older and not message.text.startswith("[output elided"):
            name = names.get(message.tool_call_id or "", "a tool")
            stub = STUB.format(chars=len(message.text), name=name)
            if len(stub) < len(message.text):
                message = replace(message, text=stub)
                stubbed += 1
        out.append(message)
    return out, stubbed


def cut_points(messages: Sequence[Message]) -> list[int]:
    """Where the older part may end: before any user or assistant message but the first
    (never before a tool result, which must follow its call)."""
    return [i for i, m in enumerate(messages) if i > 0 and m.role != "tool"]


def choose_cut(messages: Sequence[Message], tail_tokens: int) -> int | None:
    """The cut that keeps the newest messages within `tail_tokens` (at least the last
    exchange that can stand alone); None when nothing can be cut."""
    points = cut_points(messages)
    if not points:
        return None
    best = points[-1]
    size = sum(tokens_of(m) for m in messages[best:])
    for point in reversed(points[:-1]):
        size += sum(tokens_of(m) for m in messages[point:best])
        if size > tail_tokens:
            break
        best = point
    return best


def render(messages: Sequence[Message]) -> str:
    """The older part as plain text, for the model to summarize."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    lines = []
    for message in messages:
        if message.role == "tool":
            head = f"result of {names.get(message.tool_call_id or '', 'a tool')}"
            lines.append(f"{head}: {message.text[:RENDER_LIMIT]}")
            continue
        if message.text:
            lines.append(f"{message.role}: {message.text[:RENDER_LIMIT]}")
        for call in message.tool_calls:
            arguments = json.dumps(dict(call.arguments), ensure_ascii=False)[:RENDER_LIMIT]
            lines.append(f"assistant called {call.name}({arguments})")
    return "\n\n".join(lines)


def summarized(messages: Sequence[Message], cut: int, summary: str) -> list[Message]:
    """The messages from `cut` on, the summary in front as a user message (joined to
    the first kept message when that is a user message: roles keep alternating)."""
    text = SUMMARY_HEADING + summary
    first = messages[cut]
    if first.role == "user":
        return [replace(first, text=f"{text}\n\n{first.text}"), *messages[cut + 1 :]]
    return [Message("user", text), *messages[cut:]]


def compaction_entry(messages: Sequence[Message], data: Mapping[str, Any]) -> dict[str, Any]:
    """What the engine remembers after a compaction: the compacted conversation, which
    replaces every remembered message before it when a later turn replays them."""
    return {"role": COMPACTION_ROLE, "messages": [m.to_dict() for m in messages], **data}


def replay(history: Iterable[Mapping[str, Any]]) -> list[Message]:
    """A remembered conversation as messages, starting from its last compaction."""
    out: list[Message] = []
    for entry in history:
        if entry.get("role") == COMPACTION_ROLE:
            out = [Message.from_dict(m) for m in entry.get("messages") or ()]
        else:
            out.append(Message.from_dict(entry))
    return out
