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
