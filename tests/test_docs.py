"""The README stays true: every setting and every command it should name, it names."""

from __future__ import annotations

from pathlib import Path

from bot.cli import build_parser
from bot.config import SETTINGS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert missing == []


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = [name for name in commands if f"`threadline {name}" not in README]
    assert missing == []


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_example_agent_files_load() -> None:
    from bot.agents.config import load_config
    from bot.agents.repo_config import narrow, parse_repo_config

    assert list(load_config(EXAMPLES / "threadline.yml").agents) == ["reviewer"]
    keys = {"OPENAI_API_KEY": "sk-example", "ANTHROPIC_API_KEY": "sk-example"}
    server = load_config(EXAMPLES / "llm-agents.yml", keys)
    assert server.agent().agent_ids == ("security", "performance", "api")
    text = (EXAMPLES / "repo-threadline.yml").read_text(encoding="utf-8")
    narrowed = narrow(server, parse_repo_config(text, ".github/threadline.yml", server))
    assert list(narrowed.agents) == ["coordinator", "security"]
    approvals = load_config(EXAMPLES / "approvals.yml")
    assert approvals.agent("fix-flow").engine == "chain"
