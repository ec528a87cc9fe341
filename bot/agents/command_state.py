"""A CLI coding agent's own session records, carried with the session across machines.

Claude Code keeps a session under `~/.claude/projects/<cwd>/<id>.jsonl` and Codex under
`~/.codex/sessions/.../rollout-...-<id>.jsonl`; `--resume <id>` / `exec resume <id>` read
them back. The CLI's home is per session on the worker that ran it, so after a
take-over (the worker died, another one rebuilt the worktree from the stored diff) the
records are not there. After each run the adapter's record folders are packed (regular
files only, size-capped) and remembered with the CLI's session id in the transcript;
a worker whose home lacks them unpacks them before resuming.

Unpacking is done with tarfile's `data` filter and only into the adapter's folders: the
archive was made from files a sandboxed program wrote, so it is treated as hostile (no
absolute paths, `..`, links or device files get out of the home).
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

MAX_STATE_BYTES = 4 * 1024 * 1024  # the files packed, before compression


def present(home: Path, folders: Sequence[str]) -> bool:
    """Whether the home holds any of the adapter's record folders already."""
    return any((home / folder).is_dir() for folder in folders)


def pack(home: Path, folders: Sequence[str]) -> str | None:
    """The record folders' regular files as base64 of a tar.gz; None when there are none
    or they exceed MAX_STATE_BYTES (the session then cannot resume on another machine)."""
    files: list[tuple[Path, str]] = []
    total = 0
    for folder in folders:
        top = home / folder
        if top.is_symlink() or not top.is_dir():
            continue
        for where, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if not (Path(where) / d).is_symlink()]
            for name in sorted(names):
                path = Path(where) / name
                if path.is_symlink() or not path.is_file():
                    continue
                total += path.stat().st_size
                if total > MAX_STATE_BYTES:
                    return None
                files.append((path, path.relative_to(home).as_posix()))
    if not files:
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, name in files:
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack(home: Path, packed: str, folders: Sequence[str], owner: int | None) -> int:
    """Put the packed records back under `home`; the number of files. Members outside
    the adapter's folders, and anything but regular files, are skipped."""
    raw = base64.b64decode(packed, validate=True)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        for member in archive.getmembers():
            inside = any(member.name.startswith(folder.rstrip("/") + "/") for folder in folders)
            if not member.isfile() or not inside:
                continue
            archive.extract(member, home, filter="data")
            count += 1
    if owner is not None:
        for folder in folders:
            for where, _, names in os.walk(home / folder):
                os.lchown(where, owner, owner)
                for name in names:
                    os.lchown(os.path.join(where, name), owner, owner)
    return count
