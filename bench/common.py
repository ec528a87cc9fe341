"""What the benchmarks share: the code under test, CPU counters, the server command,
PostgreSQL schema clean-up and percentiles. Imported by every bench script (run as
scripts)."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process (all its threads), from /proc; 0 where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot, from /proc/stat; 0 where unavailable."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS


def threadline_command(override: str | None = None) -> list[str]:
    """How to run `threadline`: --threadline when given, else this venv's script."""
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "threadline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def drop_pg_schema(schema: str) -> None:
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    except Exception as exc:
        print(f"warning: could not drop PostgreSQL schema {schema}: {exc!s:.200}")
    finally:
        engine.dispose()


def code_state() -> str:
    """Which Threadline code is measured: the commit, and whether bot/ or handlers/ differ."""
    git = shutil.which("git")
    if git is None:
        return "git not found"
    repo = str(HERE.parent)
    try:
        head = subprocess.run(
            [git, "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "-C", repo, "status", "--porcelain", "--", "bot", "handlers"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    changed = len(dirty.splitlines())
    return f"commit {head}" + (
        f" + {changed} uncommitted file(s) in bot/, handlers/" if changed else ""
    )


def percentile_ms(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of durations in seconds, in milliseconds (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] * 1000


@contextmanager
def scratch_database(kind: str, workdir: Path, tag: str, backlog: int) -> Iterator[str]:
    """A database URL for one measurement: a SQLite file in `workdir`, or a PostgreSQL
    schema of its own (`bench_<tag>_...`) dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{tag}-{backlog}.db'}"
        return
    schema = f"bench_{tag}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        drop_pg_schema(schema)


def launcher_main(install: Callable[[], None], show: Callable[[str, float], None]) -> None:
    """The `__main__` of a script that runs `threadline` with something measured
    (sql_count.py, hop_cpu.py): `--show FILE [--per N]` prints what a run wrote, divided
    by N; anything else installs the measurement and runs threadline with the arguments."""
    if sys.argv[1:2] == ["--show"]:
        per = float(sys.argv[sys.argv.index("--per") + 1]) if "--per" in sys.argv else 1.0
        show(sys.argv[2], per)
        return
    install()
    from bot.cli import main

    sys.argv[0] = "threadline"
    sys.exit(main())
