"""A repository's own configuration file: it can only narrow the server's, its problems are
answered with their lines, and the previous valid file stays in force meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.agents.config import parse_config
from bot.agents.repo_config import narrow, parse_repo_config
from bot.agents.yamlcheck import ConfigFileError
from bot.config import Settings
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.test_sessions import (
    REPO,
    GitHubRig,
    eventually,
    fake_github,
    github_settings,
)

__all__ = ["fake_github"]

SERVER = """
agents:
  helper:
    engine: script
    description: helps
    tools: [reply, update_status, task_completed]
    budget: {tokens: 1000, turns: 10}
    script:
      - do:
          - reply: "helper: {input}"
  other:
    engine: script
    script:
      - do:
          - reply: "other: {input}"
sessions:
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {maxDurationMinutes: 30}
"""
FILE = ".github/threadline.yml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as raised:
        parse_repo_config(text, FILE, parse_config(SERVER))
    return raised.value.problems


def test_a_repository_file_narrows_the_server_configuration() -> None:
    server = parse_config(SERVER)
    text = (
        "agents: [helper]\n"
        "triggers: {label: null}\n"
        "sessions:\n"
        "  keepSessionOpenForComments: false\n"
        "  exitCriteria: {timeLimit: {maxDurationMinutes: 5}}\n"
        "agentSettings:\n"
        "  helper:\n"
        "    active_tools: [reply]\n"
        "    budget: {tokens: 200}\n"
    )
    config = narrow(server, parse_repo_config(text, FILE, server))
    assert list(config.agents) == ["helper"]
    assert config.default_agent == "helper"
    assert config.triggers.label is None
    assert config.triggers.mention
    assert config.sessions.keep_session_open_for_comments is False
    assert config.sessions.exit_criteria.max_duration_minutes == 5
    helper = config.agent("helper")
    assert helper.tools == ("reply",)
    assert (helper.budget.tokens, helper.budget.turns) == (200, 10)  # turns: the server's


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "agents: [helper, admin]\n",
            f"{FILE}:1: agents[1]: the server has no agent 'admin'; it has helper, other",
        ),
        (
            "agents: [helper]\ndefaultAgent: other\n",
            f"{FILE}:2: defaultAgent: agent 'other' is not among this file's agents",
        ),
        (
            "sessions:\n  exitCriteria:\n    timeLimit: {maxDurationMinutes: 90}\n",
            f"{FILE}:3: sessions.exitCriteria.timeLimit.maxDurationMinutes: at most 30 here "
            "(the server's limit); got 90",
        ),
        (
            "triggers:\n  label: deploy-now\n",
            f"{FILE}:2: triggers.label: a repository can only turn label triggers off (null)",
        ),
        (
            "agentSettings:\n  helper:\n    active_tools: [reply, delegate_to_sub_agent]\n",
            f"{FILE}:3: agentSettings.helper.active_tools[1]: the server does not allow agent "
            "'helper' the tool 'delegate_to_sub_agent'",
        ),
        (
            "agentSettings:\n  helper:\n    budget: {tokens: 5000}\n",
            f"{FILE}:3: agentSettings.helper.budget.tokens: at most 1000 here (the server's "
            "limit); got 5000",
        ),
        (
            "agents: []\n",
            f"{FILE}:1: agents: name at least one agent (helper, other); leave `agents` out to "
            "allow all of the server's",
        ),
        (
            "sesions: {}\n",
            f"{FILE}:1: sesions: unknown key; expected one of agents, defaultAgent, triggers, "
            "sessions, agentSettings (did you mean 'sessions'?)",
        ),
    ],
)
def test_anything_wider_than_the_server_is_a_problem_with_its_line(
    text: str, expected: str
) -> None:
    assert problems(text) == [expected]


def test_a_trigger_the_server_turned_off_stays_off() -> None:
    server = SERVER + "triggers:\n  assignment: false\n"
    with pytest.raises(ConfigFileError) as raised:
        parse_repo_config("triggers: {assignment: true}\n", FILE, parse_config(server))
    assert raised.value.problems == [
        f"{FILE}:1: triggers.assignment: a repository can only turn this off (false); "
        "the server's value is false"
    ]


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    path = tmp_path / "threadline.yml"
    path.write_text(SERVER, encoding="utf-8")
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        app.runtime._repo_configs._ttl = 0.0  # type: ignore[union-attr]  # read on every trigger
        yield GitHubRig(app, fake_github)


async def test_the_repository_file_applies_and_a_broken_one_keeps_the_last_valid(
    rig: GitHubRig,
) -> None:
    rig.gh.add_file(REPO, FILE, b"agents: [other]\n")
    await rig.comment(12, "@threadline first")
    await eventually(lambda: rig.replies(12)[-1:] == ["other: first"], "the repository's agent")
    [session] = rig.sessions()
    assert session.agent_id == "other"
    await rig.comment(12, "/done")
    await eventually(lambda: rig.sessions()[0].state == "closed", "closed")

    # A broken file: its problems are answered, the last valid file stays in force.
    rig.gh.add_file(REPO, FILE, b"agents: [other, root]\n")
    await rig.comment(12, "@threadline second")
    await eventually(lambda: rig.replies(12)[-1:] == ["other: second"], "still the same agent")
    notice = next(r for r in rig.replies(12) if "could not use" in r)
    assert f"`{FILE}:1: agents[1]: the server has no agent 'root'" in notice
    await rig.comment(12, "/done")
    await eventually(lambda: rig.sessions()[0].state == "closed", "closed again")

    # /agent for an agent the file leaves out names only those it allows.
    rig.gh.add_file(REPO, FILE, b"agents: [other]\n")
    await rig.comment(12, "/agent helper do it")
    await eventually(
        lambda: rig.replies(12)[-1] == "There is no agent `helper` here; agents: `other`.",
        "only the agents the file allows are offered",
    )

    # Mentions turned off by the repository: no session, no answer.
    rig.gh.add_file(REPO, FILE, b"triggers: {mention: false}\n")
    before = len(rig.sessions())
    await rig.comment(12, "@threadline third")
    await rig.app.drain()
    assert len(rig.sessions()) == before


async def test_an_empty_agent_list_is_a_problem_answered_and_triggers_still_work(
    rig: GitHubRig,
) -> None:
    rig.gh.add_file(REPO, FILE, b"agents: []\n")
    await rig.comment(12, "@threadline hello")
    await eventually(lambda: rig.replies(12)[-1:] == ["helper: hello"], "the server's agent")
    notice = next(r for r in rig.replies(12) if "could not use" in r)
    assert f"`{FILE}:1: agents: name at least one agent" in notice
    [session] = rig.sessions()
    assert session.agent_id == "helper"
