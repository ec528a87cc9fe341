"""Paths given by an agent, resolved inside a worktree or refused before any I/O."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PathError(ValueError):
    """A path that is absolute, climbs out, goes through a symlink out, or touches .git."""


def contained(root: Path, raw: object, *, write: bool = False, allow_root: bool = False) -> Path:
    """`raw` (relative, `/`-separated) as a path inside `root`, symlinks followed.

    Refused: anything not a non-empty string, absolute paths, `..` parts, NUL bytes, a
    path whose resolved target is outside `root` (a symlink counts as its target) and,
    for `write`, anything inside `.git` (the worktree's link to its mirror).
    """
    if not isinstance(raw, str) or "\0" in raw:
        raise PathError("a path is a relative text path")
    text = raw.strip()
    if not text or text == ".":
        if allow_root:
            return root.resolve()
        raise PathError("a path is needed")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("\\"):
        raise PathError(f"{text}: absolute paths are refused; give a path inside the worktree")
    if ".." in pure.parts:
        raise PathError(f"{text}: `..` is refused; give a path inside the worktree")
    base = root.resolve()
    target = (base / Path(*pure.parts)).resolve()
    if not target.is_relative_to(base):
        raise PathError(f"{text}: resolves outside the worktree")
    inside = target.relative_to(base).parts
    if write and (not inside or inside[0] == ".git" or ".git" in pure.parts):
        raise PathError(f"{text}: .git is never writable")
    return target


def relative(root: Path, path: Path) -> str:
    """`path` as the worktree-relative text an agent gives back."""
    return path.relative_to(root.resolve()).as_posix()
