"""Real git repositories served over loopback HTTP by `git http-backend` (CGI).

The fake hosts' repositories: a test makes a repository under `root`, and the server
answers git's smart HTTP protocol for it (bot/git_backend.py, as the playground does), only with the one `Authorization` header it
expects (401 otherwise). Every header it was sent is kept, so a test can see that the
token travelled as a header and only to this origin.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bot.git_backend import http_backend
from bot.hosts.local_objects import object_id

GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


GIT = shutil.which("git") or "git"


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    done = subprocess.run(
        [GIT, *args], cwd=cwd, env=GIT_ENV, capture_output=True, input=data, check=True
    )
    return done.stdout.decode()


def make_repo(root: Path, name: str, files: dict[str, str], branch: str = "main") -> Path:
    """A bare repository `root/name.git` with one commit holding `files` on `branch`."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git(work, "init", "--quiet", "-b", branch)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "first")
    bare = root / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(root, "clone", "--quiet", "--bare", str(work), str(bare))
    return bare


git_hash = object_id  # a git object's name, as the playground computes it


def tree_body(entries: Iterable[dict[str, str]]) -> bytes:
    """A tree object's body as git writes it: entries ordered by name (a subtree's name
    compared as if it ended in "/"), each "<mode> <name>\\0<20-byte sha>"."""

    def order(entry: dict[str, str]) -> bytes:
        return (entry["path"] + ("/" if entry["type"] == "tree" else "")).encode()

    return b"".join(
        f"{'40000' if e['type'] == 'tree' else e['mode']} {e['path']}".encode()
        + b"\0"
        + bytes.fromhex(e["sha"])
        for e in sorted(entries, key=order)
    )


def flat_objects(
    files: dict[str, bytes], modes: dict[str, str]
) -> tuple[str, list[tuple[str, bytes]]]:
    """The root tree's name and every object (blobs, trees) holding `files` (path ->
    bytes), each path with its mode from `modes` (100644 when absent)."""
    objects: list[tuple[str, bytes]] = []

    def tree(items: dict[str, bytes], prefix: str) -> str:
        entries: list[dict[str, str]] = []
        below: dict[str, dict[str, bytes]] = {}
        for path, content in items.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = content
                continue
            objects.append(("blob", content))
            mode = modes.get(prefix + path, "100644")
            entries.append(
                {"path": path, "mode": mode, "type": "blob", "sha": git_hash("blob", content)}
            )
        for name, inner in below.items():
            sub = tree(inner, prefix + name + "/")
            entries.append({"path": name, "mode": "040000", "type": "tree", "sha": sub})
        body = tree_body(entries)
        objects.append(("tree", body))
        return git_hash("tree", body)

    return tree(files, ""), objects


def write_bare(bare: Path, objects: Iterable[tuple[str, bytes]], refs: dict[str, str]) -> Path:
    """A bare repository at `bare` holding `objects` (kind, body) and `refs`."""
    bare.mkdir(parents=True, exist_ok=True)
    git(bare, "init", "--quiet", "--bare")
    for kind, body in dict.fromkeys(objects):
        git(bare, "hash-object", "-t", kind, "-w", "--literally", "--stdin", data=body)
    for ref, sha in refs.items():
        git(bare, "update-ref", ref, sha)
    return bare


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


@dataclass
class GitServer:
    root: Path
    authorization: str
    url: str = ""
    seen: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization")
        self.seen.append(given)
        if given != self.authorization:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        answer = await http_backend(
            self.root,
            method=request.method,
            path=request.path,
            query=request.query_string,
            content_type=request.headers.get("Content-Type", ""),
            body=await request.read(),
            env=GIT_ENV,
        )
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


@asynccontextmanager
async def serve_git(root: Path, authorization: str) -> AsyncIterator[GitServer]:
    server = GitServer(root, authorization)
    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
