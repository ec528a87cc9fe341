"""Repository paths as checked values: one place that decides what may name a file.

A path from an agent, a comment or a diff is untrusted. `repo_path` turns it into a
`PurePosixPath` only when it is a plain relative path (no empty, `.` or `..` parts, not
absolute, no backslash, no control character), before any I/O; every tool and every host
adapter calls it, so a path that climbs out of the repository never reaches a URL, a
query or the disk. `contained` is the same check for a directory on disk: the path is
joined to the root and resolved (a symlink counts as its target) and must stay inside.
The `quote_*` functions take only checked paths, encoded the way each host's API wants.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote

MAX_PATH_CHARS = 4096


class UnsafePath(ValueError):
    """A path that is not a plain relative path inside the repository (or root)."""


def _problem(text: str) -> str | None:
    if not text:
        return "the path is empty"
    if len(text) > MAX_PATH_CHARS:
        return f"the path is longer than {MAX_PATH_CHARS} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "the path holds a control character"
    if "\\" in text:
        return "the path holds a backslash (use '/' between directories)"
    if text.startswith("/"):
        return "the path is absolute; give it relative to the repository's root"
    for part in text.split("/"):
        if part == "":
            return "the path has an empty part (a doubled or trailing '/')"
        if part in (".", ".."):
            return f"the path has a {part!r} part; name the file from the repository's root"
    return None


def repo_path(text: object) -> PurePosixPath:
    """`text` as a repository-relative path, or UnsafePath saying what is wrong with it."""
    if not isinstance(text, str):
        raise UnsafePath(f"a path is text, not {type(text).__name__}")
    problem = _problem(text)
    if problem is not None:
        raise UnsafePath(f"{problem}: {text[:200]!r}")
    return PurePosixPath(text)


def path_problem(text: object) -> str | None:
    """Why `text` is not a plain repository-relative path (without repeating it), or None."""
    if not isinstance(text, str):
        return f"a path is text, not {type(text).__name__}"
    return _problem(text)


def contained(root: Path, rel: str | PurePosixPath) -> Path:
    """`rel` under directory `root` on disk, resolved (symlinks followed): UnsafePath when
    it is not a plain relative path or its target lies outside `root`."""
    checked = repo_path(str(rel) if isinstance(rel, PurePosixPath) else rel)
    base = root.resolve()
    target = base.joinpath(*checked.parts).resolve()
    if not target.is_relative_to(base):
        raise UnsafePath(f"{str(checked)!r} leads outside {base} (through a symbolic link)")
    return target


def quote_segments(path: PurePosixPath) -> str:
    """A checked path for a URL path: each part percent-encoded, the '/' between kept
    (GitHub's contents API: /repos/{owner}/{repo}/contents/{path})."""
    return "/".join(quote(part, safe="") for part in path.parts)


def quote_whole(path: PurePosixPath) -> str:
    """A checked path as one URL segment, '/' encoded as %2F too (GitLab's repository
    files API: https://docs.gitlab.com/api/repository_files/, `file_path` URL-encoded)."""
    return quote(str(path), safe="")
