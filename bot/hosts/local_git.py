"""The playground's repositories as real git: commit ids, and a bare repository to serve.

The database stays the playground's truth (its pages, reviews and diffs read the files
from there, and every process sees the same rows). A playground commit's id is the git
id of the commit those rows describe: a tree of its files (all plain, mode 100644), its
parent, its message, and its author as both author and committer at time 0, so the same
rows always name the same commit and the store's "same call, same commit" still holds.

`GitExport` keeps a bare repository per playground repository (under the directory it
is given) in step with the database: before git is served, the commits the branches and
pull requests point at are written as loose objects (parents first, the commit last, so
a commit present means its history is too), and the refs are set. The repository is a
cache: deleting it loses nothing, the next request writes it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.hosts.local_store import PlaygroundStore

log = logging.getLogger(__name__)

GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
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


def repo_folder(root: Path, repo: str) -> Path:
    """Where the bare repository of playground repository `repo` (owner/name) is kept."""
    parts = repo.split("/")
    if len(parts) != 2 or not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts):
        raise ValueError(f"not a playground repository name: {repo!r}")
    return root / parts[0] / f"{parts[1]}.git"


class GitExport:
    """Bare repositories under `root` that mirror the playground's database."""

    def __init__(self, store: PlaygroundStore, root: Path) -> None:
        self.store = store
        self.root = root
        self._lock = threading.Lock()  # one export at a time in this process

    def sync(self, repo: str) -> Path:
        """Bring the bare repository of `repo` up to the database's refs (blocking)."""
        bare = repo_folder(self.root, repo)
        default, _ = self.store.default_branch(repo)  # the repository exists
        with self._lock:
            if not (bare / "HEAD").exists():
                bare.mkdir(parents=True, exist_ok=True)
                self._git(bare, "init", "--quiet", "--bare", "-b", "main")
            refs = self.store.git_refs(repo)
            wanted = {ref: sha for ref, sha in refs.items() if self._write(bare, repo, sha)}
            lines = "".join(f"update {ref} {sha}\n" for ref, sha in sorted(wanted.items()))
            if lines:
                self._git(bare, "update-ref", "--stdin", data=lines.encode())
            self._git(bare, "symbolic-ref", "HEAD", f"refs/heads/{default}")
        return bare

    def _write(self, bare: Path, repo: str, sha: str) -> bool:
        """Write commit `sha` and its history, parents first; False when the database's
        rows do not make that commit (a playground seeded before its ids were git's)."""
        pending: list[str] = []
        at: str | None = sha
        while at is not None and not _has(bare, at):
            pending.append(at)
            row = self.store.commit_row(repo, at)
            at = None if row is None else row.parent
        for commit in reversed(pending):
            row = self.store.commit_row(repo, commit)
            if row is None:
                log.warning("playground %s: no commit %s in the database", repo, commit)
                return False
            made, objects = commit_objects(
                row.files, parent=row.parent, message=row.message, author=row.author
            )
            if made != commit:
                log.warning(
                    "playground %s: commit %s is not a git id (seeded by an older version); "
                    "it is not served over git",
                    repo,
                    commit[:12],
                )
                return False
            for kind, body in objects:
                _store(bare, kind, body)
        return True

    def _git(self, bare: Path, *args: str, data: bytes | None = None) -> None:
        argv = [shutil.which("git", path=GIT_ENV["PATH"]) or "/usr/bin/git", *args]
        subprocess.run(argv, cwd=bare, env=GIT_ENV, input=data, capture_output=True, check=True)  # noqa: S603 (our own argv, no shell)


def _loose(bare: Path, sha: str) -> Path:
    return bare / "objects" / sha[:2] / sha[2:]


def _has(bare: Path, sha: str) -> bool:
    return _loose(bare, sha).exists()


def _store(bare: Path, kind: str, body: bytes) -> None:
    """One loose object, written whole under a temporary name then renamed."""
    sha = object_id(kind, body)
    path = _loose(bare, sha)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = zlib.compress(f"{kind} {len(body)}\0".encode() + body)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


# ------------------------------------------------------------------ access

GIT_USER = "threadline"
GIT_PATH = "/git"  # the playground serves `owner/name` at GIT_PATH/owner/name.git


def git_password(secret: str) -> str:
    """The password of the playground's git, derived from its webhook secret: whoever
    holds that secret may fetch; the secret itself never travels."""
    return hmac.new(secret.encode(), b"threadline playground git", hashlib.sha256).hexdigest()


def basic_header(secret: str) -> str:
    """The `Authorization` header value the playground's git expects."""
    pair = base64.b64encode(f"{GIT_USER}:{git_password(secret)}".encode()).decode("ascii")
    return f"Basic {pair}"


def clone_url(base_url: str, repo: str) -> str:
    return f"{base_url.rstrip('/')}{GIT_PATH}/{repo}.git"
