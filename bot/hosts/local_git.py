"""The playground's repositories as real git: a bare repository to serve, and its password.

The database stays the playground's truth (its pages, reviews and diffs read the files
from there, and every process sees the same rows); a playground commit's id is the git
id of the commit those rows describe (bot/hosts/local_objects.py).

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
from pathlib import Path

from bot.git_backend import BASE_ENV
from bot.hosts.local_objects import commit_objects, object_id
from bot.hosts.local_store import PlaygroundStore

log = logging.getLogger(__name__)

GIT_ENV = {**BASE_ENV, "LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0"}
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


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
