"""Run `threadline` with the CPU of every thread hop added up, by function (a bench helper).

    .venv/bin/python bench/sessions.py --backends sqlite --sessions 1 \
        --threadline ".venv/bin/python bench/hop_cpu.py"
    .venv/bin/python bench/hop_cpu.py --show hop-cpu.json --per 203

Wraps `asyncio.to_thread` before the server starts: each call's function is timed with its
thread's CPU clock (`time.thread_time`) and its wall clock, and counted. At exit the
figures go as JSON to $BENCH_HOP_CPU (default: hop-cpu-<pid>.json in the working
directory), with the main thread's whole CPU time (start-up included). `--show FILE
--per N` prints them divided by N (for example the triggers the server handled: the
warm-up ones too). What it shows: which store calls a trigger makes, how often, and
what each costs inside the server, where threads compete for the GIL (bench/README.md,
session 11); the wrapper costs a little CPU of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from common import launcher_main

CPU: Counter[str] = Counter()
WALL: Counter[str] = Counter()
CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


def _name(func: Callable[..., Any]) -> str:
    inner = getattr(func, "func", func)  # a functools.partial
    return str(getattr(inner, "__qualname__", repr(inner)))


def _install() -> None:
    original = asyncio.to_thread

    async def to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        name = _name(func)

        def timed() -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                with _LOCK:
                    CPU[name] += time.thread_time() - cpu
                    WALL[name] += time.perf_counter() - wall
                    CALLS[name] += 1

        return await original(timed)

    asyncio.to_thread = to_thread  # the server's modules call it through the module
    path = os.environ.get("BENCH_HOP_CPU", f"hop-cpu-{os.getpid()}.json")

    def _dump() -> None:
        with open(path, "w") as fh:
            figures = {"cpu": CPU, "wall": WALL, "calls": CALLS}
            json.dump({**figures, "main_thread_cpu": time.thread_time()}, fh)

    atexit.register(_dump)


def _show(path: str, per: float) -> None:
    with open(path) as fh:
        data = json.load(fh)
    cpu, wall, calls = Counter(data["cpu"]), data["wall"], data["calls"]
    print(
        f"in thread hops {sum(cpu.values()) * 1000 / per:.1f} ms, {sum(calls.values()) / per:.1f}"
        f" hops; main thread {data['main_thread_cpu'] * 1000 / per:.1f} ms (start-up included)"
    )
    print(f"{'ms CPU':>8} {'calls':>7} {'us CPU/call':>12} {'us wall/call':>13}  function")
    for name, spent in cpu.most_common(40):
        n = calls[name]
        print(
            f"{spent * 1000 / per:8.2f} {n / per:7.2f} {spent * 1e6 / n:12.0f}"
            f" {wall[name] * 1e6 / n:13.0f}  {name}"
        )


if __name__ == "__main__":
    launcher_main(_install, _show)
