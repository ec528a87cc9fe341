"""The workspace tools on a real worktree: paths contained, .git never written,
.gitignore respected, commands in the sandbox."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.agents import base as b
from bot.agents.config import build_engine, parse_config
from bot.config import ConfigError
from bot.workspaces import sandbox as sb
from bot.workspaces.git import Credential
from bot.workspaces.store import WorkspaceStore, Worktree
from bot.workspaces.tools import READ_ONLY, READ_WRITE, Sandboxing, WorkspaceTools
from tests.conftest import needs_bwrap
from tests.fakes.git_http import basic, git, make_repo, serve_git

TOKEN = "ghs_tools-token-0123456789"
UID = 64000
FILES = {
    ".gitignore": "build/\n",
    "README.md": "hello\nworld\n",
    "src/app.py": "def greet():\n    return 'hi'\n\n\ndef part():\n    return 'hi'\n",
    "docs/notes.txt": "nothing to see\n",
}


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[tuple[WorkspaceStore, Worktree]]:
    make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    root = Path(tempfile.mkdtemp(prefix="tl-tools-"))
    os.chmod(root, 0o755)  # noqa: S103 (the sandbox user must reach the worktree)
    store = WorkspaceStore(root / "ws", owner=UID if os.geteuid() == 0 else None)
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        mirror = await store.fetch(
            "github",
            "acme/widgets",
            f"{server.url}/acme/widgets.git",
            Credential.github(server.url, TOKEN),
        )
    head = await store.default_head(mirror, "main")
    worktree = await store.add_worktree("s-tools", mirror, head, "threadline/s-tools")
    for folder in (root / "ws", root / "ws" / "trees"):
        os.chmod(folder, 0o755)  # noqa: S103 (the same)
    yield store, worktree
    shutil.rmtree(root)


def tools_for(
    tree: tuple[WorkspaceStore, Worktree], mode: str = READ_WRITE, **sandboxing: Any
) -> WorkspaceTools:
    store, worktree = tree
    options = {"policy": sb.Policy(uid=UID), **sandboxing}
    return WorkspaceTools(store, worktree, mode, Sandboxing(**options))


async def call(tools: WorkspaceTools, name: str, **args: Any) -> tuple[bool, str]:
    result = await tools.call(name, args)
    return result.ok, result.content


async def test_list_files_respects_gitignore_and_shows_new_files(tree: Any) -> None:
    tools = tools_for(tree)
    root = tree[1].path
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("generated\n")
    (root / "src" / "new.py").write_text("x = 1\n")
    ok, text = await call(tools, b.LIST_FILES, pattern="*.py")
    py = ["src/app.py", "src/new.py"]
    assert ok
    assert text.splitlines() == py
    ok, text = await call(tools, b.LIST_FILES)
    assert text.splitlines() == [".gitignore", "README.md", "docs/notes.txt", *py]


async def test_read_file_by_lines_and_refusals(tree: Any) -> None:
    tools = tools_for(tree)
    root = tree[1].path
    assert await call(tools, b.READ_FILE, path="README.md", start_line=2, end_line=2) == (
        True,
        "world\n",
    )
    (root / "blob.bin").write_bytes(b"\0\1\2binary")
    ok, text = await call(tools, b.READ_FILE, path="blob.bin")
    assert not ok
    assert "binary" in text
    (root / "big.txt").write_text("y" * 150_000)
    ok, text = await call(tools, b.READ_FILE, path="big.txt")
    assert ok
    assert "cut at 100000 bytes of 150000" in text
    assert len(text) < 100_100
    outside = Path(tempfile.mkdtemp()) / "secret.txt"
    outside.write_text("s3cret")
    os.symlink(outside, root / "link.txt")
    for path in ("../../etc/passwd", "/etc/passwd", "link.txt", "src/../../x"):
        ok, text = await call(tools, b.READ_FILE, path=path)
        assert not ok, path
        assert "s3cret" not in text, path
        assert "root:x:0" not in text, path  # /etc/passwd's first line


async def test_write_file_stays_inside_and_never_touches_git(tree: Any) -> None:
    tools = tools_for(tree)
    root = tree[1].path
    ok, _ = await call(tools, b.WRITE_FILE, path="pkg/sub/mod.py", content="A = 1\n")
    assert ok
    assert (root / "pkg" / "sub" / "mod.py").read_text() == "A = 1\n"
    outside = Path(tempfile.mkdtemp())
    os.symlink(outside, root / "escape")
    for path in (".git", ".git/config", "../x.txt", "/abs/x.txt", "escape/x.txt", "a/./../.."):
        ok, text = await call(tools, b.WRITE_FILE, path=path, content="bad")
        assert not ok, path
    assert os.listdir(outside) == []
    assert "gitdir:" in (root / ".git").read_text()
    ok, text = await call(tools_for(tree, READ_ONLY), b.WRITE_FILE, path="r.txt", content="x")
    assert not ok
    assert "read-only" in text
    assert not (root / "r.txt").exists()


async def test_edit_file_is_exact_and_refuses_ambiguity(tree: Any) -> None:
    tools = tools_for(tree)
    root = tree[1].path
    ok, text = await call(tools, b.EDIT_FILE, path="src/app.py", old="return 'hi'", new="x")
    assert not ok
    assert "occurs 2 times" in text
    ok, text = await call(tools, b.EDIT_FILE, path="src/app.py", old="nope", new="x")
    assert not ok
    assert "not in" in text
    old = "def greet():\n    return 'hi'"
    ok, _ = await call(
        tools, b.EDIT_FILE, path="src/app.py", old=old, new="def greet():\n    return 'hello'"
    )
    assert ok
    assert "return 'hello'" in (root / "src" / "app.py").read_text()
    (root / "img.png").write_bytes(b"\x89PNG\0\0")
    ok, text = await call(tools, b.EDIT_FILE, path="img.png", old="PNG", new="x")
    assert not ok
    assert "binary" in text


async def test_code_search_finds_lines_in_files_git_would_show(tree: Any) -> None:
    tools = tools_for(tree)
    root = tree[1].path
    (root / "build").mkdir()
    (root / "build" / "gen.py").write_text("def greet(): pass\n")
    ok, text = await call(tools, b.CODE_SEARCH, query=r"def \w+\(")
    assert ok
    assert text.splitlines() == ["src/app.py:1:def greet():", "src/app.py:5:def part():"]
    ok, text = await call(tools, b.CODE_SEARCH, query="nothing|hello", path="docs/*")
    assert ok
    assert text == "docs/notes.txt:1:nothing to see"
    ok, text = await call(tools, b.CODE_SEARCH, query="(")
    assert not ok


@needs_bwrap
async def test_run_command_in_the_sandbox_answers_exit_code_and_records_it(tree: Any) -> None:
    events: list[Mapping[str, Any]] = []

    async def record(event: Mapping[str, Any]) -> None:
        events.append(event)

    store, worktree = tree
    tools = WorkspaceTools(
        store, worktree, READ_WRITE, Sandboxing(policy=sb.Policy(uid=UID)), record=record
    )
    ok, _ = await call(tools, b.WRITE_FILE, path="notes.txt", content="one\n")
    assert ok
    # A file the tools wrote is the sandbox user's to change.
    ok, text = await call(tools, b.RUN_COMMAND, command="echo two >> notes.txt; exit 3")
    assert ok
    assert "[exit code 3," in text
    assert (worktree.path / "notes.txt").read_text() == "one\ntwo\n"
    ok, text = await call(tools, b.RUN_COMMAND, command=["pwd"], cwd="src")
    assert ok
    assert text.rstrip().endswith("/workspace/src")
    assert events[0]["exit_code"] == 3
    assert events[1]["cwd"] == "src"
    ok, text = await call(tools, b.RUN_COMMAND, command=["pwd"], cwd="../..")
    assert not ok
    ok, text = await call(tools, b.RUN_COMMAND, command=["sleep", "30"], timeout=1)
    assert not ok
    assert "killed at the time limit" in text


async def test_run_command_refusals_name_the_reason(tree: Any) -> None:
    ok, text = await call(tools_for(tree, bwrap=None), b.RUN_COMMAND, command=["true"])
    assert not ok
    assert "apt-get install bubblewrap" in text
    assert "THREADLINE_SANDBOX=none" in text
    untrusted = tools_for(tree, commands_allowed=False)
    ok, text = await call(untrusted, b.RUN_COMMAND, command=["true"])
    assert not ok
    assert "without write access" in text
    ok, text = await call(tools_for(tree), b.RUN_COMMAND, command=[])
    assert not ok


SCRIPTED = """\
agents:
  fixer:
    engine: script
    workspace: read-write
    script:
      - do:
          - call: {tool: write_file, args: {path: calc.py, content: "def add(a, b):\\n    return a - b\\n"}}
          - call: {tool: run_command, args: {command: "python3 -c 'import calc; assert calc.add(2, 2) == 4'"}}
          - call: {tool: edit_file, args: {path: calc.py, old: "a - b", new: "a + b"}}
          - call: {tool: run_command, args: {command: [python3, -c, "import calc; assert calc.add(2, 2) == 4"]}}
          - task_completed: done
