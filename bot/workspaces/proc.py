"""Run a program as data: an argv list, an explicit environment, a timeout, capped output.

Never a shell unless the argv asks for one. The program runs in a new session, so a
timeout kills its whole process group. Output (stdout and stderr together) keeps its
head and its tail; what is between them is replaced by a marker saying how much.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CUT_MARKER = "\n[... {cut} bytes of output cut; {total} in all ...]\n"
READ_CHUNK = 65536


@dataclass(frozen=True)
class Completed:
    exit_code: int | None  # None: killed at the time limit
    output: str
    total_bytes: int
    seconds: float
    timed_out: bool = False
    cut: bool = False  # the middle of the output was left out


class _Capped:
    """Keeps the first `head` and last `tail` bytes of a stream, counting the rest."""

    def __init__(self, most: int) -> None:
        self.head_most = most // 2
        self.tail_most = most - self.head_most
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_most - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_most:
                del self.tail[: len(self.tail) - self.tail_most]

    def text(self) -> str:
        kept = len(self.head) + len(self.tail)
        middle = ""
        if self.total > kept:
            middle = CUT_MARKER.format(cut=self.total - kept, total=self.total)
        return (
            self.head.decode("utf-8", errors="replace")
            + middle
            + self.tail.decode("utf-8", errors="replace")
        )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    time_limit: float,
    max_output: int = 64_000,
    stdin: bytes | None = None,
    user: int | None = None,
    group: int | None = None,
    on_start: Callable[[int], object] | None = None,
    on_output: Callable[[bytes], Awaitable[None]] | None = None,
) -> Completed:
    """Run `argv` to its end or to `time_limit` seconds (then its process group is killed).

    `on_output` gets every chunk as it is read (all of it, not only what is kept).
    """
    started = time.monotonic()
    ids: dict[str, object] = {}
    if user is not None:
        ids = {"user": user, "group": group if group is not None else user, "extra_groups": []}
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        **ids,  # type: ignore[arg-type]
    )
    if on_start is not None:
        on_start(process.pid)
    capped = _Capped(max_output)

    async def pump() -> None:
        assert process.stdout is not None
        if stdin is not None and process.stdin is not None:
            process.stdin.write(stdin)
            await process.stdin.drain()
            process.stdin.close()
        while chunk := await process.stdout.read(READ_CHUNK):
            capped.add(chunk)
            if on_output is not None:
                await on_output(chunk)
        await process.wait()

    timed_out = False
    try:
        await asyncio.wait_for(pump(), time_limit)
    except TimeoutError:
        timed_out = True
    finally:
        # Whatever happened (time limit, a cancelled turn), nothing it started outlives it.
        _kill_group(process.pid)
        if process.returncode is None:
            await process.wait()
    return Completed(
        None if timed_out else process.returncode,
        capped.text(),
        capped.total,
        time.monotonic() - started,
        timed_out,
        capped.total > len(capped.head) + len(capped.tail),
    )
