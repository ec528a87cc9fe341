"""The agents file (`threadline.yml`): agents, session policy and triggers, read once at start.

`load_config(path)` reads the file into frozen dataclasses, or returns `Config.default()`
(the built-in offline `echo` agent) when no file is given. Every problem is collected and
raised together in one `ConfigFileError`, each naming the file, the line and the key:
`threadline.yml:12: agents.reviewer.engine: unknown engine 'gpt'; use script`.

How lines are found: the YAML is composed into nodes first, and every key and list item
is indexed by its path (`("agents", "reviewer", "engine")`) to the line it was written
on; validation then works on the plain values and reports by path. A path that was not
written as such (a value pulled in by an alias or a `<<` merge) reports the line of the
nearest enclosing key that was.

This module validates a script agent's rules and builds `bot.agents.script`'s objects;
`build_engine(agent)` turns any configured agent into the engine that runs its turns.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.agents import command_config as cc
from bot.agents import limits_config as lim
from bot.agents import llm_config as lc
from bot.agents import mcp_config as mc
from bot.agents import yamlcheck as y
from bot.agents.api_overrides import DEFAULT_API_OVERRIDES, api_overrides
from bot.agents.base import (
    ALL_TOOLS,
    DELEGATE,
    MEMORY_TOOLS,
    POST_REVIEW_THREAD,
    PR_TOOLS,
    SESSION_TOOLS,
    AgentSpec,
    Engine,
)
from bot.agents.chain import CHAIN_ENGINE, ChainEngine
from bot.agents.command import COMMAND_ENGINE, CommandEngine
from bot.agents.llm import LLM_ENGINE, LLMEngine, LLMOptions, llm_options
from bot.agents.llm import OPTIONS_KEY as LLM_OPTIONS
from bot.agents.names import AGENT_ID, BAD_AGENT_ID, UNKNOWN_AGENT
from bot.agents.providers.base import ProviderConfig
from bot.agents.schedule_config import ScheduleSpec, schedules
from bot.agents.script import (
    SCRIPT_ENGINE,
    SCRIPT_OPTION,
    Reply,
    Rule,
    ScriptEngine,
    TaskCompleted,
    UpdateStatus,
    script_spec,
)
from bot.agents.script_config import script_options
from bot.agents.workflow_config import workflows
from bot.agents.workspace_config import (
    _allow_protected,
    _with_workspace_tools,
    _workspace,
    _workspace_setup,
)
from bot.agents.yamlcheck import ConfigFileError

DEFAULT_FILE = "threadline.yml"
# The branch an approved change set goes to: {number} of the issue or PR, {session},
# {change} (the change set's number), {kind} (issue or pr).
DEFAULT_BRANCH_TEMPLATE = "threadline/{number}-{session}"
TEMPLATE_FIELDS = ("number", "session", "change", "kind")
PLANNED_ENGINES: tuple[str, ...] = ()  # named in the design; not built yet

# A path to a value in the file: mapping keys and list indexes, from the top.

# User-facing text (each problem reads "<file>:<line>: <key path>: <reason>").
CANNOT_READ = "{file}: cannot read the agents file: {reason}"
NOT_UTF8 = "{file}: the agents file is not UTF-8 text"
NO_AGENTS = "at least one agent is required"
EXPECTED_AGENTS = "expected a mapping of agent ids to agents, got {got}"
ENGINE_REQUIRED = "required; use {engines}"
UNKNOWN_ENGINE = "unknown engine {name!r}; use {engines}"
PLANNED_ENGINE = "engine {name!r} is not available yet; use {engines}"
ENGINE_KEY_REQUIRED = "required for engine {engine}: {what}"
EXPECTED_TOOLS = "expected a list of tool names, got {got}"
UNKNOWN_TOOL = "unknown tool {name!r}; tools are {known}"
BOTH_TOOL_KEYS = "give active_tools or tools (its older name), not both"
SELF_DELEGATION = "an agent cannot delegate to itself"
UNKNOWN_ENGINE_AT_RUN = "agent {agent!r} has engine {engine!r}, which has no builder"

# The built-in `echo` agent: offline, deterministic, useful with no file at all.
ECHO_ID = "echo"
ECHO_DESCRIPTION = "Built-in offline agent that restates what it is told"
ECHO_REPLY = "Got it, @{author}: {input}"
ECHO_TASK_STEPS = ("Read the task", "Restate it")
ECHO_TASK_READING = "Reading the task from @{author}"
ECHO_TASK_DONE = "Restated the task from @{author}"
ECHO_MESSAGE_STEPS = ("Read the message", "Restate it")
ECHO_MESSAGE_READING = "Reading @{author}'s message"
ECHO_MESSAGE_DONE = "Answered @{author}"


@dataclass(frozen=True)
class ExitCriteria:
    """`sessions.exitCriteria`: what ends a session, as in the seed material."""

    max_duration_minutes: float = 10.0  # timeLimit.maxDurationMinutes
    explicit_signals: tuple[str, ...] = ("/done", "thanks")  # userSignals.explicit


@dataclass(frozen=True)
class SessionPolicy:
    """`sessions`: how sessions take input, stay open and end."""

    listen_to_comments: bool = True
    keep_session_open_for_comments: bool = False
    exit_criteria: ExitCriteria = field(default_factory=ExitCriteria)
    idle_expiry_minutes: float = 10.0
    max_lifetime_minutes: float = 60.0
    max_live_sessions: int = 100
    max_extend_minutes: float = 60.0  # what /extend may add, in all
    feed_outsider_comments: bool = False  # comments without write access: recorded only
    branch_template: str = DEFAULT_BRANCH_TEMPLATE  # where approved changes go
    approval_excludes_starter: bool = False  # the person who started a run may not approve it
    # `apiOverrides`: what a launch through the API may set per session (server file only).
    api_overrides: tuple[str, ...] = DEFAULT_API_OVERRIDES


@dataclass(frozen=True)
class Triggers:
    """`triggers`: what starts a session."""

    mention: bool = True  # `@bot <task>` and `/agent`
    label: str | None = "threadline"  # an issue labeled this; None: off
    assignment: bool = True  # an issue assigned to the bot


def _echo_agent() -> AgentSpec:
    task = Rule(
        kind="task",
        actions=(
            UpdateStatus(ECHO_TASK_STEPS, 1, ECHO_TASK_READING),
            Reply(ECHO_REPLY),
            UpdateStatus(ECHO_TASK_STEPS, 2, ECHO_TASK_DONE),
            TaskCompleted("{input}"),
        ),
    )
    message = Rule(
        actions=(
            UpdateStatus(ECHO_MESSAGE_STEPS, 1, ECHO_MESSAGE_READING),
            Reply(ECHO_REPLY),
            UpdateStatus(ECHO_MESSAGE_STEPS, 2, ECHO_MESSAGE_DONE),
        ),
    )
    return script_spec(ECHO_ID, (task, message), description=ECHO_DESCRIPTION)


ECHO_AGENT = _echo_agent()


@dataclass(frozen=True)
class Config:
    """The agents file as loaded: agents in file order, the default one, policy, triggers."""

    agents: Mapping[str, AgentSpec]
    default_agent: str
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    triggers: Triggers = field(default_factory=Triggers)
    source: str | None = None  # the file it came from; None: built in
    # Every provider of `providers:` (used by an agent or not), its API key read in.
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    limits: lim.Limits = field(default_factory=lim.Limits)  # daily spending limits
    status: lim.StatusSettings = field(default_factory=lim.StatusSettings)
    schedules: tuple[ScheduleSpec, ...] = ()  # `schedules:` (bot.agents.schedule_config)

    @classmethod
    def default(cls) -> Config:
        """What runs with no file: the `echo` agent, keeping sessions open for follow-ups."""
        return cls(
            agents=MappingProxyType({ECHO_ID: ECHO_AGENT}),
            default_agent=ECHO_ID,
            sessions=SessionPolicy(keep_session_open_for_comments=True),
        )

    def agent(self, agent_id: str | None = None) -> AgentSpec:
        """The agent `agent_id`, or the default agent; KeyError if there is no such agent."""
        return self.agents[self.default_agent if agent_id is None else agent_id]


def build_engine(agent: AgentSpec) -> Engine:
    """The engine that runs `agent`'s turns (engines are stateless; build one per turn or keep it)."""
    builder = ENGINE_BUILDERS.get(agent.engine)
    if builder is None:
        raise ValueError(UNKNOWN_ENGINE_AT_RUN.format(agent=agent.id, engine=agent.engine))
    return builder(agent)


