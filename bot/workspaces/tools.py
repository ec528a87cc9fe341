"""The workspace tools an agent calls: list, read, write, edit, search, run.

Names and main arguments are fixed (`bot.agents.base`): configurations, scripts and
prompts rely on them. Every path goes through `paths.contained`; nothing here raises
for a bad argument, each answers a `ToolResult` with the reason.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shlex
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.agents import base as b
from bot.agents.base import ToolResult
from bot.workspaces import proc
from bot.workspaces import sandbox as sb
from bot.workspaces.git import SAFE_PATH, git_env
from bot.workspaces.paths import PathError, contained, relative
from bot.workspaces.store import MB, WorkspaceError, WorkspaceStore, Worktree, disk_use

READ_ONLY = "read-only"
READ_WRITE = "read-write"
NONE = "none"
POLICIES = (NONE, READ_ONLY, READ_WRITE)

MAX_READ_BYTES = 100_000
MAX_WRITE_BYTES = 1_000_000
MAX_LIST = 2000
MAX_MATCHES = 200
PROGRAM_MEMORY = 8192 * MB  # address space for a whole CLI agent (run_program)
SEARCH_TIMEOUT_SECONDS = 20.0
CUT = "\n[... cut at {size} bytes of {total}]"
READ_ONLY_REFUSAL = "{tool}: this agent's workspace is read-only"
UNTRUSTED_REFUSAL = (
    "run_command: commands do not run in this workspace: its code comes from someone "
    "without write access (a fork, or an outsider's push). A maintainer can allow it "
    "for this agent in the server configuration."
)

# The fallback search, run as its own process so a runaway regex can be stopped.
_SEARCH = r"""
import re, sys
pattern, most = re.compile(sys.argv[1]), int(sys.argv[2])
found = 0
for name in sys.stdin.read().split("\0"):
    if not name:
        continue
    try:
        with open(name, "rb") as handle:
            data = handle.read(2_000_000)
    except OSError:
        continue
    if b"\0" in data[:8000]:
        continue
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if pattern.search(line):
            print(f"{name}:{number}:{line[:300]}")
            found += 1
            if found >= most:
                sys.exit(0)
"""

Record = Callable[[Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Sandboxing:
    """How `run_command` runs: the sandbox kind, its policy and limits."""

    kind: str = "bwrap"  # or "none" (the operator's explicit choice)
    policy: sb.Policy = field(default_factory=sb.Policy)
    limits: sb.Limits = field(default_factory=sb.Limits)
    commands_allowed: bool = True  # False for an outsider's code, unless configured
    bwrap: str | None = field(default_factory=sb.bwrap_path)  # found once, at start


NO_FILE, LINK_MODE = "000000", "120000"
PROPOSABLE_MODES = ("100644", "100755", LINK_MODE)


@dataclass(frozen=True)
class ChangedFile:
    """A file the worktree changed since its base: its new bytes (None: deleted), and
    git's mode of it at the base and now ("000000": no file there)."""

    path: str
    data: bytes | None
    old_mode: str
    mode: str | None


