"""Logging set-up: plain or JSON lines, with the work in hand bound from contextvars.

The delivery being handled, the session whose turn runs, its thread and the host
installation are context variables (`bind` sets them for a block), so every line
logged during that work carries them, whichever module logs it.

Log fields carry text from outside (a commenter's login, a repository name, a host's
error message). In the text format every record is one line: line breaks and other
control characters in the message and the bound fields are written as escapes
(`\\n`, `\\x1b`), so no field can start a line of its own, and a traceback's lines
are indented under the record they belong to.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

delivery_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("delivery", default=None)
session_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)
thread_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("thread", default=None)
installation_var: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "installation", default=None
)

# The bound fields, in the order lines show them: (name in the line, record attribute).
# A record's own `thread` is the Python thread's id, so ours is kept as `thread_key`.
FIELDS = (
    ("delivery", "delivery"),
    ("session", "session"),
    ("thread", "thread_key"),
    ("installation", "installation"),
)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.delivery = delivery_var.get()
        record.session = session_var.get()
        record.thread_key = thread_var.get()
        record.installation = installation_var.get()
        return True


@contextlib.contextmanager
def bind(
    *,
    delivery: str | None = None,
    session: str | None = None,
    thread: str | None = None,
    installation: int | None = None,
) -> Iterator[None]:
    """Bind the given fields (those not None) to every line logged in the block."""
    pairs: list[tuple[contextvars.ContextVar[Any], object]] = [
        (delivery_var, delivery),
        (session_var, session),
        (thread_var, thread),
        (installation_var, installation),
    ]
    tokens = [(var, var.set(value)) for var, value in pairs if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


# C0 controls (line feed, carriage return, tab, escape ...), DEL, C1 controls (NEL among
# them) and the Unicode line and paragraph separators: whatever a terminal or a log
# viewer may take for a line break or a command. (The backslash is escaped too, so an
# escape in the log always means a control character.)
_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL = re.compile(f"[\\\\{_CONTROLS}]")
_CONTROL_ONLY = re.compile(f"[{_CONTROLS}]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Continuation lines (a traceback) start with this, never at the start of a line.
INDENT = "    "


def _escape_one(match: re.Match[str]) -> str:
    ch = match.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def escape(text: str) -> str:
    """`text` on one line: control characters (and backslashes) as backslash escapes."""
    return _CONTROL.sub(_escape_one, text)


def _indented(block: str) -> str:
    """A traceback under its record: each line indented, control characters escaped
    (backslashes kept, as source lines quote them)."""
    return "".join(
        f"\n{INDENT}{_CONTROL_ONLY.sub(_escape_one, part)}" for part in block.splitlines()
    )


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        bound = "".join(
            f" {name}={escape(str(value))}"
            for name, attr in FIELDS
            if (value := getattr(record, attr, None)) is not None
        )
        # The whole rendered message, so every argument (and any object's str()) is
        # covered, whatever the call site passed.
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} "
            f"{record.name}:{bound} {escape(record.getMessage())}"
        )
        if record.exc_info:
            line += _indented(self.formatException(record.exc_info))
        if record.stack_info:
            line += _indented(record.stack_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, attr in FIELDS:
            if (value := getattr(record, attr, None)) is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs; writes to whatever sys.stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send our logs to stderr in `fmt`; called once by the CLI, never at import."""
    handler = _OurHandler()
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    # Replace only our own handler, so calling this twice (tests do) never doubles lines.
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp logs every request at INFO; webhook traffic would drown the rest.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic narrates every schema check; bot.db.migrate logs the upgrades that happen.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # APScheduler announces every job it runs; timers run often.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
