"""A session's workspace across turns, for an outsider's code, and after a take-over."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.agents import base as b
from bot.workspaces import sandbox as sb
from bot.workspaces.git import Credential
from bot.workspaces.sessions import Checkout, GitAccess, SessionWorkspaces
from bot.workspaces.store import WorkspaceError, WorkspaceStore
from bot.workspaces.tools import READ_WRITE, Sandboxing
from tests.fakes.git_http import GitServer, basic, git, make_repo, serve_git

TOKEN = "glpat-session-token-0123456789"
UID = 64000
FILES = {"README.md": "hello\n", "lib/calc.py": "def add(a, b):\n    return a - b\n"}


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="tl-sessions-"))
    os.chmod(folder, 0o755)  # noqa: S103 (the sandbox user must reach the worktrees)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[GitServer, str]]:
    make_repo(tmp_path / "served" / "grp", "calc", FILES)
    head = git(tmp_path / "served" / "grp" / "calc-work", "rev-parse", "HEAD").strip()
    async with serve_git(tmp_path / "served", basic("oauth2", TOKEN)) as running:
        yield running, head


def workspaces(folder: Path) -> SessionWorkspaces:
    store = WorkspaceStore(folder / "ws", owner=UID if os.geteuid() == 0 else None)
    return SessionWorkspaces(store, Sandboxing(policy=sb.Policy(uid=UID)))


def access(server: GitServer) -> GitAccess:
    return GitAccess(f"{server.url}/grp/calc.git", Credential.gitlab(server.url, TOKEN))


async def test_the_worktree_is_kept_between_turns_and_removed_at_close(
    root: Path, server: tuple[GitServer, str]
) -> None:
    running, head = server
    spaces = workspaces(root)
    checkout = Checkout("gitlab", "grp/calc", head, "threadline/s-a")
    first = await spaces.open("s-a", READ_WRITE, checkout, access(running))
    result = await first.call(b.WRITE_FILE, {"path": "notes.md", "content": "kept\n"})
    assert result.ok
    fetches = len(running.seen)
    second = await spaces.open("s-a", READ_WRITE, checkout, access(running))
    assert len(running.seen) == fetches  # no second fetch for the next turn
    assert (second.root / "notes.md").read_text() == "kept\n"
    base, diff = await spaces.diff("s-a") or ("", "")
    assert base == head
    assert "+kept" in diff
    await spaces.close("s-a")
    assert not second.root.exists()
    assert await spaces.diff("s-a") is None


async def test_an_outsiders_code_is_read_only_and_runs_nothing(
    root: Path, server: tuple[GitServer, str]
) -> None:
    running, head = server
    checkout = Checkout("gitlab", "grp/calc", head, "threadline/s-f", trusted=False)
    tools = await workspaces(root).open("s-f", READ_WRITE, checkout, access(running))
    wrote = await tools.call(b.WRITE_FILE, {"path": "x.txt", "content": "x"})
    assert not wrote.ok
    ran = await tools.call(b.RUN_COMMAND, {"command": ["true"]})
    assert not ran.ok
    assert "without write access" in ran.content
    read = await tools.call(b.READ_FILE, {"path": "README.md"})
    assert read.content == "hello\n"


async def test_a_commit_the_host_does_not_have_is_a_clear_error(
    root: Path, server: tuple[GitServer, str]
) -> None:
    running, _ = server
    checkout = Checkout("gitlab", "grp/calc", "1" * 40, "threadline/s-x")
    with pytest.raises(WorkspaceError, match="is not in grp/calc"):
        await workspaces(root).open("s-x", READ_WRITE, checkout, access(running))


async def test_another_machine_rebuilds_the_same_worktree_from_the_stored_diff(
    root: Path, server: tuple[GitServer, str]
) -> None:
    running, head = server
    checkout = Checkout("gitlab", "grp/calc", head, "threadline/s-t")
    here = await workspaces(root / "one").open("s-t", READ_WRITE, checkout, access(running))
    await here.call(b.EDIT_FILE, {"path": "lib/calc.py", "old": "a - b", "new": "a + b"})
    await here.call(b.WRITE_FILE, {"path": "tests/test_calc.py", "content": "import calc\n"})
    (here.root / "README.md").unlink()
    _, diff = await workspaces(root / "one").diff("s-t") or ("", "")
    there = workspaces(root / "two")
    rebuilt = await there.restore("s-t", READ_WRITE, checkout, access(running), diff)
    assert (rebuilt.root / "lib" / "calc.py").read_text().endswith("a + b\n")
    assert not (rebuilt.root / "README.md").exists()
    assert (await there.diff("s-t") or ("", ""))[1] == diff


async def test_orphans_are_removed_at_start(root: Path, server: tuple[GitServer, str]) -> None:
    running, head = server
    spaces = workspaces(root)
    for session_id in ("s-live", "s-gone"):
        checkout = Checkout("gitlab", "grp/calc", head, f"threadline/{session_id}")
        await spaces.open(session_id, READ_WRITE, checkout, access(running))
    assert await spaces.clean(lambda session_id: session_id == "s-live") == ["s-gone"]
    assert await spaces.diff("s-gone") is None
    assert await spaces.diff("s-live") is not None


async def test_the_agent_may_allow_outsider_code_and_network(
    root: Path, server: tuple[GitServer, str]
) -> None:
    running, head = server
    checkout = Checkout("gitlab", "grp/calc", head, "threadline/s-o", trusted=False)
    tools = await workspaces(root).open(
        "s-o", READ_WRITE, checkout, access(running), network=True, run_outsider_code=True
    )
    assert tools.sandboxing.commands_allowed
    assert tools.sandboxing.policy.network
    wrote = await tools.call(b.WRITE_FILE, {"path": "x.txt", "content": "x"})
    assert not wrote.ok  # still an outsider's code: read-only
