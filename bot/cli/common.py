"""What every command shares: settings from the arguments, exit codes, and the database opened for one command."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from bot.config import Settings, load_settings
from bot.inbox import Inbox

if TYPE_CHECKING:
    from bot.server import Services
    from bot.sessions.store import SessionInfo, SessionStore


EXIT_CONFIG = 2
EXIT_FAILURE = 1

Command = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(env_file=args.env_file)
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "no_migrate", False):
        overrides["auto_migrate"] = False
    if getattr(args, "playground", False):
        overrides["playground"] = True
    return dataclasses.replace(settings, **overrides) if overrides else settings


def _with_services(settings: Settings, use: Callable[[Services], int]) -> int:
    """Run `use` with the services; what it prints (transcripts, sessions, deliveries)
    passes the scrubber, so no configured secret reaches the terminal."""
    from bot.server import open_services

    services = open_services(settings, migrate=False)
    try:
        with contextlib.redirect_stdout(_Scrubbed(sys.stdout, services.scrubber.text)):
            return use(services)
    finally:
        services.engine.dispose()


class _Scrubbed(io.TextIOBase):
    """A text stream that writes to `out` with every configured secret replaced."""

    def __init__(self, out: TextIO, clean: Callable[[str], str]) -> None:
        self._out, self._clean = out, clean

    def write(self, text: str) -> int:
        self._out.write(self._clean(text))
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def fileno(self) -> int:
        return self._out.fileno()


def _with_inbox(settings: Settings, use: Callable[[Inbox], int]) -> int:
    return _with_services(settings, lambda services: use(services.inbox))


def _with_sessions(settings: Settings, use: Callable[[SessionStore, Services], int]) -> int:
    from bot.sessions.store import SessionStore

    return _with_services(settings, lambda services: use(SessionStore(services.engine), services))


def _session_or_complain(store: SessionStore, session_id: str) -> SessionInfo | None:
    found = store.get(session_id)
    if found is None:
        print(f"no session {session_id}", file=sys.stderr)
    return found
