"""Mirrors and worktrees under one directory, with quotas.

Layout under the workspace directory:
    mirrors/<host>/<owner>/<name>.git   a bare mirror per repository (cache, shared)
    trees/<session id>                  a git worktree per session
    home/                               an empty HOME for git

A mirror holds the host's branches (`refs/heads/*`) and the pull/merge request heads
fetched so far (`refs/pull/N/head`, `refs/merge-requests/N/head`: how forks' commits
reach us). A worktree is added at a commit on the session's own branch and removed
when the session closes; any worktree whose session is no longer live is removed at
start (`clean_orphans`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.workspaces.git import GIT_OUTPUT_BYTES, Credential, GitError, git

MB = 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]+$")
QUOTA_REPO = (
    "repository {repo} takes {size} MB, over the workspace quota of {quota} MB "
    "(THREADLINE_WORKSPACE_QUOTA_MB)"
)
QUOTA_DIR = (
    "the workspace directory {dir} holds {size} MB, over its quota of {quota} MB "
    "(THREADLINE_WORKSPACE_DIR_QUOTA_MB): close sessions or raise the quota"
)


class WorkspaceError(Exception):
    """A workspace could not be made or used; the message is fit for the transcript."""


def disk_use(path: Path) -> int:
    """Bytes used by the files under `path` (symlinks not followed; blocks actually used)."""
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def pull_ref(host: str, number: int) -> str:
    """The host's ref for a pull/merge request's head (forks' commits included)."""
    if host == "gitlab":
        return f"refs/merge-requests/{number}/head"
    return f"refs/pull/{number}/head"


@dataclass(frozen=True)
class Worktree:
    session_id: str
    path: Path
    base_sha: str  # the commit it was made at: diffs are taken against it
    branch: str
    git_dir: Path  # <mirror>/worktrees/<name>: ours, outside the sandbox

    def git_env(self) -> dict[str, str]:
        """Name the repository explicitly, so git never discovers one in the worktree
        (where a command could have planted a `.git` with its own config)."""
        return {"GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.path)}


class WorkspaceStore:
    """The workspace directory: mirrors, worktrees, quotas. One per worker process."""

    def __init__(
        self,
        root: Path,
        *,
        quota_bytes: int = 1024 * MB,
        dir_quota_bytes: int = 10 * 1024 * MB,
        owner: int | None = None,
    ) -> None:
        self.root = root.resolve()
        self.quota_bytes = quota_bytes
        self.dir_quota_bytes = dir_quota_bytes
        self.owner = owner  # uid that sandboxed commands run as: worktrees are made theirs
        self.home = self.root / "home"
        self._locks: dict[Path, asyncio.Lock] = {}
        # Bytes of each mirror and worktree as last measured, so the directory's quota
        # check walks only what has not been measured (not every worktree each time),
        # and of each commit's checkout, so a second worktree of it is not walked again.
        self._sizes: dict[Path, int] = {}
        self._checkouts: dict[tuple[Path, str], int] = {}

    # ------------------------------------------------------------- places

    def mirror_path(self, host: str, repo: str) -> Path:
        parts = repo.split("/")
        if (
            not _SEGMENT.match(host)
            or not parts
            or not all(_SEGMENT.match(part) and part not in (".", "..") for part in parts)
        ):
            raise WorkspaceError(f"not a repository name: {repo!r}")
        return self.root / "mirrors" / host / Path(*parts[:-1]) / f"{parts[-1]}.git"

    def tree_path(self, session_id: str) -> Path:
        if not _SESSION.match(session_id):
            raise WorkspaceError(f"not a session id: {session_id!r}")
        return self.root / "trees" / session_id

    def _lock(self, path: Path) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    async def _ready(self) -> None:
        for folder in (self.home, self.root / "mirrors", self.root / "trees"):
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)

    # ------------------------------------------------------------- quotas

    def _dir_use(self) -> int:
        """The directory's use: measured mirrors and worktrees by their last size, the
        rest (new or unmeasured folders, homes, small files) walked."""
        known = dict(self._sizes)
        total = 0
        for folder, dirs, files in os.walk(self.root):
            kept = []
            for name in dirs:
                path = Path(folder, name)
                if path in known:
                    total += known[path]
                else:
                    kept.append(name)
            dirs[:] = kept
            for name in (*kept, *files):
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    continue
        return total

    def measured(self, path: Path, size: int) -> None:
        """A mirror's or worktree's size as just measured (e.g. after a command)."""
        self._sizes[path] = size

    async def check_dir_quota(self) -> None:
        size = await asyncio.to_thread(self._dir_use)
        if size > self.dir_quota_bytes:
            raise WorkspaceError(
                QUOTA_DIR.format(dir=self.root, size=size // MB, quota=self.dir_quota_bytes // MB)
            )

    async def check_quota(self, path: Path, what: str, *, size: int | None = None) -> int:
        if size is None:
            size = await asyncio.to_thread(disk_use, path)
        self._sizes[path] = size
        if size > self.quota_bytes:
            raise WorkspaceError(
                QUOTA_REPO.format(repo=what, size=size // MB, quota=self.quota_bytes // MB)
            )
        return size

    # ------------------------------------------------------------- mirrors

    async def fetch(
        self,
        host: str,
        repo: str,
        url: str,
        credential: Credential | None,
        *,
        pulls: Iterable[int] = (),
    ) -> Path:
        """Bring the mirror of `repo` up to date from `url` (branches and the given PR heads)."""
        await self._ready()
        await self.check_dir_quota()
        if credential is not None:
            try:
                credential.check(url)
            except GitError as exc:
                raise WorkspaceError(str(exc)) from None
        mirror = self.mirror_path(host, repo)
        async with self._lock(mirror):
            if not (mirror / "HEAD").exists():
                await asyncio.to_thread(mirror.mkdir, parents=True, exist_ok=True)
                await self._git(["init", "--bare", "--quiet"], mirror)
            specs = ["+refs/heads/*:refs/heads/*"]
            specs += [f"+{pull_ref(host, n)}:{pull_ref(host, n)}" for n in sorted(set(pulls))]
            # The URL is given on the command line and never stored as a remote.
            args = ["fetch", "--quiet", "--prune", "--no-tags", "--", url, *specs]
            await self._git(args, mirror, credential)
            await self.check_quota(mirror, repo)
        return mirror

    async def resolve(self, mirror: Path, ref: str) -> str:
        out = await self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], mirror)
        return out.strip()

    async def default_head(self, mirror: Path, branch: str) -> str:
        return await self.resolve(mirror, f"refs/heads/{branch}")

    # ------------------------------------------------------------- worktrees

    async def add_worktree(
        self, session_id: str, mirror: Path, commit: str, branch: str
    ) -> Worktree:
        """A worktree for the session at `commit` on its own new `branch`."""
        await self._ready()
        await self.check_dir_quota()
        path = self.tree_path(session_id)
        check = await self._git(["check-ref-format", "--branch", branch], mirror)
        branch = check.strip()
        async with self._lock(mirror):
            if path.exists():
                await self._remove(path, mirror)
            # `checkout.workers=0`: write the files with one worker per core (git 2.32+).
            add = ["worktree", "add", "--quiet", "-B", branch, "--", str(path), commit]
            await self._git(["-c", "checkout.workers=0", *add], mirror)
        git_dir = self._mirror_of(path, worktree=True)
        if git_dir is None:
            raise WorkspaceError(f"git made the worktree of {session_id} somewhere unexpected")
        if self.owner is not None:
            await asyncio.to_thread(self._chown_tree, path)
        # A checkout of a commit measured before has that size: no second walk.
        size = self._checkouts.get((mirror, commit))
        size = await self.check_quota(path, f"worktree of {session_id}", size=size)
        self._checkouts[(mirror, commit)] = size
        return Worktree(session_id, path, commit, branch, git_dir)

    def _chown_tree(self, path: Path) -> None:
        assert self.owner is not None
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != ".git"]
            os.lchown(folder, self.owner, self.owner)
            for name in files:
                if name != ".git" or folder != str(path):
                    os.lchown(os.path.join(folder, name), self.owner, self.owner)

    def own(self, path: Path) -> None:
        """A file the tools wrote becomes the sandbox user's, as the rest of the tree."""
        if self.owner is not None:
            os.lchown(path, self.owner, self.owner)

    def agent_home(self, session_id: str) -> Path:
        """A CLI agent's own home for a session (the `command` engine), beside its tree."""
        return self.root / "homes" / session_id

    def setup_marker(self, session_id: str) -> Path:
        """Present once the session's workspace ran its setup steps (on this machine)."""
        return self.root / "setup" / session_id

    async def remove_worktree(self, session_id: str) -> None:
        path = self.tree_path(session_id)
        self._sizes.pop(path, None)
        if path.exists():
            await self._remove(path, self._mirror_of(path))
        await asyncio.to_thread(shutil.rmtree, self.agent_home(session_id), ignore_errors=True)
        self.setup_marker(session_id).unlink(missing_ok=True)

    def _mirror_of(self, tree: Path, *, worktree: bool = False) -> Path | None:
        """The mirror a worktree belongs to (or, `worktree`, its git dir in that mirror),
        from its `.git` file (`gitdir: M/worktrees/X`); None unless that is one of our
        mirrors: git is never run in a directory a command could have written."""
        try:
            text = (tree / ".git").read_text(encoding="utf-8")
        except OSError:
            return None
        gitdir = Path(text.removeprefix("gitdir:").strip()).resolve()
        mirror = gitdir.parent.parent
        mirrors = self.root / "mirrors"
        if not mirror.is_relative_to(mirrors) or gitdir.parent.name != "worktrees":
            return None
        return gitdir if worktree else mirror

    async def _remove(self, path: Path, mirror: Path | None) -> None:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
        if mirror is not None and await asyncio.to_thread(mirror.exists):
            await self._git(["worktree", "prune"], mirror)

    async def clean_orphans(self, live: Callable[[str], bool]) -> list[str]:
        """Remove every worktree whose session `live` says is over; their ids."""
        trees = self.root / "trees"
        if not trees.is_dir():
            return []
        removed = []
        for path in sorted(trees.iterdir()):
            if not live(path.name):
                await self._remove(path, self._mirror_of(path))
                removed.append(path.name)
        homes = self.root / "homes"
        for path in sorted(homes.iterdir()) if homes.is_dir() else []:
            if not live(path.name):
                await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
        return removed

    # ------------------------------------------------------------- diffs

    async def _staged(self, tree: Worktree) -> dict[str, str]:
        """The worktree as a scratch index over its base (ours, not the worktree's)."""
        env = tree.git_env() | {"GIT_INDEX_FILE": str(self.home / f"index-{tree.session_id}")}
        await self._git(["read-tree", tree.base_sha], tree.path, extra_env=env)
        await self._git(["add", "--all", "--", "."], tree.path, extra_env=env)
        return env

    async def changed_paths(self, tree: Worktree) -> list[str]:
        """The paths changed since the base commit (added, modified or deleted)."""
        env = await self._staged(tree)
        out = await self._git(
            ["diff", "--cached", "--name-only", "--no-renames", "-z", tree.base_sha],
            tree.path,
            extra_env=env,
            max_output=2_000_000,
            whole=True,
        )
        return sorted(set(out.split("\0")) - {""})

    async def changed_modes(self, tree: Worktree) -> dict[str, tuple[str, str]]:
        """Each path changed since the base commit: (mode at the base, mode now), git's
        octal modes, "000000" where there is no file (`git diff --raw`)."""
        env = await self._staged(tree)
        out = await self._git(
            ["diff", "--cached", "--raw", "--no-renames", "-z", tree.base_sha],
            tree.path,
            extra_env=env,
            max_output=4_000_000,
            whole=True,
        )
        fields = out.split("\0")
        found: dict[str, tuple[str, str]] = {}
        for head, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = head.lstrip(":").split()
            if len(parts) >= 2 and path:
                found[path] = (parts[0], parts[1])
        return found

    async def diff(self, tree: Worktree, *, max_bytes: int = 2_000_000) -> str:
        """Everything changed in the worktree since its base commit, new files included."""
        env = await self._staged(tree)
        return await self._git(
            ["diff", "--cached", "--binary", "--no-color", "--no-ext-diff", tree.base_sha],
            tree.path,
            extra_env=env,
            max_output=max_bytes,
            whole=True,
        )

    async def apply(self, tree: Worktree, diff: str) -> None:
        """Apply a diff made by `diff` to a fresh worktree at the same base (take-over)."""
        patch = self.home / f"patch-{tree.session_id}.diff"
        await asyncio.to_thread(patch.write_text, diff, encoding="utf-8")
        try:
            await self._git(
                ["apply", "--binary", "--whitespace=nowarn", str(patch)],
                tree.path,
                extra_env=tree.git_env(),
            )
        finally:
            await asyncio.to_thread(patch.unlink, missing_ok=True)
        if self.owner is not None:
            await asyncio.to_thread(self._chown_tree, tree.path)

    async def _git(
        self,
        args: list[str],
        cwd: Path,
        credential: Credential | None = None,
        *,
        extra_env: dict[str, str] | None = None,
        max_output: int = GIT_OUTPUT_BYTES,
        whole: bool = False,
    ) -> str:
        try:
            return await git(
                args,
                cwd=cwd,
                home=self.home,
                credential=credential,
                extra_env=extra_env,
                max_output=max_output,
                whole=whole,
            )
        except GitError as exc:
            raise WorkspaceError(str(exc)) from None
