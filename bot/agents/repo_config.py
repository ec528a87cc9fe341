"""A repository's own configuration file, which can only narrow what the server allows.

Read from the default branch: `.github/threadline.yml` on GitHub, `.threadline.yml` on
GitLab (and the playground). It may:

    agents: [reviewer]            # the server's agents this repository may use
    defaultAgent: reviewer        # one of them
    triggers: {mention: false, label: null, assignment: false}   # turn triggers off
    sessions:                     # turn listening/keeping open off, lower the limits
      listenToComments: false
      keepSessionOpenForComments: false
      exitCriteria: {timeLimit: {maxDurationMinutes: 5}}
      idleExpiryMinutes: 5
      maxLifetimeMinutes: 30
    agentSettings:
      reviewer:
        active_tools: [reply, task_completed]   # a subset of the agent's tools
        budget: {tokens: 20000, turns: 5, minutes: 10}   # at most the server's
        mcpServers: [docs]                       # keep only these of its MCP servers

Anything that would widen the server's configuration (an agent it does not have, a tool
the agent is not allowed, a higher limit, a trigger the server turned off) is a problem
reported with the file and line, like every other problem in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from bot.agents import llm_config as lc
from bot.agents import mcp_config as mc
from bot.agents import yamlcheck as y
from bot.agents.base import AgentSpec, Budget
from bot.agents.config import Config, SessionPolicy, Triggers
from bot.agents.yamlcheck import ConfigFileError

REPO_FILES: Mapping[str, str] = MappingProxyType(
    {"github": ".github/threadline.yml", "gitlab": ".threadline.yml", "local": ".threadline.yml"}
)
TOP_KEYS = ("agents", "defaultAgent", "triggers", "sessions", "agentSettings")
TRIGGER_KEYS = ("mention", "label", "assignment")
SESSION_KEYS = (
    "listenToComments",
    "keepSessionOpenForComments",
    "exitCriteria",
    "idleExpiryMinutes",
    "maxLifetimeMinutes",
)
AGENT_SETTING_KEYS = ("active_tools", "budget", "mcpServers")

NOT_ON_SERVER = "the server has no agent {name!r}; it has {known}"
NOT_ALLOWED_HERE = "agent {name!r} is not among this file's agents"
ONLY_OFF = "a repository can only turn this off (false); the server's value is {server}"
LABEL_ONLY_OFF = "a repository can only turn label triggers off (null)"
AT_MOST = "at most {most:g} here (the server's limit); got {got:g}"
NO_AGENTS = "name at least one agent ({known}); leave `agents` out to allow all of the server's"
TOOL_NOT_ALLOWED = "the server does not allow agent {agent!r} the tool {tool!r}"
SERVER_NOT_ALLOWED = (
    "the server gives agent {agent!r} no MCP server {name!r}; a repository can only remove servers"
)


@dataclass(frozen=True)
class RepoPolicy:
    """What a repository's file narrowed, to be laid over the server's Config."""

    agents: tuple[str, ...] | None = None
    default_agent: str | None = None
    triggers: Mapping[str, Any] = field(default_factory=dict)
    sessions: Mapping[str, Any] = field(default_factory=dict)
    time_limit: float | None = None
    tools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    servers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # MCP servers kept


def parse_repo_config(text: str, filename: str, server: Config) -> RepoPolicy:
    """Check a repository file against the server's configuration; ConfigFileError lists
    every problem as `file:line: key: reason`."""
    data, lines, duplicates = y.read_yaml(text, filename)
    report = y.Report(filename, lines)
    for path, line in duplicates:
        report.add(path, y.DUPLICATE_KEY, line=line)
    found = y.mapping(report, data, (), TOP_KEYS)
    known = list(server.agents)
    agents = None
    if "agents" in found:
        agents = y.texts(report, found["agents"], ("agents",))
        if agents is not None and not agents:
            # An empty list would leave the repository no agent at all: every trigger
            # there would fail. Leaving the key out keeps the server's agents.
            report.add(("agents",), NO_AGENTS.format(known=y.choices(known)))
            agents = None
        for number, name in enumerate(agents or ()):
            if name not in server.agents:
                report.add(
                    ("agents", number), NOT_ON_SERVER.format(name=name, known=y.choices(known))
                )
    usable = agents if agents is not None else tuple(known)
    default = None
    if "defaultAgent" in found:
        default = y.text(report, found["defaultAgent"], ("defaultAgent",))
        if default is not None and default not in usable:
            report.add(("defaultAgent",), NOT_ALLOWED_HERE.format(name=default))
    triggers = _triggers(report, found.get("triggers"), server.triggers)
    sessions, time_limit = _sessions(report, found.get("sessions"), server.sessions)
    tools, budgets, servers = _agent_settings(report, found.get("agentSettings"), server, usable)
    if report:
        raise ConfigFileError(report.problems())
    return RepoPolicy(
        agents=agents,
        default_agent=default,
        triggers=triggers,
        sessions=sessions,
        time_limit=time_limit,
        tools=tools,
        budgets=budgets,
        servers=servers,
    )


def _only_off(report: y.Report, raw: object, path: y.KeyPath, server: bool) -> bool | None:
    value = y.flag(report, raw, path)
    if value is True and not server:
        report.add(path, ONLY_OFF.format(server="false"))
        return None
    return value


def _at_most(report: y.Report, raw: object, path: y.KeyPath, most: float) -> float | None:
    value = y.minutes(report, raw, path)
    if value is not None and value > most:
        report.add(path, AT_MOST.format(most=most, got=value))
        return None
    return value


def _triggers(report: y.Report, raw: object, server: Triggers) -> dict[str, Any]:
    path: y.KeyPath = ("triggers",)
    found = y.mapping(report, raw, path, TRIGGER_KEYS)
    narrowed: dict[str, Any] = {}
    for key in ("mention", "assignment"):
        if key in found:
            value = _only_off(report, found[key], (*path, key), getattr(server, key))
            if value is not None:
                narrowed[key] = value
    if "label" in found:
        if found["label"] is None or found["label"] == server.label:
            narrowed["label"] = found["label"]
        else:
            report.add((*path, "label"), LABEL_ONLY_OFF)
    return narrowed


def _sessions(
    report: y.Report, raw: object, server: SessionPolicy
) -> tuple[dict[str, Any], float | None]:
    path: y.KeyPath = ("sessions",)
    found = y.mapping(report, raw, path, SESSION_KEYS)
    narrowed: dict[str, Any] = {}
    for key, attr in (
        ("listenToComments", "listen_to_comments"),
        ("keepSessionOpenForComments", "keep_session_open_for_comments"),
    ):
        if key in found:
            value = _only_off(report, found[key], (*path, key), getattr(server, attr))
            if value is not None:
                narrowed[attr] = value
    for key, attr in (
        ("idleExpiryMinutes", "idle_expiry_minutes"),
        ("maxLifetimeMinutes", "max_lifetime_minutes"),
    ):
        if key in found:
            minutes = _at_most(report, found[key], (*path, key), getattr(server, attr))
            if minutes is not None:
                narrowed[attr] = minutes
    time_limit = None
    if "exitCriteria" in found:
        where = (*path, "exitCriteria")
        criteria = y.mapping(report, found["exitCriteria"], where, ("timeLimit",))
        if "timeLimit" in criteria:
            limit = y.mapping(
                report, criteria["timeLimit"], (*where, "timeLimit"), ("maxDurationMinutes",)
            )
            if "maxDurationMinutes" in limit:
                time_limit = _at_most(
                    report,
                    limit["maxDurationMinutes"],
                    (*where, "timeLimit", "maxDurationMinutes"),
                    server.exit_criteria.max_duration_minutes,
                )
    return narrowed, time_limit


def _agent_settings(
    report: y.Report, raw: object, server: Config, usable: tuple[str, ...]
) -> tuple[dict[str, tuple[str, ...]], dict[str, Budget], dict[str, tuple[str, ...]]]:
    path: y.KeyPath = ("agentSettings",)
    tools: dict[str, tuple[str, ...]] = {}
    budgets: dict[str, Budget] = {}
    servers: dict[str, tuple[str, ...]] = {}
    if raw is None:
        return tools, budgets, servers
    if not isinstance(raw, dict):
        report.add(path, y.NOT_A_MAPPING.format(keys="agent ids", got=y.shown(raw)))
        return tools, budgets, servers
    for agent_id, body in raw.items():
        where = (*path, str(agent_id))
        if agent_id not in usable:
            report.add(where, NOT_ALLOWED_HERE.format(name=agent_id))
            continue
        agent = server.agents[agent_id]
        found = y.mapping(report, body, where, AGENT_SETTING_KEYS)
        if "active_tools" in found:
            listed = y.texts(report, found["active_tools"], (*where, "active_tools"))
            for number, tool in enumerate(listed or ()):
                if not mc.active(tool, agent.tools):
                    reason = TOOL_NOT_ALLOWED.format(agent=agent_id, tool=tool)
                    report.add((*where, "active_tools", number), reason)
            if listed is not None:
                tools[agent_id] = tuple(t for t in listed if mc.active(t, agent.tools))
        if "budget" in found:
            budgets[agent_id] = _budget(report, found["budget"], (*where, "budget"), agent.budget)
        if "mcpServers" in found:
            kept = y.texts(report, found["mcpServers"], (*where, "mcpServers"))
            names = [s.name for s in agent.mcp_servers]
            for number, name in enumerate(kept or ()):
                if name not in names:
                    reason = SERVER_NOT_ALLOWED.format(agent=agent_id, name=name)
                    report.add((*where, "mcpServers", number), reason)
            if kept is not None:
                servers[agent_id] = tuple(n for n in kept if n in names)
    return tools, budgets, servers


def _budget(report: y.Report, raw: object, path: y.KeyPath, server: Budget) -> Budget:
    asked = lc.budget(report, raw, path)
    values: dict[str, Any] = {}
    for name in ("tokens", "turns", "minutes", "cost_micros"):
        mine, theirs = getattr(asked, name), getattr(server, name)
        if mine is None:
            values[name] = theirs
        elif theirs is not None and mine > theirs:
            key, scale = ("maxCostUsd", 1e-6) if name == "cost_micros" else (name, 1)
            report.add((*path, key), AT_MOST.format(most=theirs * scale, got=mine * scale))
            values[name] = theirs
        else:
            values[name] = mine
    return Budget(**values)


def narrow(server: Config, policy: RepoPolicy) -> Config:
    """The server's configuration with a repository's narrowing laid over it."""
    names = policy.agents if policy.agents is not None else tuple(server.agents)
    agents: dict[str, AgentSpec] = {}
    for name in names:
        spec = server.agents[name]
        if name in policy.tools:
            spec = replace(spec, tools=policy.tools[name])
        if name in policy.budgets:
            spec = replace(spec, budget=policy.budgets[name])
        if name in policy.servers:
            kept = policy.servers[name]
            spec = replace(
                spec,
                mcp_servers=tuple(s for s in spec.mcp_servers if s.name in kept),
                tools=tuple(
                    t for t in spec.tools if not mc.is_mcp_tool(t) or mc.server_of(t) in kept
                ),
            )
        agents[name] = spec
    default = policy.default_agent
    if default is None:
        default = server.default_agent if server.default_agent in agents else names[0]
    sessions = replace(server.sessions, **policy.sessions)
    if policy.time_limit is not None:
        sessions = replace(
            sessions,
            exit_criteria=replace(sessions.exit_criteria, max_duration_minutes=policy.time_limit),
        )
    return replace(
        server,
        agents=MappingProxyType(agents),
        default_agent=default,
        sessions=sessions,
        triggers=replace(server.triggers, **policy.triggers),
    )