def _text(data: bytes) -> str | None:
    if b"\0" in data[:8000]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class WorkspaceTools:
    """The workspace tools of one session's worktree."""

    def __init__(
        self,
        store: WorkspaceStore,
        tree: Worktree,
        mode: str,
        sandboxing: Sandboxing,
        *,
        record: Record | None = None,
    ) -> None:
        if mode not in (READ_ONLY, READ_WRITE):
            raise ValueError(f"workspace mode is {READ_ONLY} or {READ_WRITE}, not {mode!r}")
        self.store = store
        self.tree = tree
        self.root = tree.path.resolve()
        self.mode = mode
        self.sandboxing = sandboxing
        self._record = record
        self.handlers: Mapping[str, Callable[[Mapping[str, Any]], Awaitable[ToolResult]]] = {
            b.LIST_FILES: self.list_files,
            b.READ_FILE: self.read_file,
            b.WRITE_FILE: self.write_file,
            b.EDIT_FILE: self.edit_file,
            b.CODE_SEARCH: self.code_search,
            b.RUN_COMMAND: self.run_command,
        }

    async def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        handler = self.handlers.get(name)
        if handler is None:
            return ToolResult(False, f"unknown workspace tool {name!r}")
        try:
            return await handler(args)
        except PathError as exc:
            return ToolResult(False, f"{name}: {exc}")
        except OSError as exc:
            return ToolResult(False, f"{name}: {exc.strerror or exc}")

    def _writable(self, tool: str) -> ToolResult | None:
        if self.mode != READ_WRITE:
            return ToolResult(False, READ_ONLY_REFUSAL.format(tool=tool))
        return None

    # -------------------------------------------------------------- reading

    async def _files(self) -> list[str]:
        """Tracked and untracked files, .gitignore respected (git ls-files)."""
        done = await proc.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            env=git_env(self.store.home, extra=self.tree.git_env()),
            cwd=self.root,
            time_limit=SEARCH_TIMEOUT_SECONDS,
            max_output=50 * MB,
        )
        if done.exit_code != 0:
            raise OSError(f"git ls-files failed: {done.output.strip()[:500]}")
        names = sorted(set(done.output.split("\0")) - {""})
        return [name for name in names if (self.root / name).is_file()]

    async def list_files(self, args: Mapping[str, Any]) -> ToolResult:
        pattern = str(args.get("pattern") or "*")
        names = [n for n in await self._files() if fnmatch.fnmatchcase(n, pattern)]
        shown = names[:MAX_LIST]
        more = f"\n[... {len(names) - MAX_LIST} more]" if len(names) > MAX_LIST else ""
        return ToolResult(True, "\n".join(shown) + more if shown else "no files match")

    async def read_file(self, args: Mapping[str, Any]) -> ToolResult:
        path = contained(self.root, args.get("path"))
        if not path.is_file():
            return ToolResult(False, f"read_file: {args.get('path')} is not a file")
        data = await asyncio.to_thread(path.read_bytes)
        text = _text(data)
        if text is None:
            return ToolResult(False, f"read_file: {args.get('path')} is a binary file")
        start, end = args.get("start_line"), args.get("end_line")
        if start is not None or end is not None:
            lines = text.splitlines(keepends=True)
            first = int(start) if start is not None else 1
            last = int(end) if end is not None else len(lines)
            if first < 1 or last < first:
                return ToolResult(False, "read_file: lines run from start_line ≥ 1 to end_line")
            text = "".join(lines[first - 1 : last])
        raw = text.encode()
        cut = CUT.format(size=MAX_READ_BYTES, total=len(raw)) if len(raw) > MAX_READ_BYTES else ""
        return ToolResult(True, raw[:MAX_READ_BYTES].decode("utf-8", "ignore") + cut)

    async def code_search(self, args: Mapping[str, Any]) -> ToolResult:
        query = args.get("query")
        if not isinstance(query, str) or not query:
            return ToolResult(False, "code_search needs a query (a regular expression)")
        glob = args.get("path")
        most = min(max(int(args.get("max_results") or MAX_MATCHES), 1), MAX_MATCHES)
        rg = shutil.which("rg", path=SAFE_PATH)
        if rg is not None:
            argv = [rg, "--line-number", "--no-heading", "--color=never", "--max-count", str(most)]
            argv += ["--max-columns=300", *(["--glob", str(glob)] if glob else []), "-e", query]
            done = await proc.run(
                [*argv, "--", "."],
                env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
                cwd=self.root,
                time_limit=SEARCH_TIMEOUT_SECONDS,
            )
            lines = [line.removeprefix("./") for line in done.output.splitlines()][:most]
            if done.exit_code == 2:
                return ToolResult(False, f"code_search: {done.output.strip()[:500]}")
        else:
            names = [n for n in await self._files() if not glob or fnmatch.fnmatchcase(n, glob)]
            done = await proc.run(
                [sys.executable, "-I", "-c", _SEARCH, query, str(most)],
                env={"LANG": "C.UTF-8"},
                cwd=self.root,
                time_limit=SEARCH_TIMEOUT_SECONDS,
                stdin="\0".join(names).encode(),
            )
            if done.exit_code != 0:
                reason = "took too long" if done.timed_out else done.output.strip()[-300:]
                return ToolResult(False, f"code_search: {reason}")
            lines = done.output.splitlines()[:most]
        return ToolResult(True, "\n".join(lines) if lines else "no matches")

    # -------------------------------------------------------------- writing

    async def _write(self, path: Path, content: str) -> None:
        data = content.encode()
        if len(data) > MAX_WRITE_BYTES:
            raise PathError(f"the content is {len(data)} bytes; at most {MAX_WRITE_BYTES}")
        used = await asyncio.to_thread(disk_use, self.root)
        self.store.measured(self.root, used)
        if used + len(data) > self.store.quota_bytes:
            raise PathError(
                f"the worktree would pass its quota of {self.store.quota_bytes // MB} MB"
            )
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, data)
        for made in (*missing, path):
            if made.is_relative_to(self.root):
                self.store.own(made)

    async def write_file(self, args: Mapping[str, Any]) -> ToolResult:
        refused = self._writable("write_file")
        if refused:
            return refused
        content = args.get("content")
        if not isinstance(content, str):
            return ToolResult(False, "write_file needs a path and a text content")
        path = contained(self.root, args.get("path"), write=True)
        if path.is_dir():
            return ToolResult(False, f"write_file: {args.get('path')} is a directory")
        await self._write(path, content)
        return ToolResult(
            True, f"wrote {relative(self.root, path)} ({len(content.encode())} bytes)"
        )

    async def edit_file(self, args: Mapping[str, Any]) -> ToolResult:
        refused = self._writable("edit_file")
        if refused:
            return refused
        old, new = args.get("old"), args.get("new")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            return ToolResult(False, "edit_file needs a path, the exact old text and the new text")
        path = contained(self.root, args.get("path"), write=True)
        if not path.is_file():
            return ToolResult(False, f"edit_file: {args.get('path')} is not a file")
        text = _text(await asyncio.to_thread(path.read_bytes))
        if text is None:
            return ToolResult(False, f"edit_file: {args.get('path')} is binary or not UTF-8")
        count = text.count(old)
        if count == 0:
            return ToolResult(False, f"edit_file: the old text is not in {args.get('path')}")
        if count > 1:
            return ToolResult(
                False,
                f"edit_file: the old text occurs {count} times in {args.get('path')}; "
                "include more of the surrounding lines so it occurs once",
            )
        await self._write(path, text.replace(old, new, 1))
        return ToolResult(True, f"edited {relative(self.root, path)}")

    async def changed_files(self) -> list[ChangedFile]:
        """Each changed file's new bytes and mode: `propose_change` without files.

        A symbolic link is its target (git stores it so), read without following it; a
        submodule or anything that is not a file or a link cannot be proposed.
        """
        try:
            modes = await self.store.changed_modes(self.tree)
        except WorkspaceError as exc:
            raise PathError(str(exc)) from None
        changed: list[ChangedFile] = []
        for name, (old, new) in sorted(modes.items()):
            if new == NO_FILE:
                changed.append(ChangedFile(name, None, old, None))
                continue
            if new not in PROPOSABLE_MODES:
                raise PathError(
                    f"{name} has git mode {new} (not a file or a link); it cannot be proposed"
                )
            folder, _, base = name.rpartition("/")
            where = contained(self.root, folder, allow_root=True) / base
            if new == LINK_MODE:  # its target, as text: the link is not followed
                target = await asyncio.to_thread(os.readlink, where)
                changed.append(ChangedFile(name, os.fsencode(target), old, new))
                continue
            path = contained(self.root, name)
            if where.is_symlink() or not path.is_file():
                raise PathError(f"{name} is not a regular file; it cannot be proposed")
            changed.append(ChangedFile(name, await asyncio.to_thread(path.read_bytes), old, new))
        return changed

    # -------------------------------------------------------------- commands

    async def run_command(self, args: Mapping[str, Any]) -> ToolResult:
        command = args.get("command")
        if isinstance(command, str) and command.strip():
            argv = ["sh", "-c", command]
        elif (
            isinstance(command, list) and command and all(isinstance(part, str) for part in command)
        ):
            argv = list(command)
        else:
            return ToolResult(False, "run_command needs a command: an argv list or a shell string")
        if not self.sandboxing.commands_allowed:
            return ToolResult(False, UNTRUSTED_REFUSAL)
        if self.sandboxing.kind != "none" and self.sandboxing.bwrap is None:
            return ToolResult(False, sb.NO_BWRAP)
        limits = self.sandboxing.limits
        timeout = args.get("timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            limits = sb.Limits(
                **{**limits.__dict__, "seconds": min(float(timeout), limits.seconds)}
            )
        cwd = ""
        if args.get("cwd"):
            where = contained(self.root, args.get("cwd"), allow_root=True)
            if not where.is_dir():
                return ToolResult(False, f"run_command: {args.get('cwd')} is not a directory")
            cwd = relative(self.root, where) if where != self.root else ""
        policy = sb.Policy(
            **{**self.sandboxing.policy.__dict__, "writable": self.mode == READ_WRITE}
        )
        done = await sb.run_sandboxed(
            self.root,
            argv,
            policy=policy,
            limits=limits,
            cwd=cwd,
            sandbox=self.sandboxing.kind,
            bwrap=self.sandboxing.bwrap,
        )
        if self._record is not None:
            await self._record(
                {
                    "argv": argv,
                    "cwd": cwd or ".",
                    "exit_code": done.exit_code,
                    "seconds": round(done.seconds, 3),
                    "timed_out": done.timed_out,
                    "output": done.output[:2000],
                }
            )
        # What the command left is counted in the directory's quota from now on.
        self.store.measured(self.root, await asyncio.to_thread(disk_use, self.root))
        code = "killed at the time limit" if done.timed_out else f"exit code {done.exit_code}"
        head = f"$ {shlex.join(argv)}\n[{code}, {done.seconds:.2f} s]\n"
        return ToolResult(not done.timed_out, head + done.output)

    async def run_program(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        binds: tuple[tuple[str, str, bool], ...] = (),
        network: bool,
        stdin: bytes | None,
        seconds: float,
        on_output: Callable[[bytes], Awaitable[None]],
    ) -> proc.Completed:
        """Run a whole program (a CLI coding agent) in this worktree's sandbox, streaming
        its output to `on_output`; refused (PermissionError) where commands may not run."""
        if not self.sandboxing.commands_allowed:
            raise PermissionError(UNTRUSTED_REFUSAL.replace("run_command", "the command engine"))
        if self.sandboxing.kind != "none" and self.sandboxing.bwrap is None:
            raise PermissionError(sb.NO_BWRAP)
        base = self.sandboxing.policy
        policy = sb.Policy(
            writable=self.mode == READ_WRITE,
            network=network,
            uid=base.uid,
            env={**base.env, **env},
            binds=(*base.binds, *binds),
        )
        # A CLI agent is a long-lived program (Node for Claude Code and Codex's npm
        # package), not one command: its CPU follows its wall clock, and its address space
        # gets room for a JIT's reservations.
        limits = sb.Limits(
            **{
                **self.sandboxing.limits.__dict__,
                "seconds": seconds,
                "cpu_seconds": int(seconds),
                "memory_bytes": max(self.sandboxing.limits.memory_bytes, PROGRAM_MEMORY),
            }
        )
        return await sb.run_sandboxed(
            self.root,
            argv,
            policy=policy,
            limits=limits,
            sandbox=self.sandboxing.kind,
            bwrap=self.sandboxing.bwrap,
            stdin=stdin,
            on_output=on_output,
        )

    async def run_setup(self, argv: list[str]) -> proc.Completed | None:
        """One `workspace.setup` step: like run_command, but with network and the worktree
        writable whatever the agent's mode (the operator's step, e.g. installing
        dependencies). None when commands may not run here (an outsider's code)."""
        if not self.sandboxing.commands_allowed:
            return None
        if self.sandboxing.kind != "none" and self.sandboxing.bwrap is None:
            raise PermissionError(sb.NO_BWRAP)
        policy = sb.Policy(**{**self.sandboxing.policy.__dict__, "writable": True, "network": True})
        done = await sb.run_sandboxed(
            self.root,
            argv,
            policy=policy,
            limits=self.sandboxing.limits,
            sandbox=self.sandboxing.kind,
            bwrap=self.sandboxing.bwrap,
        )
        if self._record is not None:
            await self._record(
                {
                    "argv": argv,
                    "cwd": ".",
                    "setup": True,
                    "exit_code": done.exit_code,
                    "seconds": round(done.seconds, 3),
                    "timed_out": done.timed_out,
                    "output": done.output[:2000],
                }
            )
        return done
