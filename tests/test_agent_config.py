"""bot.agents.config: threadline.yml into frozen dataclasses; every problem with file and line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bot.agents.base import ALL_TOOLS, REPLY, SESSION_TOOLS, TASK_COMPLETED, UPDATE_STATUS
from bot.agents.config import (
    ECHO_ID,
    Config,
    ConfigFileError,
    ExitCriteria,
    SessionPolicy,
    Triggers,
    load_config,
    parse_config,
)
from bot.agents.models import Price
from bot.agents.script import (
    SCRIPT_OPTION,
    Fail,
    Reply,
    Rule,
    Say,
    Sleep,
    TaskCompleted,
    UpdateStatus,
)
from bot.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "threadline.yml"

FULL = """\
agents:
  reviewer:
    engine: script
    description: Reviews pull requests
    systemPrompt: Be specific.
    tools: [reply, task_completed, reply]
    script:
      - when: '(?i)^/fix\\b'
        match: comment
        do:
          - update_status: {steps: [Read, Fix], done: 1, summary: fixing}
          - reply: "On it, @{author}"
          - say: noted
          - sleep: 0.05
          - task_completed: "fixed {input}"
      - match: task
        do:
          - fail: "no"
          - task_completed:
  helper:
    engine: script
    script:
      - do: [reply: hi]
defaultAgent: helper
sessions:
  listenToComments: false
  keepSessionOpenForComments: true
  exitCriteria:
    timeLimit: {maxDurationMinutes: 0.05}
    userSignals: {explicit: ["/done", "thanks"]}
  idleExpiryMinutes: 0.5
  maxLifetimeMinutes: 2
  maxLiveSessions: 3
  maxExtendMinutes: 1.5
  feedOutsiderComments: true
triggers:
  mention: false
  label: null
  assignment: false
"""

AGENT = """\
agents:
  reviewer:
    engine: script
    script:
      - do: [reply: hi]
