"""A session with a workspace end to end: a webhook in, the worktree fetched from the fake
GitHub's git endpoint with the installation token, a script agent writing, testing and
fixing code in the sandbox, commands and the diff in the transcript, the worktree gone
when the session ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import needs_bwrap, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, github_settings

AGENTS = """
agents:
  fixer:
    engine: script
    workspace: read-write
    active_tools: [reply, task_completed, write_file, edit_file, run_command, propose_change]
    script:
      - match: task
        do:
          - call: {tool: write_file, args: {path: calc.py, content: "def add(a, b):\\n    return a - b\\n"}}
          - call: {tool: write_file, args: {path: test_calc.py, content: "import unittest\\nimport calc\\n\\n\\nclass T(unittest.TestCase):\\n    def test_add(self):\\n        self.assertEqual(calc.add(2, 2), 4)\\n"}}
          - call: {tool: run_command, args: {command: [python3, -m, unittest, -q]}}
          - call: {tool: edit_file, args: {path: calc.py, old: "a - b", new: "a + b"}}
          - call: {tool: run_command, args: {command: "python3 -m unittest -q"}}
          - call: {tool: propose_change, args: {title: Make add add}}
      - do: [reply: "heard {input}"]
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    userSignals: {explicit: ["/done"]}
"""

TEST_FILE = (
    "import unittest\nimport calc\n\n\nclass T(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(calc.add(2, 2), 4)\n"
)

pytestmark = needs_bwrap


@pytest.fixture
async def rig(settings: Settings, tmp_path: Path, workspace_dir: Path) -> AsyncIterator[GitHubRig]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n", "calc.py": b"def add(a, b):\n    pass\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)  # the same commits, served over git's HTTP protocol
        config = tmp_path / "threadline.yml"
        config.write_text(AGENTS, encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            yield GitHubRig(app, gh)


async def test_a_script_agent_fixes_code_in_its_workspace(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline make add work")
    approvals = rig.app.runtime.sessions.approvals
    await eventually(
        lambda: rig.sessions() and approvals.change_sets(rig.sessions()[0].id), "a change set"
    )
    [session] = rig.sessions()
    [change] = approvals.change_sets(session.id)
    assert {f.path: f.content for f in change.files} == {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "test_calc.py": TEST_FILE,
    }
    await rig.comment(7, "/approve")
    await eventually(lambda: any("opened #" in r for r in rig.replies(7)), "the PR is linked")
    [pull_request] = rig.gh.requests_to("POST", r"/repos/.*/pulls$")
    opened = rig.gh.files_at(REPO, pull_request.json["head"])
    assert opened == {
        "README.md": b"hello\n",
        "calc.py": b"def add(a, b):\n    return a + b\n",
        "test_calc.py": TEST_FILE.encode(),
    }
    await rig.comment(7, "/done")
    await eventually(lambda: not rig.sessions()[0].live, "the session ends")
    events = rig.app.runtime.sessions.store.transcript(session.id)
    commands = [e.data for e in events if e.kind == "command"]
    assert [c["exit_code"] for c in commands] == [1, 0]
    assert "FAILED" in commands[0]["output"]
    # One after each turn (a later turn, e.g. on the approval, records the same diff).
    diffs = [e.data for e in events if e.kind == "worktree_diff"]
    diff = diffs[0]
    assert all(d["diff"] == diff["diff"] for d in diffs)
    assert "+    return a + b" in diff["diff"]
    assert "+++ b/test_calc.py" in diff["diff"]
    results = [e.data for e in events if e.kind == "tool_result"]
    assert all(r["ok"] for r in results), results
    # The token went to the fake GitHub's git endpoint as a header, and nowhere else.
    assert rig.gh.git_auth
    assert all(h and h.startswith("Basic ") for h in rig.gh.git_auth)
    ws = Path(rig.app.runtime.sessions.workspaces.spaces.store.root)  # type: ignore[union-attr]
    await eventually(lambda: not (ws / "trees" / session.id).exists(), "the worktree is removed")


async def test_a_worker_that_takes_over_rebuilds_the_worktree_from_the_stored_diff(
    rig: GitHubRig,
) -> None:
    await rig.comment(7, "@threadline make add work")
    approvals = rig.app.runtime.sessions.approvals
    await eventually(
        lambda: rig.sessions() and approvals.change_sets(rig.sessions()[0].id), "a change set"
    )
    [session] = rig.sessions()
    await rig.comment(7, "/approve")
    await eventually(lambda: any("opened #" in r for r in rig.replies(7)), "the PR is linked")
    store = rig.app.runtime.sessions.store

    def count(kind: str) -> int:
        return sum(e.kind == kind for e in store.transcript(session.id))

    # The approval queues a turn of its own, which can still run when its link is seen:
    # the worktree goes only after it ended (else that turn's diff is of a removed tree).
    await eventually(lambda: count("turn_finished") >= 2, "the approval's turn ends")
    diffs_before = count("worktree_diff")
    runtime = rig.app.runtime.sessions.workspaces
    assert runtime is not None
    # The machine that held the worktree is gone: its directory with it.
    await runtime.spaces.close(session.id)
    assert not await runtime.spaces.exists(session.id)
    await rig.comment(7, "are you still there?")
    await eventually(lambda: "heard are you still there?" in rig.replies(7), "the next turn")
    await eventually(lambda: count("worktree_diff") > diffs_before, "the rebuilt tree's diff")
    diffs = [e.data for e in store.transcript(session.id) if e.kind == "worktree_diff"]
    assert diffs[-1]["diff"] == diffs[0]["diff"]
    assert diffs[-1]["base"] == diffs[0]["base"]
    tree = runtime.spaces.store.tree_path(session.id)
    assert (tree / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


PR_AGENTS = """
agents:
  runner:
    engine: script
    workspace: read-write
    script:
      - match: task
        do:
          - call: {tool: write_file, args: {path: new.txt, content: "x"}}
          - call: {tool: run_command, args: {command: [cat, feature.txt]}}
          - task_completed: tried
sessions:
  keepSessionOpenForComments: false
"""


@pytest.mark.parametrize("fork", [True, False])
async def test_a_fork_pull_requests_workspace_is_read_only_and_runs_nothing(
    settings: Settings, tmp_path: Path, workspace_dir: Path, fork: bool
) -> None:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.set_permission(REPO, "maintainer", "write")
        base = gh.add_commit(REPO, {"README.md": b"hello\n"})
        head = gh.add_commit(
            REPO,
            {"README.md": b"hello\n", "feature.txt": b"from the head\n"},
            parents=[base],
            branch=None,
        )
        gh.add_repo(REPO).refs["refs/pull/12/head"] = head
        gh.add_pull(
            REPO, 12, head_sha=head, base_sha=base, head_repo="forker/hello-world" if fork else None
        )
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        config.write_text(PR_AGENTS, encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            rig = GitHubRig(app, gh)
            await rig.comment(12, "@threadline try it")
            await eventually(lambda: rig.sessions() and not rig.sessions()[0].live, "the end")
            events = app.runtime.sessions.store.transcript(rig.sessions()[0].id)
    results = {e.data["tool"]: e.data for e in events if e.kind == "tool_result"}
    commands = [e.data for e in events if e.kind == "command"]
    if fork:
        assert not results["write_file"]["ok"]
        assert "read-only" in results["write_file"]["content"]
        assert not results["run_command"]["ok"]
        assert "without write access" in results["run_command"]["content"]
        assert commands == []
    else:
        assert results["write_file"]["ok"]
        assert "from the head" in results["run_command"]["content"]
        assert [c["exit_code"] for c in commands] == [0]
