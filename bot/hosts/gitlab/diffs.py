"""GitLab diffs and positions: locating lines, position payloads, changed files, unified diffs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.hosts.base import (
    ChangedFile,
    DiffComment,
)
from bot.hosts.gitlab.errors import _HUNK

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- diffs and positions


@dataclass(frozen=True)
class DiffLine:
    """One line of a file's diff, with GitLab's old and new line counters at that line.

    For an added line `old` is the old file's counter there (the next old line), for a
    removed line `new` likewise; that is how GitLab builds line codes.
    """

    kind: Literal["added", "removed", "unchanged"]
    old: int
    new: int

    def position_lines(self) -> dict[str, int]:
        """`old_line` / `new_line` as https://docs.gitlab.com/api/discussions/ asks:
        only `new_line` for an added line, only `old_line` for a removed one, both for
        an unchanged one."""
        lines = {}
        if self.kind != "added":
            lines["old_line"] = self.old
        if self.kind != "removed":
            lines["new_line"] = self.new
        return lines


def locate(diff: str, side: Literal["RIGHT", "LEFT"], line: int) -> DiffLine:
    """Find `line` of the new (RIGHT) or old (LEFT) file in a file's diff hunks.

    Lines outside every hunk are unchanged; their other number follows from the lines
    the hunks before them added and removed.
    """
    old = new = 0
    shift = 0  # new minus old, for unchanged lines after the hunks read so far
    for text in diff.splitlines():
        header = _HUNK.match(text)
        if header:
            hunk_old, hunk_new = int(header[1]), int(header[2])
            if side == "RIGHT" and line < hunk_new:
                return DiffLine("unchanged", line - shift, line)
            if side == "LEFT" and line < hunk_old:
                return DiffLine("unchanged", line, line + shift)
            old, new = hunk_old, hunk_new
            continue
        if text.startswith("\\"):  # "\ No newline at end of file"
            continue
        if text.startswith("+"):
            if side == "RIGHT" and new == line:
                return DiffLine("added", old, new)
            new += 1
        elif text.startswith("-"):
            if side == "LEFT" and old == line:
                return DiffLine("removed", old, new)
            old += 1
        else:
            if (new if side == "RIGHT" else old) == line:
                return DiffLine("unchanged", old, new)
            old += 1
            new += 1
        shift = new - old
    if side == "RIGHT":
        return DiffLine("unchanged", line - shift, line)
    return DiffLine("unchanged", line, line + shift)


def line_code(path: str, line: DiffLine) -> str:
    """https://docs.gitlab.com/api/discussions/#line-code: `<SHA1 of path>_<old>_<new>`."""
    digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()
    return f"{digest}_{line.old}_{line.new}"


def position_for(
    comment: DiffComment, diff_file: Mapping[str, Any], refs: Mapping[str, str]
) -> dict[str, Any]:
    """The `position` of a new merge request discussion on `comment`'s line(s).

    https://docs.gitlab.com/api/discussions/#create-a-new-thread-in-the-merge-request-diff:
    position_type `text`, the three SHAs of the merge request's `diff_refs`, both paths,
    and for a range `line_range` with the line codes of its first and last line.
    """
    diff = str(diff_file.get("diff") or "")
    path = str(diff_file["new_path"])
    end = locate(diff, comment.side, comment.line)
    position: dict[str, Any] = {
        "position_type": "text",
        "base_sha": refs["base_sha"],
        "start_sha": refs["start_sha"],
        "head_sha": refs["head_sha"],
        "old_path": diff_file["old_path"],
        "new_path": path,
        **end.position_lines(),
    }
    if comment.start_line is not None and comment.start_line != comment.line:
        start = locate(diff, comment.side, comment.start_line)
        position["line_range"] = {
            "start": _range_end(path, start),
            "end": _range_end(path, end),
        }
    return position


def _range_end(path: str, line: DiffLine) -> dict[str, Any]:
    # "Use `new` for lines added by this commit, otherwise `old`."
    kind = "new" if line.kind == "added" else "old"
    return {"line_code": line_code(path, line), "type": kind, **line.position_lines()}


def changed_file(diff_file: Mapping[str, Any]) -> ChangedFile:
    """One entry of https://docs.gitlab.com/api/merge_requests/#list-merge-request-diffs."""
    patch = str(diff_file.get("diff") or "")
    lines = patch.splitlines()
    renamed = bool(diff_file.get("renamed_file"))
    return ChangedFile(
        path=str(diff_file["new_path"]),
        status=_file_status(diff_file),
        # GitLab's `diff` starts at the first hunk, so every +/- line is a change.
        additions=sum(1 for text in lines if text.startswith("+")),
        deletions=sum(1 for text in lines if text.startswith("-")),
        previous_path=str(diff_file["old_path"]) if renamed else None,
        patch=patch or None,
    )


def _file_status(diff_file: Mapping[str, Any]) -> str:
    if diff_file.get("new_file"):
        return "added"
    if diff_file.get("deleted_file"):
        return "removed"
    if diff_file.get("renamed_file"):
        return "renamed"
    return "modified"


def unified_diff(diff_files: Sequence[Mapping[str, Any]]) -> str:
    """A git-style unified diff from the merge request's per-file diffs.

    GitLab's `raw_diffs` endpoint would give this directly, but only from GitLab 17.9;
    the per-file `diff` fields lack the file headers, so they are written here.
    """
    return "".join(_file_diff(diff_file) for diff_file in diff_files)


def _file_diff(diff_file: Mapping[str, Any]) -> str:
    old, new = diff_file["old_path"], diff_file["new_path"]
    added, removed = bool(diff_file.get("new_file")), bool(diff_file.get("deleted_file"))
    a_mode, b_mode = diff_file.get("a_mode"), diff_file.get("b_mode")
    lines = [f"diff --git a/{old} b/{new}"]
    if added:
        lines.append(f"new file mode {b_mode or '100644'}")
    elif removed:
        lines.append(f"deleted file mode {a_mode or '100644'}")
    elif a_mode and b_mode and a_mode != b_mode:
        lines += [f"old mode {a_mode}", f"new mode {b_mode}"]
    if diff_file.get("renamed_file"):
        lines += [f"rename from {old}", f"rename to {new}"]
    body = str(diff_file.get("diff") or "")
    if body:
        lines.append("--- /dev/null" if added else f"--- a/{old}")
        lines.append("+++ /dev/null" if removed else f"+++ b/{new}")
        if not body.endswith("\n"):
            body += "\n"
    return "\n".join(lines) + "\n" + body
