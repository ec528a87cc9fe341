"""A workspace's changes as a change set: each file's bytes and mode, and the diff shown.

Text files become text entries with a unified diff; a file that is not UTF-8 text (or
holds a NUL byte) travels as base64 and shows as a binary line; a symbolic link is its
target with mode 120000; an executable keeps mode 100755. A mode is recorded only when
it says something (not a plain file, or a file whose mode changed), so a change set
made of plain text files is what it always was.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence

from bot.diffs import FileStat, file_patch, file_stat
from bot.sessions.approvals import FileContent
from bot.workspaces.tools import NO_FILE, ChangedFile

REGULAR = "100644"


def as_text(data: bytes | None) -> str | None:
    """UTF-8 text without a NUL byte, else None."""
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _mode(item: ChangedFile) -> str | None:
    if item.mode is None:
        return None
    if item.mode != REGULAR or item.old_mode not in (REGULAR, NO_FILE):
        return item.mode
    return None


def _base_mode(item: ChangedFile) -> str | None:
    """The mode at the base when it was not a plain file (an approval that takes the
    file back to the base needs it)."""
    return None if item.old_mode == REGULAR else item.old_mode


def _header(item: ChangedFile) -> str:
    head = f"diff --git a/{item.path} b/{item.path}\n"
    if item.mode is None:
        return head + f"deleted file mode {item.old_mode}\n"
    if item.old_mode == NO_FILE:
        return head + f"new file mode {item.mode}\n"
    if item.old_mode != item.mode:
        return head + f"old mode {item.old_mode}\nnew mode {item.mode}\n"
    return head


async def from_workspace(
    changed: Sequence[ChangedFile], before: Callable[[str], Awaitable[bytes | None]]
) -> tuple[list[FileContent], str]:
    """The change set's files and the diff to show; `before(path)` is the file at the base
    the change set is proposed against (None: not there)."""
    files: list[FileContent] = []
    shown = []
    for item in changed:
        old = await before(item.path)
        if item.data is not None and item.data == old and _mode(item) is None:
            continue  # as it is at the base already
        mode = _mode(item)
        old_text, new_text = as_text(old), as_text(item.data)
        binary = item.data is not None and new_text is None
        if binary or (old is not None and old_text is None):
            assert item.data is not None or old is not None
            content = None if item.data is None else base64.b64encode(item.data).decode("ascii")
            stat = FileStat(item.path, "binary")
            files.append(
                FileContent(
                    item.path,
                    content,
                    stat,
                    mode,
                    binary=content is not None,
                    base_mode=_base_mode(item),
                )
            )
            shown.append(
                _header(item) + f"Binary files a/{item.path} and b/{item.path} differ "
                f"({0 if old is None else len(old)} -> "
                f"{0 if item.data is None else len(item.data)} bytes)\n"
            )
            continue
        stat = file_stat(item.path, old_text, new_text)
        files.append(FileContent(item.path, new_text, stat, mode, base_mode=_base_mode(item)))
        shown.append(_header(item) + file_patch(item.path, old_text, new_text))
    return files, "".join(shown)
