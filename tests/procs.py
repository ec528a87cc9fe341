"""Our CLI run as a real subprocess, with its output kept in a log file to wait on."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests import payloads as p


class Proc:
    def __init__(
        self,
        args: list[str],
        database_url: str,
        workdir: Path,
        name: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_DATABASE_URL=database_url,
            THREADLINE_GITHUB_WEBHOOK_SECRET=p.SECRET,
            THREADLINE_PORT="0",
            THREADLINE_WORKER_LEASE_SECONDS="1",
            THREADLINE_WORKER_POLL_SECONDS="0.05",
            THREADLINE_DELIVERY_RETRY_SECONDS="0",
            THREADLINE_ORDER_HOLD_SECONDS="0",
        )
        env.update(extra_env or {})
        self.log = workdir / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_for(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text(errors="replace"))
            if found:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not seen; log:\n{self.log.read_text(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout=20)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
            self._log_file.close()
        return code


def start(
    procs: list[Proc],
    args: list[str],
    url: str,
    workdir: Path,
    name: str,
    extra_env: dict[str, str] | None = None,
) -> Proc:
    proc = Proc(args, url, workdir, name, extra_env)
    procs.append(proc)
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