"""


class WorkspaceOnly:
    """`Tools` for an engine: the workspace tools, and the rest recorded (a test double)."""

    def __init__(self, workspace: WorkspaceTools, allowed: tuple[str, ...]) -> None:
        self.workspace = workspace
        self.allowed = allowed
        self.results: list[tuple[str, bool, str]] = []
        self.completed = False

    async def call(self, name: str, args: Mapping[str, Any], *, call_id: str | None = None) -> Any:
        assert name in self.allowed, name
        if name in self.workspace.handlers:
            result = await self.workspace.call(name, args)
            self.results.append((name, result.ok, result.content))
            return result
        self.completed = self.completed or name == b.TASK_COMPLETED
        return b.ToolResult(True, "")

    async def say(self, text: str) -> None: ...
    async def stream(self, text: str) -> None: ...
    async def remember(self, message: Mapping[str, Any]) -> None: ...
    async def usage(self, input_tokens: int, output_tokens: int, model: str) -> None: ...


@needs_bwrap
async def test_a_script_agent_writes_runs_edits_and_runs_again(tree: Any) -> None:
    agent = parse_config(SCRIPTED, "threadline.yml").agent("fixer")
    assert agent.workspace == READ_WRITE
    assert set(b.WORKSPACE_TOOLS) <= set(agent.tools)
    tools = WorkspaceOnly(tools_for(tree), agent.tools)
    turn = b.Turn("s-tools", 1, agent, "fix it", (b.TurnInput("task", "m", "fix it"),), "t")
    await build_engine(agent).run_turn(turn, tools)
    assert [ok for _, ok, _ in tools.results] == [True, True, True, True]
    first, second = tools.results[1][2], tools.results[3][2]
    assert "[exit code 1," in first
    assert "AssertionError" in first
    assert "[exit code 0," in second
    assert tools.completed


@pytest.mark.parametrize(
    ("value", "has", "lacks"),
    [
        ("none", (), (b.LIST_FILES, b.WRITE_FILE, b.RUN_COMMAND)),
        ("read-only", (b.LIST_FILES, b.CODE_SEARCH, b.RUN_COMMAND), (b.WRITE_FILE, b.EDIT_FILE)),
        ("read-write", b.WORKSPACE_TOOLS, ()),
    ],
)
def test_the_workspace_setting_gives_its_tools_by_default(
    value: str, has: tuple[str, ...], lacks: tuple[str, ...]
) -> None:
    text = f"agents:\n  a:\n    engine: script\n    workspace: {value}\n    script: [{{do: [reply: hi]}}]\n"
    agent = parse_config(text, "threadline.yml").agent("a")
    assert agent.workspace == value
    assert set(has) <= set(agent.tools)
    assert not set(lacks) & set(agent.tools)


def test_an_unknown_workspace_setting_is_refused_with_its_line() -> None:
    text = "agents:\n  a:\n    engine: script\n    workspace: everything\n    script: [{do: [reply: hi]}]\n"
    with pytest.raises(ConfigError, match=r"threadline.yml:4.*workspace is one of none"):
        parse_config(text, "threadline.yml")


@needs_bwrap
async def test_a_command_cannot_replace_the_git_link_and_git_never_looks_in_the_tree(
    tree: Any,
) -> None:
    store, worktree = tree
    link = (worktree.path / ".git").read_text()
    tools = tools_for(tree)
    plant = "rm -f .git; mv .git moved; mkdir -p .git; echo planted > .git/config"
    await call(tools, b.RUN_COMMAND, command=plant)
    assert (worktree.path / ".git").read_text() == link
    # Were the link changed anyway, git still uses the repository the store named.
    planted = worktree.path.parent / "planted"
    git(worktree.path.parent, "init", "--quiet", str(planted))
    (worktree.path / ".git").write_text(f"gitdir: {planted}/.git\n")
    assert await store.diff(worktree) == ""
    assert worktree.git_dir.is_relative_to(store.root / "mirrors")


def test_the_workspace_mapping_sets_network_and_outsider_code() -> None:
    text = (
        "agents:\n  a:\n    engine: script\n"
        "    workspace: {mode: read-write, network: true, outsiderCode: run}\n"
        "    script: [{do: [reply: hi]}]\n"
    )
    agent = parse_config(text, "threadline.yml").agent("a")
    assert (agent.workspace, agent.workspace_network, agent.workspace_outsider_code) == (
        READ_WRITE,
        True,
        True,
    )
    plain = parse_config(
        text.replace("{mode: read-write, network: true, outsiderCode: run}", "read-only"), "t.yml"
    )
    assert (plain.agent("a").workspace_network, plain.agent("a").workspace_outsider_code) == (
        False,
        False,
    )
    for bad, problem in (
        ("{mode: read-write, outsiderCode: always}", "outsiderCode is `run` or `refuse`"),
        ("{mode: read-write, shell: true}", "shell"),
        ("{mode: everything}", "workspace is one of"),
    ):
        with pytest.raises(ConfigError, match=problem):
            parse_config(
                text.replace("{mode: read-write, network: true, outsiderCode: run}", bad), "t.yml"
            )
