"""Commands in a bubblewrap sandbox: what they can see, reach and use.

`bwrap_argv` is the one place the sandbox is described; `run_sandboxed` runs a command
under it with limits. The guarantees, each with a test in tests/test_sandbox.py:

- the filesystem is the worktree (read-write, or read-only by policy), the system's
  program directories read-only, a few files of /etc, and a private empty /tmp: nothing
  else of the machine (no other worktree, no Threadline database or settings);
- no network unless allowed (a new network namespace has only a loopback that is down);
- an environment built from nothing: PATH, HOME, LANG, TMPDIR and what the caller adds,
  never a THREADLINE_ variable;
- a dedicated unprivileged user id: bubblewrap is started as that user (the kernel
  exempts root from RLIMIT_NPROC, and an unprivileged user namespace maps the sandbox's
  user to the one that started it), so the process limit holds;
- limits set by `prlimit` on bubblewrap and inherited by everything in it: CPU seconds,
  address space, processes, file size, no core files;
- a wall-clock limit that kills the process group (bubblewrap's `--die-with-parent`
  and its PID namespace take the rest down), output capped at head and tail, and the
  worktree's disk use watched while the command runs.

What it does not protect against: kernel exploits, and what the command writes inside
the worktree (that is the point: it is reviewed as the diff before anything reaches
the host). Setup steps with network can reach anything the worker can.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.workspaces import proc
from bot.workspaces.store import MB, disk_use

BWRAP_PACKAGE = "bubblewrap"
NO_BWRAP = (
    "run_command is refused: the sandbox program `bwrap` is not installed (Debian/Ubuntu: "
    "apt-get install bubblewrap). An operator who accepts commands running unsandboxed "
    "sets THREADLINE_SANDBOX=none."
)
UNSANDBOXED_WARNING = (
    "THREADLINE_SANDBOX=none: agents' commands run WITHOUT a sandbox, with this worker's "
    "files and network in reach. Use it only on a throwaway machine."
)
DISK_MARKER = "\n[stopped: the worktree grew past its quota of {quota} MB]"
TIME_MARKER = "\n[stopped: the command ran past its time limit of {seconds:g} s]"
DISK_POLL_SECONDS = 0.5
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
WORKDIR = "/workspace"
# System directories a command may read (those that exist here are bound read-only).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
ETC_FILES = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/etc/python3",
    "/etc/python3.11",
)


@dataclass(frozen=True)
class Limits:
    seconds: float = 120.0  # wall clock
    cpu_seconds: int = 120
    memory_bytes: int = 2048 * MB  # address space
    processes: int = 256  # for the sandbox user, all its commands together
    file_bytes: int = 512 * MB  # largest file a command may write
    output_bytes: int = 64_000
    disk_bytes: int = 1024 * MB  # the worktree's size while the command runs


@dataclass(frozen=True)
class Policy:
    writable: bool = True
    network: bool = False
    uid: int = 64000
    env: Mapping[str, str] = field(default_factory=dict)
    # More paths to mount: (path outside, path inside, writable), e.g. a CLI agent's
    # program and its own home directory.
    binds: tuple[tuple[str, str, bool], ...] = ()


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path=SANDBOX_PATH)


def sandbox_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The command's whole environment: built from nothing; no THREADLINE_ variable."""
    env = {
        "PATH": SANDBOX_PATH,
        "HOME": "/tmp",  # noqa: S108 (the sandbox's own private tmpfs)
        "TMPDIR": "/tmp",  # noqa: S108 (the same)
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: v for k, v in extra.items() if not k.upper().startswith("THREADLINE_")})
    return env


def bwrap_argv(
    bwrap: str, worktree: Path, argv: Sequence[str], policy: Policy, cwd: str = ""
) -> list[str]:
    """bubblewrap's arguments for running `argv` in `worktree` (mounted at /workspace)."""
    args = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup namespaces
        *(["--share-net"] if policy.network else []),
        "--unshare-user",
        "--uid",
        str(policy.uid),
        "--gid",
        str(policy.uid),
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal we might have
        "--clearenv",
    ]
    for name, value in sandbox_env(policy.env).items():
        args += ["--setenv", name, value]
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    for name in ETC_FILES:
        args += ["--ro-bind-try", name, name]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108 (private)
    # The worktree's .git file names the mirror, which is not mounted: git inside the
    # sandbox sees a plain directory, never the mirror or its other worktrees.
    args += ["--bind" if policy.writable else "--ro-bind", str(worktree), WORKDIR]
    # The worktree's `.git` link stays as it is: a mount point cannot be removed or
    # replaced, so no command can plant a repository (with its own config) there.
    args += ["--ro-bind-try", str(worktree / ".git"), f"{WORKDIR}/.git"]
    for outside, inside, writable in policy.binds:
        args += ["--bind" if writable else "--ro-bind", outside, inside]
    args += ["--chdir", f"{WORKDIR}/{cwd}".rstrip("/"), "--", *argv]
    return args


def prlimit_argv(limits: Limits) -> list[str]:
    """util-linux `prlimit` setting soft and hard limits, then running what follows."""
    return [
        shutil.which("prlimit", path=SANDBOX_PATH) or "prlimit",
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
    ]


async def _watch_disk(worktree: Path, most: int, tripped: list[bool], group: list[int]) -> None:
    while True:
        await asyncio.sleep(DISK_POLL_SECONDS)
        if await asyncio.to_thread(disk_use, worktree) > most:
            tripped.append(True)
            for pid in group:
                proc._kill_group(pid)
            return


async def run_sandboxed(
    worktree: Path,
    argv: Sequence[str],
    *,
    policy: Policy,
    limits: Limits,
    cwd: str = "",
    sandbox: str = "bwrap",
    bwrap: str | None = None,
    stdin: bytes | None = None,
    on_output: Callable[[bytes], Awaitable[None]] | None = None,
) -> proc.Completed:
    """Run `argv` in the sandbox (`sandbox="none"`: directly, with the same limits).

    `bwrap` is the bubblewrap program found at start (`bwrap_path`); without it, and
    unless the operator chose `none`, nothing runs.
    """
    if sandbox == "none":
        full = [*prlimit_argv(limits), *argv]
        env = sandbox_env(policy.env) | {"HOME": policy.env.get("HOME", str(worktree))}
        where: Path | None = worktree / cwd if cwd else worktree
        user = None
    else:
        if bwrap is None:
            raise RuntimeError(NO_BWRAP)
        full = [*prlimit_argv(limits), *bwrap_argv(bwrap, worktree, argv, policy, cwd)]
        env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}
        where = Path("/")
        # As root, start bubblewrap as the sandbox user (see the module's docstring).
        user = policy.uid if os.geteuid() == 0 else None
    tripped: list[bool] = []
    started: list[int] = []
    watcher = asyncio.create_task(_watch_disk(worktree, limits.disk_bytes, tripped, started))
    try:
        done = await proc.run(
            full,
            env=env,
            cwd=where,
            time_limit=limits.seconds,
            max_output=limits.output_bytes,
            user=user,
            on_start=started.append,
            stdin=stdin,
            on_output=on_output,
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    output = done.output
    if tripped:
        output += DISK_MARKER.format(quota=limits.disk_bytes // MB)
    if done.timed_out:
        output += TIME_MARKER.format(seconds=limits.seconds)
    return proc.Completed(
        done.exit_code, output, done.total_bytes, done.seconds, done.timed_out, done.cut
    )
