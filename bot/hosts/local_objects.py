"""Git objects of the playground's commits, computed in Python.

A playground commit's id is the git id of the commit its rows describe: a tree of its
files (all plain, mode 100644), its parent, its message, and its author as both author
and committer at time 0, so the same rows always name the same commit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_UNSAFE = re.compile(r"[<>\n\r\0]")


def object_id(kind: str, body: bytes) -> str:
    """A git object's id: SHA-1 over "<kind> <size>\\0" and the body."""
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body, usedforsecurity=False).hexdigest()


def _tree(files: Mapping[str, bytes], objects: list[tuple[str, bytes]]) -> str:
    """The id of the tree holding `files` (path -> bytes); its objects appended, subtrees
    and blobs before the tree that names them."""
    entries: list[tuple[bytes, bytes]] = []  # (sort key, entry)
    below: dict[str, dict[str, bytes]] = {}
    for path, content in files.items():
        head, sep, rest = path.partition("/")
        if sep:
            below.setdefault(head, {})[rest] = content
            continue
        objects.append(("blob", content))
        sha = object_id("blob", content)
        entries.append((head.encode(), b"100644 " + head.encode() + b"\0" + bytes.fromhex(sha)))
    for name, inner in below.items():
        sha = _tree(inner, objects)
        key = (name + "/").encode()  # git orders a subtree as if its name ended in "/"
        entries.append((key, b"40000 " + name.encode() + b"\0" + bytes.fromhex(sha)))
    body = b"".join(entry for _, entry in sorted(entries))
    objects.append(("tree", body))
    return object_id("tree", body)


def commit_objects(
    files: Mapping[str, str], *, parent: str | None, message: str, author: str
) -> tuple[str, list[tuple[str, bytes]]]:
    """The commit id of a playground commit and its objects (kind, body), commit last."""
    objects: list[tuple[str, bytes]] = []
    tree = _tree({path: text.encode("utf-8") for path, text in files.items()}, objects)
    name = _UNSAFE.sub("-", author) or "playground"
    person = f"{name} <{name.replace(' ', '-')}@playground.invalid> 0 +0000"
    lines = [f"tree {tree}"]
    if parent is not None:
        lines.append(f"parent {parent}")
    lines += [f"author {person}", f"committer {person}", ""]
    text = message if message.endswith("\n") else message + "\n"
    body = ("\n".join(lines) + "\n" + text).encode("utf-8")
    objects.append(("commit", body))
    return object_id("commit", body), objects


def commit_id(files: Mapping[str, str], *, parent: str | None, message: str, author: str) -> str:
    """The git id of the commit holding `files` on `parent` (see `commit_objects`)."""
    return commit_objects(files, parent=parent, message=message, author=author)[0]
