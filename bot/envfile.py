"""Writing settings into an env file that bot.config reads: merged, owner-only, atomic.

`merge_env` is pure: it sets or removes variables and keeps every other line, comments
included, as it was. `write_private` creates files 0600 from the start (through
os.open's mode, never a chmod afterwards, so no moment exists where another user could
open them) and swaps them in whole, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from bot.config import DEFAULT_ENV_FILE, Settings

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_key(line: str) -> str | None:
    """The variable a line sets, read as bot.config.parse_env_file reads it (None: none)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    key, sep, _ = stripped.removeprefix("export ").lstrip().partition("=")
    return key.strip() if sep else None


def env_value(value: str) -> str:
    """`value` written so that bot.config.parse_env_file reads back exactly `value`.

    The parser strips whitespace around a value and then one pair of matching quotes; it
    knows no escapes, so a value is quoted only when it needs protecting from that."""
    if "\n" in value or "\r" in value:
        raise ValueError("a value with a line break cannot go on one env file line")
    bare = value == value.strip() and not (
        len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
    )
    if bare and value:
        return value
    quote = "'" if '"' in value[:1] + value[-1:] else '"'
    return f"{quote}{value}{quote}"


def merge_env(text: str, updates: Mapping[str, str | None], *, note: str = "") -> str:
    """`text` with each variable of `updates` set (in place where it was, else appended
    under `note`) or, for None, removed; every other line is kept as it was."""
    for name in updates:
        if not _ENV_KEY.fullmatch(name):
            raise ValueError(f"{name!r} is not a variable name")
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        key = env_key(line)
        if key is None or key not in updates:
            out.append(line)
            continue
        new = updates[key]
        if new is not None and key not in done:
            export = "export " if line.strip().startswith("export ") else ""
            out.append(f"{export}{key}={env_value(new)}")
        done.add(key)  # a later line would win over ours: drop it
    added = [(k, v) for k, v in updates.items() if v is not None and k not in done]
    if added:
        if out and out[-1].strip():
            out.append("")
        if note:
            out.append(f"# {note} ({time.strftime('%Y-%m-%d %H:%M')})")
        out.extend(f"{key}={env_value(value)}" for key, value in added)
    return "\n".join(out) + "\n" if out else ""


def write_private(path: Path, data: str, *, replace: bool) -> None:
    """Write `data` to `path` through a new file created 0600 in the same folder.

    `replace`: swap it in atomically (the old file, whatever its mode, is gone); else
    raise FileExistsError rather than touch an existing `path`."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if `path` exists, where a rename would overwrite
    finally:
        temp.unlink(missing_ok=True)


def env_file_of(settings: Settings) -> Path:
    """The env file the settings came from, or the one read by default (./threadline.env)."""
    return Path(settings.source_file or DEFAULT_ENV_FILE).expanduser().resolve()


def writable_problem(env_file: Path) -> str | None:
    """Why the env file (and a file beside it) cannot be written, or None."""
    folder = env_file.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"Threadline may not create files in {folder}"
    if env_file.exists() and not os.access(env_file, os.R_OK):
        return f"Threadline may not read {env_file}"
    return None
