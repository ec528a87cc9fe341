"""`workspace.setup` steps: run once per workspace before the agent starts, with network;
the agent's own commands stay without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.agents.config import parse_config
from bot.agents.yamlcheck import ConfigFileError
from bot.config import Settings
from tests.conftest import needs_bwrap, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, github_settings

# Connects to the test's loopback port: exit 0 when it can, 1 when it cannot.
CONNECT = "import socket, sys; socket.create_connection(('127.0.0.1', {port}), 2); print('reached')"
AGENTS = """
agents:
  builder:
    engine: script
    workspace:
      mode: read-write
      setup:
        - [python3, -c, "{connect}"]
        - "echo installed > deps.txt"
    active_tools: [reply, run_command]
    script:
      - match: task
        do:
          - call: {{tool: run_command, args: {{command: [python3, -c, "{connect}"]}}}}
          - call: {{tool: run_command, args: {{command: [cat, deps.txt]}}}}
          - reply: "tried"
      - do: [reply: "heard {{input}}"]
sessions:
  keepSessionOpenForComments: true
"""

pytestmark = needs_bwrap


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    reached: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append("connection")
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, reached


@pytest.fixture
async def rig(
    settings: Settings, tmp_path: Path, workspace_dir: Path, listener: tuple[int, list[str]]
) -> AsyncIterator[GitHubRig]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        connect = CONNECT.format(port=listener[0])
        config.write_text(AGENTS.format(connect=connect), encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            yield GitHubRig(app, gh)


def _commands(rig: GitHubRig) -> list[dict[str, Any]]:
    session = rig.sessions()[0]
    events = rig.app.runtime.sessions.store.transcript(session.id)
    return [e.data for e in events if e.kind == "command"]


async def test_setup_gets_network_and_the_agents_commands_do_not(
    rig: GitHubRig, listener: tuple[int, list[str]]
) -> None:
    await rig.comment(7, "@threadline build it")
    await eventually(lambda: "tried" in rig.replies(7), "the first turn")
    setup, install, agent_connect, agent_cat = _commands(rig)
    assert setup["setup"] is True
    assert setup["exit_code"] == 0
    assert "reached" in setup["output"]
    assert install["setup"] is True
    assert install["exit_code"] == 0
    assert "setup" not in agent_connect
    assert agent_connect["exit_code"] == 1  # no network for the agent's own command
    assert "reached" not in agent_connect["output"]
    assert agent_cat["output"].strip() == "installed"  # the setup ran before the agent
    assert listener[1] == ["connection"]  # only the setup step's
    # Once per workspace: the next turn does not run it again.
    await rig.comment(7, "and again")
    await eventually(lambda: "heard and again" in rig.replies(7), "the second turn")
    assert len([c for c in _commands(rig) if c.get("setup")]) == 2


def test_a_setup_step_is_a_string_or_an_argv() -> None:
    text = (
        "agents:\n  a:\n    engine: script\n    script: [{do: [reply: hi]}]\n"
        "    workspace: {mode: read-only, setup: [[make], 3]}\n"
    )
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text)
    assert "agents.a.workspace.setup[1]: expected a list of commands" in str(raised.value)