"""

ALL_TOOL_NAMES = ", ".join(ALL_TOOLS)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        parse_config(text, "threadline.yml")
    return caught.value.problems


# --- defaults ---------------------------------------------------------------------------


def test_no_file_gives_the_built_in_echo_agent() -> None:
    config = load_config(None)
    assert config == Config.default()
    assert list(config.agents) == [ECHO_ID]
    assert config.default_agent == ECHO_ID
    echo = config.agent()
    assert (echo.id, echo.engine, echo.tools) == (ECHO_ID, "script", SESSION_TOOLS)
    assert config.source is None


def test_the_built_in_default_keeps_sessions_open_for_follow_ups() -> None:
    sessions = Config.default().sessions
    assert sessions == SessionPolicy(keep_session_open_for_comments=True)
    assert sessions.listen_to_comments is True
    assert sessions.exit_criteria == ExitCriteria(10.0, ("/done", "thanks"))
    assert (sessions.idle_expiry_minutes, sessions.max_lifetime_minutes) == (10.0, 60.0)
    assert (sessions.max_live_sessions, sessions.max_extend_minutes) == (100, 60.0)
    assert sessions.feed_outsider_comments is False
    assert Config.default().triggers == Triggers(mention=True, label="threadline", assignment=True)


def test_an_empty_file_takes_the_file_defaults() -> None:
    config = parse_config("# nothing yet\n", "threadline.yml")
    assert list(config.agents) == [ECHO_ID]
    assert config.sessions == SessionPolicy()  # keepSessionOpenForComments: false, as in the seed
    assert config.source == "threadline.yml"


def test_a_file_without_agents_keeps_the_built_in_agent() -> None:
    config = parse_config("sessions:\n  idleExpiryMinutes: 3\n")
    assert config.default_agent == ECHO_ID
    assert config.sessions.idle_expiry_minutes == 3.0


def test_an_agent_gets_all_session_tools_by_default() -> None:
    config = parse_config(AGENT)
    assert config.agent("reviewer").tools == SESSION_TOOLS
    assert config.default_agent == "reviewer"  # the first agent


# --- a valid file ---------------------------------------------------------------------------


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "threadline.yml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(str(path))
    assert config.source == str(path)
    assert list(config.agents) == ["reviewer", "helper"]
    assert config.default_agent == "helper"
    reviewer = config.agent("reviewer")
    assert (reviewer.description, reviewer.system_prompt) == (
        "Reviews pull requests",
        "Be specific.",
    )
    assert reviewer.tools == (REPLY, TASK_COMPLETED)  # a name listed twice counts once
    assert config.sessions == SessionPolicy(
        listen_to_comments=False,
        keep_session_open_for_comments=True,
        exit_criteria=ExitCriteria(0.05, ("/done", "thanks")),
        idle_expiry_minutes=0.5,
        max_lifetime_minutes=2.0,
        max_live_sessions=3,
        max_extend_minutes=1.5,
        feed_outsider_comments=True,
    )
    assert config.triggers == Triggers(mention=False, label=None, assignment=False)


def test_script_rules_are_parsed_and_compiled() -> None:
    rules = parse_config(FULL).agent("reviewer").options[SCRIPT_OPTION]
    assert rules == (
        Rule(
            when=re.compile(r"(?i)^/fix\b"),
            kind="comment",
            actions=(
                UpdateStatus(("Read", "Fix"), 1, "fixing"),
                Reply("On it, @{author}"),
                Say("noted"),
                Sleep(0.05),
                TaskCompleted("fixed {input}"),
            ),
        ),
        Rule(kind="task", actions=(Fail("no"), TaskCompleted(""))),
    )


def test_the_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    reviewer = config.agent()
    assert reviewer.id == "reviewer"
    assert reviewer.tools == (UPDATE_STATUS, REPLY, TASK_COMPLETED)
    assert len(reviewer.options[SCRIPT_OPTION]) == 5


def test_config_is_frozen() -> None:
    config = parse_config(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.default_agent = "reviewer"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.agents["x"] = config.agent()  # type: ignore[index]
    with pytest.raises(TypeError):
        config.agent().options["script"] = ()  # type: ignore[index]


def test_an_unknown_agent_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Config.default().agent("nobody")


# --- problems, each with file:line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            AGENT + "sesions: {}\n",
            "threadline.yml:6: sesions: unknown key; expected one of providers, agents, workflows, defaultAgent, "
            "sessions, triggers, limits, status, schedules (did you mean 'sessions'?)",
            id="unknown top-level key",
        ),
        pytest.param(
            AGENT + "sessions:\n  idleExpiryMinute: 5\n",
            "threadline.yml:7: sessions.idleExpiryMinute: unknown key; expected one of "
            "listenToComments, keepSessionOpenForComments, exitCriteria, idleExpiryMinutes, "
            "maxLifetimeMinutes, maxLiveSessions, maxExtendMinutes, feedOutsiderComments, "
            "branchTemplate, approvalExcludesStarter, apiOverrides (did you mean 'idleExpiryMinutes'?)",
            id="unknown nested key",
        ),
        pytest.param(
            AGENT.replace("engine: script", "engine: gpt"),
            "threadline.yml:3: agents.reviewer.engine: unknown engine 'gpt'; use script, llm, command",
            id="bad engine",
        ),
        pytest.param(
            AGENT.replace("engine: script", "engine: command"),
            "threadline.yml:2: agents.reviewer.command: expected which CLI runs the agent: one "
            "of claude, codex, generic, got null",
            id="command engine without its CLI",
        ),
        pytest.param(
            AGENT.replace("    engine: script\n", "    description: x\n"),
            "threadline.yml:2: agents.reviewer.engine: required; use script, llm, command",
            id="missing engine",
        ),
        pytest.param(
            "agents:\n  reviewer:\n    engine: script\n",
            "threadline.yml:2: agents.reviewer.script: required for engine script: a list of rules",
            id="missing script",
        ),
        pytest.param(
            AGENT.replace("- do:", "- when: '(fix'\n        do:"),
            "threadline.yml:5: agents.reviewer.script[0].when: invalid regular expression "
            "'(fix': missing ), unterminated subpattern at position 0",
            id="bad regex",
        ),
        pytest.param(
            AGENT.replace("- do:", "- match: review\n        do:"),
            "threadline.yml:5: agents.reviewer.script[0].match: expected one of task, comment, "
            "operator, message, spawn, got 'review'",
            id="bad match kind",
        ),
        pytest.param(
            AGENT + "    tools:\n      - reply\n      - replies\n",
            "threadline.yml:8: agents.reviewer.tools[1]: unknown tool 'replies'; tools are "
            f"{ALL_TOOL_NAMES} (did you mean 'reply'?)",
            id="unknown tool",
        ),
        pytest.param(
            AGENT + "sessions:\n  exitCriteria:\n    timeLimit:\n      maxDurationMinutes: -5\n",
            "threadline.yml:9: sessions.exitCriteria.timeLimit.maxDurationMinutes: expected a "
            "positive number of minutes, got -5",
            id="negative minutes",
        ),
        pytest.param(
            AGENT + "sessions:\n  idleExpiryMinutes: true\n",
            "threadline.yml:7: sessions.idleExpiryMinutes: expected a positive number of "
            "minutes, got true",
            id="a flag is not minutes",
        ),
        pytest.param(
            AGENT + "sessions:\n  maxLiveSessions: 2.5\n",
            "threadline.yml:7: sessions.maxLiveSessions: expected a positive whole number, got 2.5",
            id="sessions are counted whole",
        ),
        pytest.param(
            AGENT + "defaultAgent: writer\n",
            "threadline.yml:6: defaultAgent: unknown agent 'writer'; agents are reviewer",
            id="unknown defaultAgent",
        ),
        pytest.param(
            "agents: {}\n",
            "threadline.yml:1: agents: at least one agent is required",
            id="empty agents",
        ),
        pytest.param(
            "# comment\nagents:\n",
            "threadline.yml:2: agents: at least one agent is required",
            id="null agents",
        ),
        pytest.param(
            AGENT.replace("reviewer:", "Reviewer:"),
            "threadline.yml:2: agents.Reviewer: agent ids are lowercase letters, digits, '_' "
            "and '-', starting with a letter or digit; got 'Reviewer'",
            id="bad agent id",
        ),
        pytest.param(
            AGENT.replace("reply: hi", "replyy: hi"),
            "threadline.yml:5: agents.reviewer.script[0].do[0].replyy: unknown action; actions "
            "are reply, update_status, task_completed, say, sleep, fail, call (did you mean 'reply'?)",
            id="unknown action",
        ),
        pytest.param(
            AGENT.replace("[reply: hi]", "[{reply: hi, say: ho}]"),
            "threadline.yml:5: agents.reviewer.script[0].do[0]: expected an action: a mapping "
            "with one key, one of reply, update_status, task_completed, say, sleep, fail, call; got "
            "a mapping",
            id="two actions in one",
        ),
        pytest.param(
            AGENT.replace("[reply: hi]", "[sleep: 31]"),
            "threadline.yml:5: agents.reviewer.script[0].do[0].sleep: expected a number of "
            "seconds from 0 to 30, got 31",
            id="sleep too long",
        ),
        pytest.param(
            AGENT.replace("[reply: hi]", "[update_status: {steps: [a, b], done: 3}]"),
            "threadline.yml:5: agents.reviewer.script[0].do[0].update_status.done: expected how "
            "many steps are done, from 0 to 2, got 3",
            id="more steps done than there are",
        ),
        pytest.param(
            AGENT.replace("[reply: hi]", "[reply: '']"),
            "threadline.yml:5: agents.reviewer.script[0].do[0].reply: expected non-empty text, "
            "got ''",
            id="empty reply",
        ),
        pytest.param(
            AGENT.replace("- do: [reply: hi]", "- when: x"),
            "threadline.yml:5: agents.reviewer.script[0].do: required",
            id="rule without actions",
        ),
        pytest.param(
            AGENT + "triggers:\n  label: ''\n",
            "threadline.yml:7: triggers.label: expected a label name, or null to turn label "
            "triggers off, got ''",
            id="empty label",
        ),
        pytest.param(
            AGENT + "triggers:\n  mention: true\n  mention: false\n",
            "threadline.yml:8: triggers.mention: given more than once (the last one would "
            "silently win)",
            id="duplicate key",
        ),
        pytest.param(
            AGENT + "sessions: [a\n",
            "threadline.yml:7: not valid YAML: while parsing a flow sequence, expected ',' or ']', "
            "but got '<stream end>'",
            id="invalid YAML",
        ),
        pytest.param(
            "- agents\n",
            "threadline.yml:1: expected a mapping with the keys providers, agents, workflows, defaultAgent, sessions, "
            "triggers, limits, status, schedules, got a list",
            id="not a mapping",
        ),
    ],
)
def test_each_problem_names_file_line_and_key(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_several_problems_are_reported_together_in_line_order() -> None:
    text = """\
