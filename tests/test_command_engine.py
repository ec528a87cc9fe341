"""The `command` engine end to end: a webhook comment starts a session whose agent is a
CLI coding agent (fake Claude Code and Codex CLIs from tests/fakes/, printing those
programs' streamed shapes), run in the session's sandboxed worktree; its events land in
the transcript and the status comment, and a follow-up comment resumes the CLI's own
session."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.agents.config import parse_config
from bot.agents.yamlcheck import ConfigFileError
from bot.config import Settings
from tests.conftest import needs_bwrap, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import DEFAULT_KEY, FakeAnthropic, Reply
from tests.test_sessions import REPO, GitHubRig, eventually, github_settings

FAKES = Path(__file__).parent / "fakes"
KEY = "sk-fake-command-engine-0123456789"
AGENTS = f"""
providers:
  anth:
    kind: anthropic
    baseUrl: http://127.0.0.1:9/anthropic
    apiKeyEnv: TL_TEST_CLI_KEY
  oai:
    kind: openai
    baseUrl: http://127.0.0.1:9/v1
    apiKeyEnv: TL_TEST_CLI_KEY
agents:
  claude:
    engine: command
    command: claude
    program: {FAKES / "claude_cli.py"}
    provider: anth
    model: claude-fake-1
    workspace: read-write
  codex:
    engine: command
    command: codex
    program: {FAKES / "codex_cli.py"}
    provider: oai
    workspace: read-write
  shout:
    engine: command
    command: generic
    program: /usr/bin/tr
    args: [a-z, A-Z]
    workspace: read-only
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    userSignals: {{explicit: ["/done"]}}
"""

pytestmark = needs_bwrap


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path: Path,
    workspace_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[GitHubRig]:
    monkeypatch.setenv("TL_TEST_CLI_KEY", KEY)
    monkeypatch.setenv("THREADLINE_SECRET_FOR_TEST", "do-not-leak")
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        config.write_text(f"defaultAgent: {request.param}\n{AGENTS}", encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            yield GitHubRig(app, gh)


def _events(rig: GitHubRig, kind: str) -> list[dict[str, Any]]:
    session = rig.sessions()[0]
    return [e.data for e in rig.app.runtime.sessions.store.transcript(session.id) if e.kind == kind]


def _seen(rig: GitHubRig) -> list[dict[str, Any]]:
    texts = [m["text"] for m in _events(rig, "message") if m["text"].startswith("SEEN ")]
    return [json.loads(text.removeprefix("SEEN ")) for text in texts]


def _everything(rig: GitHubRig) -> str:
    session = rig.sessions()[0]
    events = rig.app.runtime.sessions.store.transcript(session.id)
    return json.dumps([e.data for e in events]) + "\n".join(rig.bot_comments(7))


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
async def test_claude_code_runs_in_the_workspace_and_resumes_its_session(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline write some notes")
    await eventually(lambda: "Wrote notes.txt" in rig.status(7), "the answer")
    [seen] = _seen(rig)
    assert seen["argv"][:4] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert "--resume" not in seen["argv"]
    assert seen["argv"][4:6] == ["--model", "claude-fake-1"]
    assert seen["base_url"] == "http://127.0.0.1:9/anthropic"
    assert seen["key"] == "[redacted]"  # it had the key, and the transcript does not
    assert seen["threadline"] == []
    assert seen["cwd"] == "/workspace"
    assert seen["home"] == "/home/agent"
    assert "write some notes" in seen["task"]
    [call] = _events(rig, "cli_tool_call")
    assert (call["tool"], call["id"], call["cli"]) == ("Write", "toolu_1", "claude")
    [result] = _events(rig, "cli_tool_result")
    assert result["ok"] is True
    assert "notes.txt" in result["content"]
    [cost] = _events(rig, "cli_result")
    assert cost["cost_usd"] == 0.0123
    assert cost["turns"] == 2
    [usage] = _events(rig, "usage")
    assert (usage["input_tokens"], usage["output_tokens"]) == (150, 40)
    assert usage["model"] == "claude-fake-1"
    assert "Write" in rig.status(7)
    assert "$0.0123" in rig.status(7)
    [diff] = _events(rig, "worktree_diff")
    assert "+++ b/notes.txt" in diff["diff"]
    session_id = _events(rig, "cli_started")[0]
    assert session_id["resume"] is None
    # A follow-up comment: the CLI resumes its own session (its home kept the file).
    await rig.comment(7, "and some more")
    await eventually(lambda: len(_seen(rig)) == 2, "the second turn")
    first, second = _seen(rig)
    [remembered] = [m["message"] for m in _events(rig, "conversation")][:1]
    resumed = remembered["session_id"]
    assert resumed
    assert f"(session {resumed})" in rig.status(7)
    assert first["resumed"] is None
    assert second["resumed"] == resumed
    assert second["argv"][-2:] == ["--resume", resumed]
    await eventually(lambda: len(_events(rig, "worktree_diff")) == 2, "the second diff")
    assert KEY not in _everything(rig)
    # The CLI's home goes with the session's worktree.
    store = rig.app.runtime.sessions.workspaces.spaces.store  # type: ignore[union-attr]
    home = store.agent_home(rig.sessions()[0].id)
    assert (home / ".claude" / "projects" / "-workspace" / f"{resumed}.jsonl").exists()
    await rig.comment(7, "/done")
    await eventually(lambda: not home.exists(), "the CLI's home is removed")


@pytest.mark.parametrize("rig", ["codex"], indirect=True)
async def test_codex_commands_and_file_changes_reach_the_transcript(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline look around")
    await eventually(lambda: "add codex.txt" in rig.status(7), "the answer")
    [seen] = _seen(rig)
    assert seen["argv"][:3] == ["exec", "--json", "--skip-git-repo-check"]
    assert seen["argv"][-1] == "-"
    assert "resume" not in seen["argv"]
    assert seen["base_url"] == "http://127.0.0.1:9/v1"
    assert seen["key"] == "[redacted]"
    assert seen["anthropic"] is None
    assert seen["threadline"] == []
    [command] = _events(rig, "command")
    assert command["argv"] == ["ls"]
    assert command["exit_code"] == 0
    assert "README.md" in command["output"]
    assert command["via"] == "codex"
    [change] = _events(rig, "cli_file_change")
    assert change["changes"] == [{"path": "codex.txt", "kind": "add"}]
    [usage] = _events(rig, "usage")
    assert (usage["input_tokens"], usage["output_tokens"]) == (1200, 345)
    assert "$ ls" in rig.status(7)
    assert "add codex.txt" in rig.status(7)
    await rig.comment(7, "again")
    await eventually(lambda: len(_seen(rig)) == 2, "the second turn")
    await eventually(lambda: len(_events(rig, "usage")) == 2, "the second turn's end")
    again = _seen(rig)[1]["argv"]
    assert again[:2] == ["exec", "resume"]
    assert again[-2:] == ["0199a213-81c0-7800-8aa1-bbab2a035a53", "-"]
    assert KEY not in _everything(rig)


@pytest.mark.parametrize("rig", ["claude", "codex"], indirect=True)
async def test_the_cli_resumes_its_own_session_after_another_worker_takes_over(
    rig: GitHubRig,
) -> None:
    await rig.comment(7, "@threadline start the work")
    await eventually(lambda: len(_events(rig, "worktree_diff")) == 1, "the first turn")
    [remembered] = [m["message"] for m in _events(rig, "conversation")]
    assert remembered["state"]  # the CLI's records, packed into the transcript
    # The worker that held the worktree and the CLI's home is gone, and both with it.
    session = rig.sessions()[0]
    runtime = rig.app.runtime.sessions.workspaces
    assert runtime is not None
    home = runtime.spaces.store.agent_home(session.id)
    await runtime.spaces.close(session.id)
    assert not home.exists()
    await rig.comment(7, "carry on")
    await eventually(lambda: len(_events(rig, "worktree_diff")) == 2, "the second turn")
    started = _events(rig, "cli_started")
    assert started[1]["resume"] == remembered["session_id"]
    assert started[1]["restored_files"] >= 1
    assert [e["error"] for e in _events(rig, "failed")] == []
    second = _seen(rig)[1]
    if rig.sessions()[0].agent_id == "claude":
        assert second["resumed"] == remembered["session_id"]  # it found its session file
    else:
        assert second["argv"][:2] == ["exec", "resume"]
    # Both turns' work is in the rebuilt worktree (the first from the stored diff).
    diffs = _events(rig, "worktree_diff")
    first_files = [line for line in diffs[0]["diff"].splitlines() if line.startswith("+++ ")]
    assert all(line in diffs[1]["diff"] for line in first_files)


@pytest.mark.parametrize("rig", ["shout"], indirect=True)
async def test_a_generic_program_reads_the_task_and_answers(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline hello there")
    await eventually(lambda: "HELLO THERE" in rig.status(7), "the answer")
    [started] = _events(rig, "cli_started")
    assert started["argv"] == ["/usr/bin/tr", "a-z", "A-Z"]


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        (
            "    command: claude\n    workspace: none\n",
            "agents.a.workspace: engine command runs its CLI in a workspace",
        ),
        (
            "    command: cursor\n    workspace: read-only\n",
            "agents.a.command: expected which CLI runs the agent",
        ),
        ("    command: generic\n    workspace: read-only\n", "agents.a.program: required"),
    ],
)
def test_a_command_agent_is_checked_with_its_line(agent: str, problem: str) -> None:
    text = "agents:\n  a:\n    engine: command\n" + agent
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text)
    assert problem in str(raised.value)


# --- the real Claude Code CLI (opt-in) ------------------------------------------------------

REAL_CLAUDE = os.environ.get("TL_TEST_REAL_CLAUDE", "")  # the path of an installed `claude`


class _LenientAnthropic(FakeAnthropic):
    """The fake Anthropic API, taking the `system`-role messages Claude Code 2.1 sends."""

    def _validate_messages(self, messages: list[Any]) -> bool:
        kept = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
        return super()._validate_messages(kept)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CLAUDE, reason="opt-in: TL_TEST_REAL_CLAUDE=/path/to/claude")
async def test_the_real_claude_code_cli_answers_through_the_fake_anthropic_api(
    settings: Settings, tmp_path: Path, workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_TEST_REAL_KEY", DEFAULT_KEY)
    async with _LenientAnthropic() as api, FakeGitHub() as gh:
        api.responder = lambda request: Reply(text=["Hello from ", "the fake model"])
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        config.write_text(
            f"""
providers:
  anth: {{kind: anthropic, baseUrl: "{api.base_url}", apiKeyEnv: TL_TEST_REAL_KEY}}
agents:
  claude:
    engine: command
    command: claude
    program: {REAL_CLAUDE}
    provider: anth
    workspace: {{mode: read-write, network: true}}
sessions:
  keepSessionOpenForComments: true
""",
            encoding="utf-8",
        )
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            rig = GitHubRig(app, gh)
            await rig.comment(7, "@threadline say hello")
            await eventually(
                lambda: "Hello from the fake model" in rig.status(7), "the answer", within=90
            )
            [started] = _events(rig, "cli_started")
            assert started["resume"] is None
            [remembered] = [m["message"] for m in _events(rig, "conversation")]
            await rig.comment(7, "once more")
            await eventually(lambda: len(_events(rig, "cli_started")) == 2, "the second turn")
            await eventually(lambda: len(_events(rig, "usage")) >= 2, "its end", within=90)
            assert _events(rig, "cli_started")[1]["resume"] == remembered["session_id"]
            assert api.requests
