"""What the playground page shows: a small subset of Markdown rendered safely, and the
view model of a pull request's conversation, threads and files."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from bot.diffs import parse_diff
from bot.hosts.local_store import (
    CommentInfo,
    Conversation,
    ThreadInfo,
)

log = logging.getLogger(__name__)

EMOJI = {
    "eyes": "👀",
    "+1": "👍",
    "-1": "👎",
    "laugh": "😄",
    "confused": "😕",
    "heart": "❤️",
    "hooray": "🎉",
    "rocket": "🚀",
}
STATUS_PREFIX = "**Threadline** session"
REVIEW_STATES = {"approved": "approved these changes", "changes_requested": "requested changes"}


# ---------------------------------------------------------------- Markdown, a small subset

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_MENTION = re.compile(r"(?<![\w/])@([A-Za-z0-9][A-Za-z0-9_-]*)")
_TASK = re.compile(r"^\s*[-*] \[([ xX])\] (.*)$")
_BULLET = re.compile(r"^\s*[-*] (.*)$")
_SUB = re.compile(r"^\s*<sub>(.*)</sub>\s*$")


def _inline(text: str) -> str:
    """Escape one line, then mark up `code`, **bold**, @mentions and <sub>."""
    parts = _CODE.split(text)
    out = []
    for n, part in enumerate(parts):
        if n % 2:
            out.append(f"<code>{escape(part)}</code>")
            continue
        html = str(escape(part))
        html = _BOLD.sub(r"<strong>\1</strong>", html)
        html = _MENTION.sub(r'<span class="mention">@\1</span>', html)
        out.append(html)
    return "".join(out)


def _line(text: str) -> str:
    """One line of text as HTML; a line wholly in <sub>...</sub> is small print."""
    small = _SUB.match(text)
    return f"<sub>{_inline(small.group(1))}</sub>" if small else _inline(text)


def render_body(text: str) -> Markup:
    """A comment body as the hosts show it, for the subset the bot and people use here:
    paragraphs, fenced code, task lists, bullets, quotes, `code`, **bold**, and lines in
    <sub>.
    HTML comments (the bot's hidden markers) vanish; any other markup is escaped."""
    lines = _HTML_COMMENT.sub("", text).strip().splitlines()
    out: list[str] = []
    paragraph: list[str] = []
    listing: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            out.append("<p>" + "<br>".join(paragraph) + "</p>")
            paragraph.clear()
        if listing:
            out.append('<ul class="md">' + "".join(listing) + "</ul>")
            listing.clear()

    for line in lines:
        if code is not None:
            if line.strip().startswith("```"):
                out.append("<pre>" + str(escape("\n".join(code))) + "</pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.strip().startswith("```"):
            flush()
            code = []
        elif not line.strip():
            flush()
        elif (task := _TASK.match(line)) is not None:
            if paragraph:
                flush()
            box = "☑" if task.group(1) in "xX" else "☐"
            listing.append(f'<li class="task">{box} {_inline(task.group(2))}</li>')
        elif (bullet := _BULLET.match(line)) is not None:
            if paragraph:
                flush()
            listing.append(f"<li>{_inline(bullet.group(1))}</li>")
        elif line.startswith(">"):
            flush()
            out.append(f"<blockquote>{_inline(line[1:].strip())}</blockquote>")
        else:
            if listing:
                flush()
            paragraph.append(_line(line))
    if code is not None:
        out.append("<pre>" + str(escape("\n".join(code))) + "</pre>")
    flush()
    return Markup("".join(out))  # noqa: S704 (every piece of text was escaped above)


# ---------------------------------------------------------------- what the page shows


@dataclass(frozen=True)
class CommentView:
    id: int
    author: str
    is_bot: bool
    html: Markup
    created_at: datetime
    edited: bool
    deleted: bool
    is_status: bool
    reactions: tuple[tuple[str, str, int, str], ...]  # (emoji, name, count, who)


@dataclass(frozen=True)
class ThreadView:
    id: int
    path: str
    line: int
    side: str
    resolved: bool
    comments: tuple[CommentView, ...]


@dataclass(frozen=True)
class LineView:
    kind: str
    text: str
    old: int | None
    new: int | None
    threads: tuple[ThreadView, ...] = ()


@dataclass(frozen=True)
class Segment:
    """A run of diff lines, then the review threads on its last line (if any)."""

    lines: tuple[LineView, ...]
    threads: tuple[ThreadView, ...]


@dataclass(frozen=True)
class FileView:
    path: str
    status: str
    additions: int
    deletions: int
    lines: tuple[LineView, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The diff cut after every line with threads. The page scrolls each run of lines
        sideways on its own and shows the threads between the runs, at the page's width:
        inside a wide diff, a thread's reply box would sit off a phone's screen."""
        out: list[Segment] = []
        run: list[LineView] = []
        for line in self.lines:
            run.append(line)
            if line.threads:
                out.append(Segment(tuple(run), line.threads))
                run = []
        if run or not out:
            out.append(Segment(tuple(run), ()))
        return tuple(out)


def _comment_view(comment: CommentInfo, bots: set[str]) -> CommentView:
    return CommentView(
        id=comment.id,
        author=comment.author,
        is_bot=comment.author in bots,
        html=Markup("") if comment.deleted_at else render_body(comment.body),
        created_at=comment.created_at,
        edited=comment.edited_at is not None,
        deleted=comment.deleted_at is not None,
        is_status=comment.author in bots and comment.body.startswith(STATUS_PREFIX),
        reactions=tuple(
            (EMOJI.get(content, content), content, len(who), ", ".join(who))
            for content, who in comment.reactions
        ),
    )


def _thread_view(thread: ThreadInfo, bots: set[str]) -> ThreadView:
    return ThreadView(
        id=thread.id,
        path=thread.path,
        line=thread.line,
        side=thread.side,
        resolved=thread.resolved,
        comments=tuple(_comment_view(c, bots) for c in thread.comments),
    )


def view_model(conversation: Conversation) -> dict[str, Any]:
    """The template's data: the diff with its threads in place, and the timeline."""
    bots = {u.login for u in conversation.users if u.is_bot}
    threads = [_thread_view(t, bots) for t in conversation.threads]
    placed: set[int] = set()
    files = []
    for diff_file in parse_diff(conversation.pull.diff):
        lines = []
        for line in diff_file.lines:
            here = tuple(
                t
                for t in threads
                if t.path == diff_file.path
                and (
                    (t.side == "RIGHT" and line.kind in ("add", "context") and t.line == line.new)
                    or (t.side == "LEFT" and line.kind == "del" and t.line == line.old)
                )
            )
            placed.update(t.id for t in here)
            lines.append(LineView(line.kind, line.text, line.old, line.new, here))
        files.append(
            FileView(
                diff_file.path,
                diff_file.status,
                diff_file.additions,
                diff_file.deletions,
                tuple(lines),
            )
        )
    timeline: list[tuple[datetime, str, Any]] = [
        (c.created_at, "comment", _comment_view(c, bots)) for c in conversation.comments
    ]
    timeline += [
        (r.created_at, "review", r) for r in conversation.reviews if r.state in REVIEW_STATES
    ]
    timeline.sort(key=lambda item: (item[0], item[1]))
    return {
        "pull": conversation.pull,
        "files": files,
        "outdated": [t for t in threads if t.id not in placed],
        "timeline": timeline,
        "review_words": REVIEW_STATES,
        "commit_states": conversation.commit_states,
        "people": [u for u in conversation.users if not u.is_bot],
        "threads_open": sum(1 for t in threads if not t.resolved),
    }