defaultAgent: nobody
agents:
  reviewer:
    engine: gpt
  writer:
    engine: script
    tools: [post]
    script:
      - when: '['
        do: [reply: x]
sessions:
  maxLiveSessions: 0
"""
    assert problems(text) == [
        "threadline.yml:1: defaultAgent: unknown agent 'nobody'; agents are reviewer, writer",
        "threadline.yml:4: agents.reviewer.engine: unknown engine 'gpt'; use script, llm, command",
        "threadline.yml:7: agents.writer.tools[0]: unknown tool 'post'; tools are "
        f"{ALL_TOOL_NAMES}",
        "threadline.yml:9: agents.writer.script[0].when: invalid regular expression '[': "
        "unterminated character set at position 0",
        "threadline.yml:12: sessions.maxLiveSessions: expected a positive whole number, got 0",
    ]


def test_a_bad_agent_is_not_also_an_unknown_default() -> None:
    text = AGENT.replace("engine: script", "engine: gpt") + "defaultAgent: reviewer\n"
    assert problems(text) == [
        "threadline.yml:3: agents.reviewer.engine: unknown engine 'gpt'; use script, llm, command"
    ]


def test_a_value_from_an_alias_reports_the_line_that_uses_it() -> None:
    text = """\
agents:
  a:
    engine: script
    script: &rules
      - when: '('
        do: [reply: x]
  b:
    engine: script
    script: *rules
