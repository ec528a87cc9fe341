"""Workflows: steps run as linked sessions, a reviewer sends work back, a maintainer's
gate between steps applies the proposed change, and revisions stop at the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import Settings
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]

AGENTS = """
agents:
  executor:
    engine: script
    active_tools: [task_completed, propose_change]
    script:
      - when: 'Feedback to address'
        do:
          - call:
              tool: propose_change
              args:
                title: Keep the last error (revised)
                files: [{path: src/retry.py, content: "raise LastError  # revised\\n"}]
          - task_completed: patch revised
      - do:
          - call:
              tool: propose_change
              args:
                title: Keep the last error
                files: [{path: src/retry.py, content: "raise LastError\\n"}]
          - task_completed: patch ready
  reviewer:
    engine: script
    active_tools: [task_completed]
    script:
      - when: 'patch revised'
        do:
          - task_completed: "LGTM"
      - do:
          - task_completed: "CHANGES: keep a comment on the error"
  auditor:
    engine: script
    active_tools: [task_completed]
    script:
      - do:
          - task_completed: "audited: {input}"
workflows:
  fix:
    description: execute, review, approve, audit
    maxRevisions: 2
    steps:
      - {name: execute, agent: executor}
      - {name: review, agent: reviewer, reviewOf: execute, approval: true}
      - {name: audit, agent: auditor}
"""


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    fake_github.add_commit(REPO, {"src/retry.py": b"pass\n"})
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        yield GitHubRig(app, fake_github)


def run_of(rig: GitHubRig) -> Any:
    [run] = [s for s in rig.sessions() if s.parent_id is None]
    return run


async def at_the_gate(rig: GitHubRig) -> None:
    """The status comment shows the gate and the run's row says so (the comment can land
    a moment before the run's state is written)."""
    await eventually(lambda: "**Awaiting approval**" in rig.status(7), "the gate", 30)
    await eventually(lambda: run_of(rig).state == "awaiting_approval", "the run waits")


def steps_of(rig: GitHubRig, session_id: str) -> list[tuple[str, str, str | None]]:
    return [
        (child.agent_id, child.state, child.output)
        for child in rig.app.runtime.sessions.store.children(session_id)
    ]


async def test_a_chain_revises_waits_for_approval_applies_and_audits(rig: GitHubRig) -> None:
    await rig.comment(7, "/agent fix make retries keep the last error")
    await at_the_gate(rig)
    [run] = [s for s in rig.sessions() if s.parent_id is None]
    # execute -> review (changes) -> execute again -> review (LGTM), each its own session.
    assert steps_of(rig, run.id) == [
        ("executor", "closed", "patch ready"),
        ("reviewer", "closed", "CHANGES: keep a comment on the error"),
        ("executor", "closed", "patch revised"),
        ("reviewer", "closed", "LGTM"),
    ]
    assert "- [x] review (reviewer)" in rig.status(7)
    assert "- [ ] audit (auditor)" in rig.status(7)
    assert "(revised)" in rig.status(7)

    await rig.comment(7, "/approve")
    await eventually(lambda: any("Workflow `fix` finished" in r for r in rig.replies(7)), "done")
    [pull_request] = rig.gh.requests_to("POST", r"/repos/.*/pulls$")
    assert pull_request.json["title"] == "Keep the last error (revised)"
    assert "Closes #7" in pull_request.json["body"]
    audit = steps_of(rig, run.id)[-1]
    assert audit[0] == "auditor"
    assert audit[2] is not None
    assert audit[2].startswith("audited: ")
    assert "Output of the previous step (review)" in audit[2]
    # Every hand-off is in the run's transcript, each step's work in its own.
    store = rig.app.runtime.sessions.store
    kinds = [e.kind for e in store.transcript(run.id)]
    assert kinds.count("delegation_started") == 5
    assert kinds.count("delegation_finished") == 5
    assert "approved" in kinds
    for child in store.children(run.id):
        child_kinds = [e.kind for e in store.transcript(child.id)]
        assert child_kinds[0] == "launched"
        assert "tool_call" in child_kinds


async def test_request_changes_loops_back_at_most_the_limit(rig: GitHubRig) -> None:
    await rig.comment(7, "/agent fix make retries keep the last error")
    await at_the_gate(rig)
    # The reviewer's loop used one revision of two; a maintainer's request uses the second.
    await rig.comment(7, "/request-changes log the error too")
    await eventually(lambda: len(steps_of(rig, run_of(rig).id)) == 6, "looped back", 30)
    await eventually(lambda: run_of(rig).state == "awaiting_approval", "waiting again")
    run = run_of(rig)
    executor_again = steps_of(rig, run.id)[4]
    assert executor_again[:2] == ("executor", "closed")
    # A third revision is past the limit: the run fails and says why.
    await rig.comment(7, "/request-changes once more")
    await eventually(lambda: run_of(rig).state == "failed", "the run fails", 30)
    await eventually(lambda: "revision limit reached" in rig.status(7), "the status says why")
    assert rig.gh.requests_to("POST", r"/repos/.*/pulls$") == []


async def test_cancel_stops_the_whole_chain(rig: GitHubRig) -> None:
    await rig.comment(7, "/agent fix make retries keep the last error")
    await at_the_gate(rig)
    await rig.comment(7, "/cancel")
    await eventually(lambda: run_of(rig).state == "closed", "cancelled")
    run = run_of(rig)
    assert run.close_reason == "cancelled"
    assert all(state != "busy" for _, state, _ in steps_of(rig, run.id))


async def test_runs_list_and_show(
    rig: GitHubRig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await rig.comment(7, "/agent fix make retries keep the last error")
    await at_the_gate(rig)
    run = run_of(rig)
    # The CLI on the server's database and agents file.
    monkeypatch.setenv("THREADLINE_DATABASE_URL", str(rig.app.engine.url.render_as_string(False)))
    monkeypatch.setenv("THREADLINE_CONFIG", rig.app.runtime.config.source or "")
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", "x")
    assert main(["runs", "list"]) == 0
    listed = capsys.readouterr().out
    assert run.id in listed
    assert "awaiting_approval" in listed
    assert main(["runs", "show", run.id]) == 0
    shown = capsys.readouterr().out
    assert "executor" in shown
    assert "reviewer" in shown
    assert "waiting" in shown
    assert "Keep the last error (revised)" in shown