def load_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the agents file at `path`, or the built-in default when `path` is None.
    Providers' API keys are read from `environ` (default: the process environment)."""
    if path is None:
        return Config.default()
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([CANNOT_READ.format(file=name, reason=exc.strerror)]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError([NOT_UTF8.format(file=name)]) from exc
    return parse_config(text, name, environ)


def parse_config(
    text: str, filename: str = DEFAULT_FILE, environ: Mapping[str, str] | None = None
) -> Config:
    """Parse agents-file text; `filename` is only used to name the file in problems."""
    data, lines, duplicates = y.read_yaml(text, filename)
    report = y.Report(filename, lines)
    for path, line in duplicates:
        report.add(path, y.DUPLICATE_KEY, line=line)
    config = _config(report, data, filename, os.environ if environ is None else environ)
    if report:
        raise ConfigFileError(report.problems())
    return config


# --- sections ---------------------------------------------------------------------------

TOP_KEYS = (
    "providers",
    "agents",
    "workflows",
    "defaultAgent",
    "sessions",
    "triggers",
    "limits",
    "status",
    "schedules",
)

_TIME_LIMIT: Mapping[str, tuple[str, y.Check]] = {
    "maxDurationMinutes": ("max_duration_minutes", y.minutes),
}
_USER_SIGNALS: Mapping[str, tuple[str, y.Check]] = {
    "explicit": ("explicit_signals", y.texts),
}
_EXIT_CRITERIA_KEYS = ("timeLimit", "userSignals")


def _exit_criteria(report: y.Report, raw: object, path: y.KeyPath) -> ExitCriteria:
    found = y.mapping(report, raw, path, _EXIT_CRITERIA_KEYS)
    values: dict[str, Any] = {}
    if "timeLimit" in found:
        values |= y.fields(report, found["timeLimit"], (*path, "timeLimit"), _TIME_LIMIT)
    if "userSignals" in found:
        values |= y.fields(report, found["userSignals"], (*path, "userSignals"), _USER_SIGNALS)
    return replace(ExitCriteria(), **values)


def check_template(template: str) -> str | None:
    """A problem with a branch template, or None when it is usable."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError as exc:
        return f"not a valid template: {exc}"
    unknown = [name for name in names if name not in TEMPLATE_FIELDS]
    if unknown:
        return f"unknown field {{{unknown[0]}}}; use {', '.join(TEMPLATE_FIELDS)}"
    return None


def _branch_template(report: y.Report, raw: object, path: y.KeyPath) -> str | None:
    text = y.text(report, raw, path)
    problem = None if text is None else check_template(text)
    if problem is not None:
        report.add(path, problem)
        return None
    return text


_SESSIONS: Mapping[str, tuple[str, y.Check]] = {
    "listenToComments": ("listen_to_comments", y.flag),
    "keepSessionOpenForComments": ("keep_session_open_for_comments", y.flag),
    "exitCriteria": ("exit_criteria", _exit_criteria),
    "idleExpiryMinutes": ("idle_expiry_minutes", y.minutes),
    "maxLifetimeMinutes": ("max_lifetime_minutes", y.minutes),
    "maxLiveSessions": ("max_live_sessions", y.count),
    "maxExtendMinutes": ("max_extend_minutes", y.minutes),
    "feedOutsiderComments": ("feed_outsider_comments", y.flag),
    "branchTemplate": ("branch_template", _branch_template),
    "approvalExcludesStarter": ("approval_excludes_starter", y.flag),
    "apiOverrides": ("api_overrides", api_overrides),
}
_TRIGGERS: Mapping[str, tuple[str, y.Check]] = {
    "mention": ("mention", y.flag),
    "label": ("label", y.label),
    "assignment": ("assignment", y.flag),
}


def _config(report: y.Report, data: object, source: str, environ: Mapping[str, str]) -> Config:
    if data is not None and not isinstance(data, dict):
        report.add((), y.NOT_A_MAPPING.format(keys=y.choices(TOP_KEYS), got=y.shown(data)))
        return Config.default()
    found = y.mapping(report, data, (), TOP_KEYS)
    known = lc.providers(report, found.get("providers"), ("providers",), environ)
    if "agents" in found:
        agents = _agents(report, found["agents"], ("agents",), known, environ)
        names = _agent_names(found["agents"])
    else:  # a file that only tunes sessions or triggers keeps the built-in agent
        agents = {ECHO_ID: ECHO_AGENT}
        names = [ECHO_ID]
    if "workflows" in found:
        flows = workflows(report, found["workflows"], ("workflows",), names)
        agents.update(flows)
        names = [*names, *flows]
    return Config(
        agents=MappingProxyType(agents),
        default_agent=_default_agent(report, found.get("defaultAgent"), names),
        sessions=replace(
            SessionPolicy(), **y.fields(report, found.get("sessions"), ("sessions",), _SESSIONS)
        ),
        triggers=replace(
            Triggers(), **y.fields(report, found.get("triggers"), ("triggers",), _TRIGGERS)
        ),
        source=source,
        providers=MappingProxyType({k: v for k, v in known.items() if v is not None}),
        limits=lim.limits(report, found.get("limits"), ("limits",)),
        status=lim.status_settings(report, found.get("status"), ("status",)),
        schedules=schedules(report, found.get("schedules"), ("schedules",), names),
    )


def _agent_names(raw: object) -> list[str]:
    """The agent ids written in the file, valid or not (so a bad agent is not also 'unknown')."""
    return [key for key in raw if isinstance(key, str)] if isinstance(raw, dict) else []


def _default_agent(report: y.Report, raw: object, names: Sequence[str]) -> str:
    if raw is None:
        return names[0] if names else ""
    name = y.text(report, raw, ("defaultAgent",))
    if name is None:
        return ""
    if names and name not in names:
        report.add(("defaultAgent",), UNKNOWN_AGENT.format(name=name, known=y.choices(names)))
    return name


# --- workflows ----------------------------------------------------------------------------

# --- agents -------------------------------------------------------------------------------


def _agents(
    report: y.Report,
    raw: object,
    path: y.KeyPath,
    providers: Mapping[str, ProviderConfig | None],
    environ: Mapping[str, str],
) -> dict[str, AgentSpec]:
    if raw is None or raw == {}:
        report.add(path, NO_AGENTS)
        return {}
    agents: dict[str, AgentSpec] = {}
    entries = y.named(report, raw, path, AGENT_ID, expected=EXPECTED_AGENTS, bad_name=BAD_AGENT_ID)
    for agent_id, body, where in entries:
        spec = _agent(report, agent_id, body, where, providers, environ)
        if spec is not None:
            agents[agent_id] = spec
    return _coordinators(report, agents, _agent_names(raw), path)


COMMON_AGENT_KEYS = (
    "engine",
    "description",
    "systemPrompt",
    "tools",
    "active_tools",
    "agentIds",
    "maxDelegations",
    "budget",
    "sessionAccess",
    "allowProtectedPaths",
    "workspace",
    "mcpServers",
    "threadContext",
)


def _agent(
    report: y.Report,
    agent_id: str,
    raw: object,
    path: y.KeyPath,
    providers: Mapping[str, ProviderConfig | None],
    environ: Mapping[str, str],
) -> AgentSpec | None:
    before = len(report)
    found = y.mapping(report, raw, path, AGENT_KEYS)
    engine = _engine(report, found.get("engine"), (*path, "engine"))
    description = y.blank_ok(report, found.get("description"), (*path, "description"))
    system_prompt = y.blank_ok(report, found.get("systemPrompt"), (*path, "systemPrompt"))
    agent_ids = (
        y.texts(report, found["agentIds"], (*path, "agentIds")) if "agentIds" in found else ()
    )
    workspace, network, outsiders = _workspace(
        report, found.get("workspace", "none"), (*path, "workspace")
    )
    setup = _workspace_setup(report, found.get("workspace"), (*path, "workspace", "setup"))
    tools = _agent_tools(report, found, path, engine, coordinator=bool(agent_ids))
    listed = "active_tools" in found or "tools" in found
    if tools is not None and not listed:
        tools = _with_workspace_tools(tools, workspace)
    servers = mc.agent_servers(report, found, path, engine, environ)
    if tools is not None:
        key = "active_tools" if "active_tools" in found else "tools"
        tools = mc.with_server_tools(report, tools, servers, (*path, key), listed=listed)
    if engine == LLM_ENGINE:
        options = lc.llm_options(report, found, path, providers)
    elif engine == COMMAND_ENGINE:
        options = cc.command_options(report, found, path, providers)
    else:
        options = _engine_options(report, engine, found, path)
    delegations = (
        y.count(report, found["maxDelegations"], (*path, "maxDelegations"))
        if "maxDelegations" in found
        else 10
    )
    budget = lc.budget(report, found.get("budget"), (*path, "budget"))
    access = (
        lc.access(report, found["sessionAccess"], (*path, "sessionAccess"))
        if "sessionAccess" in found
        else None
    )
    allow_protected = _allow_protected(
        report, found.get("allowProtectedPaths"), (*path, "allowProtectedPaths")
    )
    thread_context = y.flag(report, found.get("threadContext", True), (*path, "threadContext"))
    if len(report) > before or engine is None:
        return None
    return AgentSpec(
        id=agent_id,
        engine=engine,
        description=description or "",
        system_prompt=system_prompt or "",
        tools=tools or (),
        agent_ids=agent_ids or (),
        max_delegations=delegations or 10,
        budget=budget,
        access=access,
        allow_protected=allow_protected,
        workspace=workspace,
        workspace_network=network,
        workspace_outsider_code=outsiders,
        workspace_setup=setup,
        mcp_servers=servers,
        thread_context=thread_context is not False,
        options=MappingProxyType(options),
    )


def _agent_tools(
    report: y.Report,
    found: Mapping[str, object],
    path: y.KeyPath,
    engine: str | None,
    *,
    coordinator: bool,
) -> tuple[str, ...] | None:
    """`active_tools` (or its older name `tools`); by default a script agent gets the
    session tools and an llm agent the pull request and memory tools too. A coordinator
    always gets delegate_to_sub_agent, and posts review threads only when its list says so."""
    if "tools" in found and "active_tools" in found:
        report.add((*path, "tools"), BOTH_TOOL_KEYS)
        return None
    key = "active_tools" if "active_tools" in found else "tools"
    if key in found:
        tools = _tools(report, found[key], (*path, key))
        if tools is None:
            return None
    elif engine == LLM_ENGINE:
        tools = (*SESSION_TOOLS, *PR_TOOLS, *MEMORY_TOOLS)
        if coordinator:
            tools = tuple(name for name in tools if name != POST_REVIEW_THREAD)
    else:
        tools = SESSION_TOOLS
    if coordinator and DELEGATE not in tools:
        tools = (*tools, DELEGATE)
    return tools


def _coordinators(
    report: y.Report, agents: dict[str, AgentSpec], names: Sequence[str], path: y.KeyPath
) -> dict[str, AgentSpec]:
    """Checks that need every agent: a coordinator's sub-agents exist (and are not itself),
    an llm agent's named tool_choice is one of its tools. An llm coordinator learns its
    sub-agents' descriptions for its system prompt."""
    for agent_id, spec in list(agents.items()):
        where = (*path, agent_id)
        for number, sub in enumerate(spec.agent_ids):
            if sub == agent_id:
                report.add((*where, "agentIds", number), SELF_DELEGATION)
            elif sub not in names:
                reason = UNKNOWN_AGENT.format(name=sub, known=y.choices(names))
                report.add((*where, "agentIds", number), reason)
        options = spec.options.get(LLM_OPTIONS)
        if not isinstance(options, LLMOptions):
            continue
        choice = options.tool_choice
        if choice.mode == "tool" and choice.name not in spec.tools:
            report.add((*where, "tool_choice"), lc.CHOICE_NOT_ALLOWED.format(name=choice.name))
        if spec.agent_ids:
            subs = {sub: agents[sub].description for sub in spec.agent_ids if sub in agents}
            options = replace(options, sub_agents=MappingProxyType(subs))
            agents[agent_id] = replace(
                spec, options=MappingProxyType({**spec.options, LLM_OPTIONS: options})
            )
    return agents


def _engine(report: y.Report, raw: object, path: y.KeyPath) -> str | None:
    engines = y.choices(ENGINE_OPTIONS)
    if raw is None:
        report.add(path, ENGINE_REQUIRED.format(engines=engines))
        return None
    if raw in PLANNED_ENGINES:
        report.add(path, PLANNED_ENGINE.format(name=raw, engines=engines))
        return None
    if not isinstance(raw, str) or raw not in ENGINE_OPTIONS:
        report.add(path, UNKNOWN_ENGINE.format(name=raw, engines=engines))
        return None
    return raw


def _engine_options(
    report: y.Report, engine: str | None, found: Mapping[str, object], path: y.KeyPath
) -> dict[str, Any]:
    """The engine's own settings (for `script`: the parsed rules) as AgentSpec.options."""
    return {} if engine is None else ENGINE_OPTIONS[engine](report, found, path)


def _tools(report: y.Report, raw: object, path: y.KeyPath) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        report.add(path, EXPECTED_TOOLS.format(got=y.shown(raw)))
        return None
    tools: list[str] = []
    for number, name in enumerate(raw):
        if isinstance(name, str) and mc.is_mcp_tool(name):
            tools.append(name)  # its server is checked with the agent's mcpServers
        elif not isinstance(name, str) or name not in ALL_TOOLS:
            reason = UNKNOWN_TOOL.format(name=name, known=y.choices(ALL_TOOLS))
            report.add((*path, number), y.unknown(str(name), ALL_TOOLS, reason))
        elif name not in tools:
            tools.append(name)
    return tuple(tools)


# --- engines --------------------------------------------------------------------------------

OptionsParser = Callable[[y.Report, Mapping[str, object], y.KeyPath], dict[str, Any]]

# How each engine's own agent keys (for `script`: `script`) become AgentSpec.options.
# (`llm` needs the providers too, so `_agent` reads its keys itself.)
ENGINE_OPTIONS: Mapping[str, OptionsParser] = {
    SCRIPT_ENGINE: script_options,
    LLM_ENGINE: lambda report, found, path: {},
    COMMAND_ENGINE: lambda report, found, path: {},  # read by `_agent` (needs providers)
}
AGENT_KEYS = (*COMMON_AGENT_KEYS, SCRIPT_OPTION, *lc.LLM_KEYS, *cc.COMMAND_KEYS)


def _llm_engine(agent: AgentSpec) -> Engine:
    from bot.agents.providers import build_provider

    return LLMEngine(agent, build_provider(llm_options(agent).provider))


ENGINE_BUILDERS: Mapping[str, Callable[[AgentSpec], Engine]] = {
    SCRIPT_ENGINE: ScriptEngine.from_spec,
    LLM_ENGINE: _llm_engine,
    CHAIN_ENGINE: ChainEngine.from_spec,
    COMMAND_ENGINE: CommandEngine.from_spec,
}
