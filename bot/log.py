"""Logging set-up: plain or JSON lines, with the delivery being handled bound from a contextvar."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

delivery_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("delivery", default=None)
session_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.delivery = delivery_var.get()
        record.session = session_var.get()
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        bound = "".join(
            f" {name}={value}"
            for name in ("delivery", "session")
            if (value := getattr(record, name, None))
        )
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} "
            f"{record.name}:{bound} {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("delivery", "session"):
            if value := getattr(record, name, None):
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