"""
    assert [problem.split(": ")[0:2] for problem in problems(text)] == [
        ["threadline.yml:5", "agents.a.script[0].when"],
        ["threadline.yml:9", "agents.b.script[0].when"],
    ]


def test_merge_keys_share_settings_between_agents() -> None:
    text = """\
agents:
  a: &base
    engine: script
    script: [{do: [reply: hi]}]
  b:
    <<: *base
    description: like a
"""
    config = parse_config(text)
    assert config.agent("b").options == config.agent("a").options
    assert config.agent("b").description == "like a"


def test_a_missing_file_is_a_config_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigFileError) as caught:
        load_config(missing)
    assert caught.value.problems == [
        f"{missing}: cannot read the agents file: No such file or directory"
    ]


def test_a_file_that_is_not_utf8_is_a_config_file_error(tmp_path: Path) -> None:
    path = tmp_path / "threadline.yml"
    path.write_bytes(b"agents: \xff\n")
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(path)


def test_config_file_errors_are_config_errors() -> None:
    # The CLI already prints a ConfigError's problems and refuses to start.
    with pytest.raises(ConfigError):
        parse_config("agents: {}\n")


# --- providers, llm agents and workflows --------------------------------------------------

LLM = """\
providers:
  local:
    kind: openai
    baseUrl: http://127.0.0.1:11434/v1
    defaults: {model: llama}
