"""Unified diffs, with no I/O: made from two sets of files, and read back into numbered lines."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field


def file_patch(path: str, before: str | None, after: str | None) -> str:
    """The unified diff of one file, as `git diff` prints it (without the `diff --git` line)."""
    old = [] if before is None else before.splitlines(keepends=True)
    new = [] if after is None else after.splitlines(keepends=True)
    lines = difflib.unified_diff(
        old,
        new,
        fromfile="/dev/null" if before is None else f"a/{path}",
        tofile="/dev/null" if after is None else f"b/{path}",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class FileStat:
    """One file's line of a diffstat."""

    path: str
    change: str  # new | deleted | modified | binary
    added: int = 0
    removed: int = 0


def file_stat(path: str, before: str | None, after: str | None) -> FileStat:
    """How a file changes from `before` to `after` (None: absent), in lines added and
    removed; a file with a NUL byte on either side is binary, its lines not counted."""
    if (before is not None and "\0" in before) or (after is not None and "\0" in after):
        return FileStat(path, "binary")
    change = "new" if before is None else "deleted" if after is None else "modified"
    body = file_patch(path, before, after).splitlines()[2:]  # after the ---/+++ header
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return FileStat(path, change, added, removed)


def unified_diff(base: dict[str, str], head: dict[str, str]) -> str:
    """A git-style diff from `base` to `head`, file by file in path order."""
    parts = []
    for path in sorted(set(base) | set(head)):
        before, after = base.get(path), head.get(path)
        if before == after:
            continue
        header = f"diff --git a/{path} b/{path}\n"
        if before is None:
            header += "new file mode 100644\n"
        elif after is None:
            header += "deleted file mode 100644\n"
        parts.append(header + file_patch(path, before, after))
    return "".join(parts)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")


@dataclass(frozen=True)
class DiffLine:
    kind: str  # context | add | del | hunk
    text: str
    old: int | None = None  # line number in the old file
    new: int | None = None  # line number in the new file


@dataclass
class DiffFile:
    path: str
    status: str  # added | modified | removed
    lines: list[DiffLine] = field(default_factory=list)

    @property
    def additions(self) -> int:
        return sum(1 for line in self.lines if line.kind == "add")

    @property
    def deletions(self) -> int:
        return sum(1 for line in self.lines if line.kind == "del")

    def has_line(self, line: int, side: str) -> bool:
        """Whether a review comment may sit on `line` of this file's diff (GitHub's rule)."""
        if side == "LEFT":
            return any(d.old == line for d in self.lines if d.kind in ("context", "del"))
        return any(d.new == line for d in self.lines if d.kind in ("context", "add"))


def parse_diff(diff: str) -> list[DiffFile]:
    """Split a git-style unified diff into files and numbered lines."""
    files: list[DiffFile] = []
    current: DiffFile | None = None
    old = new = 0
    for raw in diff.splitlines():
        if raw.startswith("diff --git "):
            path = raw.split(" b/", 1)[-1]
            current = DiffFile(path, "modified")
            files.append(current)
            continue
        if current is None:
            continue
        if raw.startswith("new file mode"):
            current.status = "added"
        elif raw.startswith("deleted file mode"):
            current.status = "removed"
        elif raw.startswith(("--- ", "+++ ")):
            continue
        elif (hunk := _HUNK.match(raw)) is not None:
            old, new = int(hunk.group(1)), int(hunk.group(3))
            current.lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            current.lines.append(DiffLine("add", raw[1:], new=new))
            new += 1
        elif raw.startswith("-"):
            current.lines.append(DiffLine("del", raw[1:], old=old))
            old += 1
        elif raw.startswith("\\"):
            continue  # "\ No newline at end of file"
        else:
            current.lines.append(DiffLine("context", raw[1:], old=old, new=new))
            old += 1
            new += 1
    return files


class PatchError(ValueError):
    """A unified diff that cannot be applied to the files it names."""


_FILE_OLD = re.compile(r"^--- (?:a/)?(\S+)")
_FILE_NEW = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


def _patch_one(path: str, text: str | None, hunks: list[list[str]]) -> str | None:
    """Apply one file's hunks; each hunk's context and removed lines must be found in
    order (near the line the hunk names, else anywhere after the previous hunk)."""
    lines = [] if text is None else text.splitlines(keepends=True)
    result: list[str] = []
    at = 0  # next line of `lines` not yet copied
    for hunk in hunks:
        header = _HUNK.match(hunk[0])
        assert header is not None
        old = [h[1:] for h in hunk[1:] if h[:1] in (" ", "-")]
        new = [h[1:] for h in hunk[1:] if h[:1] in (" ", "+")]
        wanted = max(int(header.group(1)) - 1, 0)
        plain = [line.rstrip("\n") for line in lines]
        found = None
        for start in [wanted, *range(at, len(lines) + 1)]:
            if start >= at and plain[start : start + len(old)] == old:
                found = start
                break
        if found is None:
            raise PatchError(f"{path}: a hunk ({hunk[0].strip()}) does not match the file")
        result += lines[at:found]
        result += [line + "\n" for line in new]
        at = found + len(old)
    result += lines[at:]
    if not result and hunks and all(h[:1] != "+" for hunk in hunks for h in hunk[1:]):
        return None  # every line removed by a deletion diff
    return "".join(result)


def diff_paths(diff: str) -> list[str]:
    """The files a unified diff changes (old names of renamed or deleted ones), in order."""
    found: list[str] = []
    for raw in diff.splitlines():
        match = _FILE_OLD.match(raw) or _FILE_NEW.match(raw)
        if match is not None and match.group(1) != "/dev/null" and match.group(1) not in found:
            found.append(match.group(1))
    return found


def apply_diff(diff: str, read: dict[str, str | None]) -> dict[str, str | None]:
    """The new contents of the files a unified diff changes, given their old contents in
    `read` (None: the file does not exist). A deleted file maps to None."""
    files: dict[str, tuple[str | None, list[list[str]], bool]] = {}
    order: list[str] = []
    current: str | None = None
    old_path: str | None = None
    for raw in diff.splitlines():
        if raw.startswith("--- "):
            match = _FILE_OLD.match(raw)
            old_path = None if match is None or match.group(1) == "/dev/null" else match.group(1)
            continue
        if raw.startswith("+++ "):
            match = _FILE_NEW.match(raw)
            new_path = None if match is None or match.group(1) == "/dev/null" else match.group(1)
            path = new_path or old_path
            if path is None:
                raise PatchError("a file header names no file")
            current = path
            files[path] = (old_path, [], new_path is None)
            order.append(path)
            continue
        if current is None:
            continue
        if _HUNK.match(raw):
            files[current][1].append([raw])
        elif raw[:1] in (" ", "+", "-") or raw == "":
            if not files[current][1]:
                raise PatchError(f"{current}: lines before the first @@ hunk header")
            files[current][1][-1].append(raw if raw else " ")
    if not files:
        raise PatchError("no file in the diff (expected --- and +++ headers, then @@ hunks)")
    changed: dict[str, str | None] = {}
    for path in order:
        source, hunks, deleted = files[path]
        old_text = read.get(source or path)
        if deleted:
            changed[path] = None
            continue
        changed[path] = _patch_one(path, old_text, hunks)
    return changed
