"""Paths given by an agent, resolved inside a worktree or refused before any I/O.

The checks are bot.paths' (the one path helper every tool and host adapter uses); this
module adds what a worktree needs on top: the root itself for listings, and `.git`
never writable.
"""

from __future__ import annotations

from pathlib import Path

from bot import paths
from bot.paths import UnsafePath

# The workspace tools' name for a refused path; the same exception as everywhere else.
PathError = UnsafePath


def contained(root: Path, raw: object, *, write: bool = False, allow_root: bool = False) -> Path:
    """`raw` (relative, `/`-separated) as a path inside `root`, symlinks followed.

    Refused (bot.paths): anything not a plain relative path (absolute, `..` or `.` parts,
    empty parts, control characters, backslashes) and a path whose resolved target is
    outside `root` (a symlink counts as its target); for `write`, anything inside `.git`
    (the worktree's link to its mirror). `allow_root`: an empty path or `.` is the root.
    """
    text = raw.strip() if isinstance(raw, str) else raw
    if allow_root and text in ("", "."):
        return root.resolve()
    checked = paths.repo_path(text)
    target = paths.contained(root, checked)
    inside = target.relative_to(root.resolve()).parts
    if write and (not inside or inside[0] == ".git" or ".git" in checked.parts):
        raise PathError(f"{checked}: .git is never writable")
    return target


def relative(root: Path, path: Path) -> str:
    """`path` as the worktree-relative text an agent gives back."""
    return path.relative_to(root.resolve()).as_posix()