agents:
  helper:
    engine: llm
    provider: local
"""


def llm_problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        parse_config(text, "threadline.yml", environ or {})
    return caught.value.problems


def test_an_llm_agent_on_a_local_server_needs_no_key() -> None:
    config = parse_config(LLM, "threadline.yml", {})
    helper = config.agent("helper")
    assert helper.engine == "llm"
    assert "propose_change" not in helper.tools  # asked for by name only
    assert "read_file" in helper.tools


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            LLM.replace("    baseUrl: http://127.0.0.1:11434/v1\n", "    apiKeyEnv: MY_KEY\n"),
            "threadline.yml:4: providers.local.apiKeyEnv: the environment variable MY_KEY is "
            "not set (it should hold the API key)",
        ),
        (
            LLM.replace("kind: openai", "kind: gemini"),
            "threadline.yml:3: providers.local.kind: unknown provider kind 'gemini'; use "
            "openai, anthropic",
        ),
        (
            LLM.replace("    apiKeyEnv", "    x").replace(
                "    baseUrl: http://127.0.0.1:11434/v1\n", "    apiKeyEnv: sk-live-123\n"
            ),
            "threadline.yml:4: providers.local.apiKeyEnv: expected the name of an environment "
            "variable (not the key itself), got a value that is not a variable name",
        ),
        (
            LLM + "    tool_choice: {type: tool, name: sessions_send}\n",
            "threadline.yml:10: agents.helper.tool_choice: tool_choice names 'sessions_send', "
            "which is not in this agent's tools",
        ),
        (
            LLM + "    agentIds: [helper]\n",
            "threadline.yml:10: agents.helper.agentIds[0]: an agent cannot delegate to itself",
        ),
        (
            LLM + "workflows:\n  flow:\n    steps:\n      - {agent: nobody}\n",
            "threadline.yml:13: workflows.flow.steps[0].agent: unknown agent 'nobody'; agents "
            "are helper",
        ),
        (
            LLM + "workflows:\n  flow:\n    steps:\n      - {agent: helper, reviewOf: later}\n",
            "threadline.yml:13: workflows.flow.steps[0].reviewOf: expected the name of an "
            "earlier step, got 'later'",
        ),
        (
            LLM + "workflows:\n  helper:\n    steps: [{agent: helper}]\n",
            "threadline.yml:11: workflows.helper: 'helper' is already an agent's id; workflows "
            "and agents share one namespace",
        ),
    ],
)
def test_llm_and_workflow_problems_name_their_line(text: str, expected: str) -> None:
    assert llm_problems(text) == [expected]


def test_the_key_itself_is_never_echoed() -> None:
    text = LLM.replace("    baseUrl: http://127.0.0.1:11434/v1\n", "    apiKeyEnv: sk-live-123\n")
    assert all("sk-live-123" not in problem for problem in llm_problems(text))


# --- context windows, caching, prices, parameters per provider kind ---------------------

ANTHROPIC_LLM = """\
providers:
  claude:
    kind: anthropic
    apiKeyEnv: ANTHROPIC_KEY
    defaults: {model: claude-sonnet-4-5}
