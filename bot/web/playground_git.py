"""The playground's repositories over git's smart HTTP protocol, fetch only.

`GET/POST /git/<owner>/<name>.git/...` answers a clone or fetch of a playground
repository: the bare repository exported from the database (bot/hosts/local_git.py) is
brought up to date, then `git http-backend` answers (bot/git_backend.py). Workspaces
fetch the playground's threads from here like GitHub's and GitLab's, with HTTP Basic
(user `threadline`, a password derived from the playground's webhook secret) sent
through git's environment. Pushing is refused: the playground's commits are made by
approvals, through its store.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot.git_backend import http_backend, wants_push
from bot.hosts.local_git import GIT_PATH, GitExport, basic_header, repo_folder
from bot.hosts.local_store import PlaygroundError, PlaygroundStore

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Basic realm="threadline playground"'}


def install_playground_git(
    app: web.Application, store: PlaygroundStore, root: Path, secret: Callable[[], str | None]
) -> None:
    """Serve the playground's repositories, exported under `root`, to holders of the
    password derived from `secret()` (settled at startup)."""
    export = GitExport(store, root)

    async def handle(request: web.Request) -> web.StreamResponse:
        settled = secret()
        given = request.headers.get("Authorization", "")
        if settled is None:
            return web.Response(status=503, text="the playground is starting\n")
        if not hmac.compare_digest(given.encode(), basic_header(settled).encode()):
            return web.Response(status=401, headers=CHALLENGE)
        repo, sep, rest = request.match_info["path"].partition(".git/")
        try:
            repo_folder(root, repo)
        except ValueError:
            raise web.HTTPNotFound() from None
        if not sep or wants_push(rest, request.query_string):
            return web.Response(status=403, text="the playground's repositories are read-only\n")
        try:
            await asyncio.to_thread(export.sync, repo)
        except PlaygroundError as exc:
            raise web.HTTPNotFound() from exc
        except subprocess.CalledProcessError as exc:
            log.warning("playground %s: git export failed: %s", repo, exc.stderr)
            return web.Response(status=500, text="the repository could not be exported\n")
        answer = await http_backend(
            root,
            method=request.method,
            path=f"/{repo}.git/{rest}",
            query=request.query_string,
            content_type=request.headers.get("Content-Type", ""),
            body=await request.read(),
        )
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    app.router.add_route("GET", GIT_PATH + "/{path:.*}", handle)
    app.router.add_route("POST", GIT_PATH + "/{path:.*}", handle)
