"""What an approval gate shows and refuses (issue 15): the files a change set touches with
a diffstat, and protected paths (CI, Threadline's own file) refused unless the server's
configuration allows the agent, flagged in the gate when it does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.agents.config import parse_config
from bot.agents.yamlcheck import ConfigFileError
from bot.config import Settings
from bot.diffs import FileStat, file_stat
from bot.sessions.protected import protected_kind
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (".github/workflows/ci.yml", "ci"),
        (".GitHub/Workflows/ci.yml", "ci"),
        (".github/actions/setup/action.yml", "ci"),
        (".gitlab-ci.yml", "ci"),
        (".circleci/config.yml", "ci"),
        ("Jenkinsfile", "ci"),
        ("build/Jenkinsfile.release", "ci"),
        ("azure-pipelines.yml", "ci"),
        (".travis.yml", "ci"),
        (".buildkite/pipeline.yml", "ci"),
        (".github/threadline.yml", "threadline"),
        (".threadline.yml", "threadline"),
        ("src/workflows/ci.yml", None),
        (".github/ISSUE_TEMPLATE/bug.md", None),
        ("docs/travis.yml", None),
        ("README.md", None),
    ],
)
def test_protected_paths(path: str, kind: str | None) -> None:
    assert protected_kind(path) == kind


def test_file_stat() -> None:
    assert file_stat("a", "x\ny\n", "x\nz\nw\n") == FileStat("a", "modified", 2, 1)
    assert file_stat("a", None, "x\n") == FileStat("a", "new", 1, 0)
    assert file_stat("a", "x\ny\n", None) == FileStat("a", "deleted", 0, 2)
    assert file_stat("a", "\0PNG", "\0PNG2") == FileStat("a", "binary")


AGENT = """
agents:
  fixer:
    engine: script
    active_tools: [reply, propose_change, task_completed]
{allow}
    script:
      - do:
          - call:
              tool: propose_change
              args:
                title: Tidy up
                files:
                  - {{path: src/retry.py, content: "def retry():\\n    raise\\n    # done\\n"}}
                  - {{path: docs/new.md, content: "# New\\n"}}
                  - {{path: old.txt, content: null}}
                  - {{path: .github/workflows/ci.yml, content: "on: push\\n"}}
          - reply: "proposed"
"""


@pytest.mark.parametrize(
    ("allow", "problem"),
    [
        ("sometimes", "expected true, false or a list of kinds (ci, threadline), got 'sometimes'"),
        ("[ci, secrets]", "unknown kind of protected path 'secrets'; kinds are ci, threadline"),
    ],
)
def test_allow_protected_paths_is_checked(allow: str, problem: str) -> None:
    text = AGENT.format(allow=f"    allowProtectedPaths: {allow}")
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_allow_protected_paths_values() -> None:
    def allowed(value: str) -> frozenset[str]:
        return parse_config(AGENT.format(allow=value)).agent("fixer").allow_protected

    assert allowed("") == frozenset()
    assert allowed("    allowProtectedPaths: false") == frozenset()
    assert allowed("    allowProtectedPaths: true") == {"ci", "threadline"}
    assert allowed("    allowProtectedPaths: [threadline]") == {"threadline"}


async def start(settings: Settings, gh: FakeGitHub, tmp: Path, allow: str) -> Any:
    path = tmp / "threadline.yml"
    path.write_text(AGENT.format(allow=allow), encoding="utf-8")
    gh.add_commit(REPO, {"src/retry.py": b"def retry():\n    pass\n", "old.txt": b"a\nb\n"})
    return run_app(github_settings(settings, gh, str(path)))


def results(rig: GitHubRig, session_id: str) -> list[dict[str, Any]]:
    return [
        e.data
        for e in rig.app.runtime.sessions.store.transcript(session_id)
        if e.kind == "tool_result" and e.data["tool"] == "propose_change"
    ]


async def test_a_ci_change_is_refused_unless_allowed(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    async with await start(settings, fake_github, tmp_path, "") as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline tidy")
        await eventually(lambda: rig.replies(7)[-1:] == ["proposed"], "the turn")
        [session] = rig.sessions()
        [result] = results(rig, session.id)
        assert not result["ok"]
        assert ".github/workflows/ci.yml" in result["content"]
        assert "allowProtectedPaths" in result["content"]
        assert app.runtime.sessions.approvals.change_sets(session.id) == []
        assert "Awaiting approval" not in rig.status(7)


@pytest.fixture
async def allowed(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    async with await start(settings, fake_github, tmp_path, "    allowProtectedPaths: [ci]") as app:
        yield GitHubRig(app, fake_github)


async def test_the_gate_lists_files_with_a_diffstat_and_flags_protected_ones(
    allowed: GitHubRig,
) -> None:
    rig = allowed
    await rig.comment(7, "@threadline tidy")
    await eventually(lambda: "**Awaiting approval**" in rig.status(7), "the gate")
    status = rig.status(7)
    assert "Files changed: 4 (+4 -3)" in status
    assert "- `src/retry.py` +2 -1" in status
    assert "- `docs/new.md` (new) +1 -0" in status
    assert "- `old.txt` (deleted) +0 -2" in status
    assert "- `.github/workflows/ci.yml` (new) +1 -0" in status
    assert "[!WARNING]" in status
    assert "CI configuration: `.github/workflows/ci.yml`" in status


async def test_the_allowance_is_checked_again_when_the_change_is_applied(
    allowed: GitHubRig,
) -> None:
    rig = allowed
    await rig.comment(7, "@threadline tidy")
    await eventually(lambda: rig.sessions()[0].state == "awaiting_approval", "waiting")
    # The server's configuration changed meanwhile: the agent may no longer touch CI.
    service = rig.app.runtime.sessions
    agents = service.agents
    real = agents.agent

    class Narrowed:
        def agent(self, agent_id: str | None) -> Any:
            from dataclasses import replace

            return replace(real(agent_id), allow_protected=frozenset())

        def __getattr__(self, name: str) -> Any:
            return getattr(agents, name)

    service.agents = Narrowed()
    await rig.comment(7, "/approve")
    await eventually(lambda: any("not applied" in r.lower() for r in rig.replies(7)), "refused")
    assert any("protected paths" in r for r in rig.replies(7))
    assert rig.gh.requests_to("POST", r"/repos/.*/git/.*") == []