agents:
  helper:
    engine: llm
    provider: claude
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ANTHROPIC_LLM + "    runtimeParams: {temperature: 1.5}\n",
            "threadline.yml:10: agents.helper.runtimeParams.temperature: kind anthropic takes "
            "a temperature from 0 to 1, got 1.5",
        ),
        (
            ANTHROPIC_LLM.replace("{model: claude-sonnet-4-5}", "{model: c, temperature: 1.2}"),
            "threadline.yml:5: providers.claude.defaults.temperature: kind anthropic takes a "
            "temperature from 0 to 1, got 1.2",
        ),
        (
            LLM + "    runtimeParams: {temperature: 2.5}\n",
            "threadline.yml:10: agents.helper.runtimeParams.temperature: expected a number "
            "from 0 to 2, got 2.5",
        ),
        (
            ANTHROPIC_LLM.replace("    apiKeyEnv", "    compat: vllm\n    apiKeyEnv"),
            "threadline.yml:4: providers.claude.compat: compat is for kind openai only; use "
            "vllm, ollama",
        ),
        (
            LLM + "    contextWindow: 12\n",
            "threadline.yml:10: agents.helper.contextWindow: expected a whole number of "
            "tokens of at least 1024, got 12",
        ),
        (
            LLM + "    budget: {maxCostUsd: -1}\n",
            "threadline.yml:10: agents.helper.budget.maxCostUsd: expected a positive number "
            "of US dollars, got -1",
        ),
        (
            LLM.replace("    defaults", "    prices: {llama: {input: 1}}\n    defaults"),
            "threadline.yml:5: providers.local.prices.llama.output: required",
        ),
    ],
)
def test_context_cost_and_param_problems_name_their_line(text: str, expected: str) -> None:
    assert llm_problems(text, {"ANTHROPIC_KEY": "k"}) == [expected]


def test_windows_caching_prices_and_cost_budgets_load() -> None:
    text = (
        LLM.replace(
            "    defaults",
            "    compat: ollama\n    contextWindow: 8192\n    promptCaching: false\n"
            "    prices: {llama: {input: 0.5, output: 1.5, cacheRead: 0.05}}\n    defaults",
        )
        + "    contextWindow: 4096\n    compactAt: 0.6\n    toolOutputLimit: 3000\n"
        + "    budget: {maxCostUsd: 0.25, tokens: 100000}\n"
    )
    config = parse_config(text, "threadline.yml", {})
    helper = config.agent("helper")
    options = helper.options["llm"]
    provider = options.provider
    assert (provider.compat, provider.context_window, provider.caching) == ("ollama", 8192, False)
    assert provider.prices["llama"] == Price(500_000, 1_500_000, 50_000, 500_000)
    assert (options.context_window, options.compact_at, options.tool_output_limit) == (
        4096,
        0.6,
        3000,
    )
    assert helper.budget.cost_micros == 250_000
    assert helper.budget.tokens == 100_000


def test_api_overrides_name_known_overrides_only() -> None:
    config = parse_config(AGENT + "sessions:\n  apiOverrides: [runtimeParams, agentIds]\n", "t.yml")
    assert config.sessions.api_overrides == ("runtimeParams", "agentIds")
    assert (
        parse_config(AGENT + "sessions:\n  apiOverrides: []\n", "t.yml").sessions.api_overrides
        == ()
    )
    assert parse_config(AGENT, "t.yml").sessions.api_overrides == (
        "exitCriteria",
        "listenToComments",
        "keepSessionOpenForComments",
    )
    with pytest.raises(ConfigFileError) as raised:
        parse_config(AGENT + "sessions:\n  apiOverrides: [goal]\n", "t.yml")
    assert "unknown override 'goal'" in str(raised.value)


def test_thread_context_is_read_unless_an_agent_turns_it_off() -> None:
    text = AGENT.replace("    engine: script\n", "    engine: script\n    threadContext: false\n")
    assert parse_config(AGENT).agents["reviewer"].thread_context is True
    assert parse_config(text).agents["reviewer"].thread_context is False
    wrong = AGENT.replace("    engine: script\n", "    engine: script\n    threadContext: no way\n")
    assert problems(wrong) == [
        "threadline.yml:4: agents.reviewer.threadContext: expected true or false, got 'no way'"
    ]
