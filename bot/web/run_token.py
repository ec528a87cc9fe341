"""The sign-in token `serve` makes when none is configured, kept so that signing in
survives a restart.

With neither THREADLINE_OPERATOR_TOKEN nor THREADLINE_VIEWER_TOKEN set, `serve` makes an
operator token and writes it into the env file the settings came from (./threadline.env
by default), created owner-only (0600) and swapped in whole (bot.envfile). The next run
reads it back like any other setting. The cookie-signing and CSRF keys are derived from
that token (bot.web.auth.Keys), so keeping the token keeps them: a browser that signed
in stays signed in across restarts, and changing or removing the token in the file still
signs everyone out, as documented. Where the file cannot be written (a read-only folder,
a mounted secret), the token holds for this run only and a warning says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from bot.config import ConfigError, Settings, parse_env_file
from bot.envfile import env_file_of, merge_env, writable_problem, write_private

log = logging.getLogger(__name__)

OPERATOR_VARIABLE = "THREADLINE_OPERATOR_TOKEN"
NOTE = "the inspector's sign-in token, made by `threadline serve` and kept for the next run"


@dataclasses.dataclass(frozen=True)
class RunToken:
    """What `settle_operator_token` did: the settings to serve with, the token to print
    a sign-in link for (None: a configured one, never printed) and where it was kept."""

    settings: Settings
    token: str | None
    kept_in: Path | None = None


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder`, so two servers starting at once on the same
    env file agree on one token instead of each writing its own."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _kept_token(env_file: Path) -> tuple[str, str | None]:
    """The env file's text and the operator token it already holds (None: none)."""
    if not env_file.exists():
        return "", None
    text = env_file.read_text(encoding="utf-8")
    try:
        values = parse_env_file(text, str(env_file))
    except ConfigError:
        return text, None  # load_settings read it a moment ago; a race changed it
    return text, values.get(OPERATOR_VARIABLE, "").strip() or None


def settle_operator_token(settings: Settings) -> RunToken:
    """Settings with an operator token: the configured ones unchanged, else a new token,
    kept in the env file when it can be written (owner-only)."""
    if settings.operator_token or settings.viewer_token:
        return RunToken(settings, None)
    env_file = env_file_of(settings)
    problem = writable_problem(env_file)
    token = None
    if problem is None:
        try:
            with _folder_locked(env_file.parent):
                text, token = _kept_token(env_file)
                if token is None:
                    token = secrets.token_urlsafe(24)
                    merged = merge_env(text, {OPERATOR_VARIABLE: token}, note=NOTE)
                    write_private(env_file, merged, replace=True)
        except (OSError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "strerror", None) or type(exc).__name__
            token = None
    if token is None:
        log.warning(
            "the sign-in token cannot be kept in %s (%s): it holds for this run only, "
            "and browsers must sign in again after a restart",
            env_file,
            problem,
        )
        token = secrets.token_urlsafe(24)
        return RunToken(dataclasses.replace(settings, operator_token=token), token)
    log.info("sign-in token kept in %s (%s), owner-only", env_file, OPERATOR_VARIABLE)
    return RunToken(dataclasses.replace(settings, operator_token=token), token, env_file)


def login_link(url: str, token: str) -> str:
    """The sign-in link for a generated token; a wildcard listen address becomes loopback."""
    for wildcard in ("://0.0.0.0:", "://[::]:", "://:::"):
        url = url.replace(wildcard, "://127.0.0.1:")
    return f"{url}/login?{urlencode({'token': token})}"


def print_login_link(url: str, token: str | None) -> None:
    """Print (stdout, once) where to sign in with the token this run made."""
    if token is not None:
        print(f"Open {login_link(url, token)}", flush=True)
