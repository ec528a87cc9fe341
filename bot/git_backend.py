"""Git's smart HTTP protocol answered by `git http-backend`, run as a CGI program.

One request: its method, path, query and body become the CGI environment and standard
input of a `git http-backend` subprocess (awaited, so the event loop is never blocked);
its output is a CGI answer, a header block then the body. Used by the playground's git
route and by the tests' fake GitHub and GitLab.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

BACKEND_SECONDS = 120.0

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@dataclass(frozen=True)
class BackendAnswer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_cgi(out: bytes) -> BackendAnswer:
    """A CGI program's output as status, headers and body (`Status:` sets the status)."""
    head, _, payload = out.partition(b"\r\n\r\n")
    status = 200
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name] = value.strip()
    return BackendAnswer(status, headers, payload)


def wants_push(path: str, query: str) -> bool:
    """A request of the push side of the protocol (git-receive-pack)."""
    return path.endswith("/git-receive-pack") or "service=git-receive-pack" in query


async def http_backend(
    root: Path,
    *,
    method: str,
    path: str,
    query: str,
    content_type: str,
    body: bytes,
    env: Mapping[str, str] | None = None,
    time_limit: float = BACKEND_SECONDS,
) -> BackendAnswer:
    """Answer one smart HTTP request for the repositories under `root` (every one of them
    exported: the caller decides who may ask). `path` is the repository's path under
    `root` followed by git's own (`/info/refs`, `/git-upload-pack`, ...)."""
    cgi = {
        **BASE_ENV,
        **(env or {}),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
    }
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        env=cgi,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(body), time_limit)
    except TimeoutError:
        return BackendAnswer(504, body=b"git http-backend took too long\n")
    finally:
        if proc.returncode is None:  # timed out, or the request was cancelled
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return parse_cgi(out)
