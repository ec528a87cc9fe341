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

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from bot.agents.base import SESSION_TOOLS, AgentSpec, Engine
from bot.agents.script import (
    ANY_BODY,
    INPUT_KINDS,
    MAX_SLEEP_SECONDS,
    SCRIPT_ENGINE,
    SCRIPT_OPTION,
    Action,
    Fail,
    Reply,
    Rule,
    Say,
    ScriptEngine,
    Sleep,
    TaskCompleted,
    UpdateStatus,
    script_spec,
)
from bot.config import ConfigError

DEFAULT_FILE = "threadline.yml"
AGENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
PLANNED_ENGINES = ("llm", "command")  # named in the design; not built yet

# A path to a value in the file: mapping keys and list indexes, from the top.
KeyPath = tuple[str | int, ...]
Check = Callable[["_Report", object, KeyPath], Any]

# User-facing text (each problem reads "<file>:<line>: <key path>: <reason>").
CANNOT_READ = "{file}: cannot read the agents file: {reason}"
NOT_UTF8 = "{file}: the agents file is not UTF-8 text"
INVALID_YAML = "{file}:{line}: not valid YAML: {reason}"
DUPLICATE_KEY = "given more than once (the last one would silently win)"
NOT_A_MAPPING = "expected a mapping with the keys {keys}, got {got}"
UNKNOWN_KEY = "unknown key; expected one of {keys}"
DID_YOU_MEAN = " (did you mean {guess!r}?)"
REQUIRED = "required"
EXPECTED_FLAG = "expected true or false, got {got}"
EXPECTED_TEXT = "expected text, got {got}"
EXPECTED_NONEMPTY_TEXT = "expected non-empty text, got {got}"
EXPECTED_TEXTS = "expected a list of non-empty texts, got {got}"
EXPECTED_MINUTES = "expected a positive number of minutes, got {got}"
EXPECTED_COUNT = "expected a positive whole number, got {got}"
EXPECTED_LABEL = "expected a label name, or null to turn label triggers off, got {got}"
NO_AGENTS = "at least one agent is required"
EXPECTED_AGENTS = "expected a mapping of agent ids to agents, got {got}"
BAD_AGENT_ID = "agent ids are lowercase letters, digits, '_' and '-', starting with a letter or digit; got {got}"
UNKNOWN_AGENT = "unknown agent {name!r}; agents are {known}"
ENGINE_REQUIRED = "required; use {engines}"
UNKNOWN_ENGINE = "unknown engine {name!r}; use {engines}"
PLANNED_ENGINE = "engine {name!r} is not available yet; use {engines}"
ENGINE_KEY_REQUIRED = "required for engine {engine}: {what}"
EXPECTED_TOOLS = "expected a list of tool names, got {got}"
UNKNOWN_TOOL = "unknown tool {name!r}; tools are {known}"
EXPECTED_RULES = "expected a non-empty list of rules (mappings with when, match and do), got {got}"
EXPECTED_RULE = "expected a rule: a mapping with the keys when, match and do, got {got}"
BAD_REGEX = "invalid regular expression {pattern!r}: {reason}"
BAD_KIND = "expected one of {kinds}, got {got}"
EXPECTED_ACTIONS = "expected a non-empty list of actions, got {got}"
EXPECTED_ACTION = "expected an action: a mapping with one key, one of {actions}; got {got}"
UNKNOWN_ACTION = "unknown action; actions are {actions}"
BAD_SLEEP = "expected a number of seconds from 0 to {most:g}, got {got}"
EXPECTED_STEPS = "expected a non-empty list of step titles, got {got}"
BAD_DONE = "expected how many steps are done, from 0 to {most}, got {got}"
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


class ConfigFileError(ConfigError):
    """The agents file is unusable; `problems` lists each as `file:line: key: reason`."""


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


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read the agents file at `path`, or the built-in default when `path` is None."""
    if path is None:
        return Config.default()
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([CANNOT_READ.format(file=name, reason=exc.strerror)]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError([NOT_UTF8.format(file=name)]) from exc
    return parse_config(text, name)


def parse_config(text: str, filename: str = DEFAULT_FILE) -> Config:
    """Parse agents-file text; `filename` is only used to name the file in problems."""
    data, lines, duplicates = _read_yaml(text, filename)
    report = _Report(filename, lines)
    for path, line in duplicates:
        report.add(path, DUPLICATE_KEY, line=line)
    config = _config(report, data, filename)
    if report:
        raise ConfigFileError(report.problems())
    return config


# --- reading YAML with lines ------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _read_yaml(
    text: str, filename: str
) -> tuple[object, dict[KeyPath, int], list[tuple[KeyPath, int]]]:
    """The plain data, the line of each written path, and keys written twice (path, line)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        lines: dict[KeyPath, int] = {(): 1 if root is None else _line(root)}
        duplicates: list[tuple[KeyPath, int]] = []
        if root is not None:
            _index(root, (), lines, duplicates, set())
        # Index before constructing: construction flattens `<<` merges into the nodes.
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigFileError([_yaml_problem(filename, exc)]) from exc
    finally:
        loader.dispose()
    return data, lines, duplicates


def _yaml_problem(filename: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    reason = ", ".join(part for part in parts if part) or str(exc)
    line = mark.line + 1 if mark is not None else 1
    return INVALID_YAML.format(file=filename, line=line, reason=reason)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _index(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    duplicates: list[tuple[KeyPath, int]],
    seen: set[int],
) -> None:
    """Record the line of every key and item under `node`; each node is walked once."""
    if id(node) in seen:  # an alias: its values report the line of the key holding it
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        written: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            child = (*path, str(key.value))
            if key.value in written:
                duplicates.append((child, _line(key)))
            written.add(key.value)
            lines[child] = _line(key)  # the last one, as the constructed value is
            _index(value, child, lines, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            child = (*path, number)
            lines[child] = _line(item)
            _index(item, child, lines, duplicates, seen)


# --- reporting ------------------------------------------------------------------------


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _shown(value: object) -> str:
    """A value as a problem message shows it, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(names: Iterable[str]) -> str:
    return ", ".join(names)


class _Report:
    """Problems found so far, each placed on the line its path was written on."""

    def __init__(self, filename: str, lines: Mapping[KeyPath, int]) -> None:
        self._filename = filename
        self._lines = lines
        self._found: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._found)

    def line(self, path: KeyPath) -> int:
        while path not in self._lines:
            path = path[:-1]
        return self._lines[path]

    def add(self, path: KeyPath, reason: str, *, line: int | None = None) -> None:
        where = self.line(path) if line is None else line
        label = f"{_dotted(path)}: " if path else ""
        self._found.append((where, f"{self._filename}:{where}: {label}{reason}"))

    def problems(self) -> list[str]:
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]


# --- checks: each reports what is wrong and returns None for an unusable value ----------


def _mapping(report: _Report, raw: object, path: KeyPath, keys: Sequence[str]) -> dict[str, object]:
    """`raw`'s known keys (null counts as empty); reports a non-mapping and unknown keys."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report.add(path, NOT_A_MAPPING.format(keys=_choices(keys), got=_shown(raw)))
        return {}
    known: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key in keys:
            known[key] = value
        else:
            report.add(
                (*path, str(key)), _unknown(str(key), keys, UNKNOWN_KEY.format(keys=_choices(keys)))
            )
    return known


def _unknown(name: str, known: Sequence[str], reason: str) -> str:
    guesses = difflib.get_close_matches(name, known, n=1)
    return reason + (DID_YOU_MEAN.format(guess=guesses[0]) if guesses else "")


def _fields(
    report: _Report, raw: object, path: KeyPath, table: Mapping[str, tuple[str, Check]]
) -> dict[str, Any]:
    """Check each key of `table` found in `raw`; the valid ones by attribute name."""
    values: dict[str, Any] = {}
    for key, value in _mapping(report, raw, path, list(table)).items():
        attr, check = table[key]
        before = len(report)
        checked = check(report, value, (*path, key))
        if len(report) == before:
            values[attr] = checked
    return values


def _flag(report: _Report, raw: object, path: KeyPath) -> bool | None:
    if isinstance(raw, bool):
        return raw
    report.add(path, EXPECTED_FLAG.format(got=_shown(raw)))
    return None


def _text(report: _Report, raw: object, path: KeyPath, *, empty_ok: bool = False) -> str | None:
    if isinstance(raw, str) and (empty_ok or raw.strip()):
        return raw
    report.add(
        path, (EXPECTED_TEXT if empty_ok else EXPECTED_NONEMPTY_TEXT).format(got=_shown(raw))
    )
    return None


def _any_text(report: _Report, raw: object, path: KeyPath) -> str | None:
    return _text(report, raw, path, empty_ok=True)


def _blank_ok(report: _Report, raw: object, path: KeyPath) -> str | None:
    """Optional text: a key left blank (`description:`) is the empty text."""
    return _any_text(report, "" if raw is None else raw, path)


def _texts(report: _Report, raw: object, path: KeyPath) -> tuple[str, ...] | None:
    if isinstance(raw, list) and all(isinstance(item, str) and item.strip() for item in raw):
        return tuple(raw)
    report.add(path, EXPECTED_TEXTS.format(got=_shown(raw)))
    return None


def _number(raw: object) -> float | None:
    """`raw` as a float if it is a finite int or float (YAML's true and false are not)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # an int too large for a float
        return None
    return value if math.isfinite(value) else None


def _minutes(report: _Report, raw: object, path: KeyPath) -> float | None:
    value = _number(raw)
    if value is not None and value > 0:
        return value
    report.add(path, EXPECTED_MINUTES.format(got=_shown(raw)))
    return None


def _count(report: _Report, raw: object, path: KeyPath) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    report.add(path, EXPECTED_COUNT.format(got=_shown(raw)))
    return None


def _label(report: _Report, raw: object, path: KeyPath) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip()):
        return raw
    report.add(path, EXPECTED_LABEL.format(got=_shown(raw)))
    return None


# --- sections ---------------------------------------------------------------------------

TOP_KEYS = ("agents", "defaultAgent", "sessions", "triggers")

_TIME_LIMIT: Mapping[str, tuple[str, Check]] = {
    "maxDurationMinutes": ("max_duration_minutes", _minutes),
}
_USER_SIGNALS: Mapping[str, tuple[str, Check]] = {
    "explicit": ("explicit_signals", _texts),
}
_EXIT_CRITERIA_KEYS = ("timeLimit", "userSignals")


def _exit_criteria(report: _Report, raw: object, path: KeyPath) -> ExitCriteria:
    found = _mapping(report, raw, path, _EXIT_CRITERIA_KEYS)
    values: dict[str, Any] = {}
    if "timeLimit" in found:
        values |= _fields(report, found["timeLimit"], (*path, "timeLimit"), _TIME_LIMIT)
    if "userSignals" in found:
        values |= _fields(report, found["userSignals"], (*path, "userSignals"), _USER_SIGNALS)
    return replace(ExitCriteria(), **values)


_SESSIONS: Mapping[str, tuple[str, Check]] = {
    "listenToComments": ("listen_to_comments", _flag),
    "keepSessionOpenForComments": ("keep_session_open_for_comments", _flag),
    "exitCriteria": ("exit_criteria", _exit_criteria),
    "idleExpiryMinutes": ("idle_expiry_minutes", _minutes),
    "maxLifetimeMinutes": ("max_lifetime_minutes", _minutes),
    "maxLiveSessions": ("max_live_sessions", _count),
    "maxExtendMinutes": ("max_extend_minutes", _minutes),
    "feedOutsiderComments": ("feed_outsider_comments", _flag),
}
_TRIGGERS: Mapping[str, tuple[str, Check]] = {
    "mention": ("mention", _flag),
    "label": ("label", _label),
    "assignment": ("assignment", _flag),
}


def _config(report: _Report, data: object, source: str) -> Config:
    if data is not None and not isinstance(data, dict):
        report.add((), NOT_A_MAPPING.format(keys=_choices(TOP_KEYS), got=_shown(data)))
        return Config.default()
    found = _mapping(report, data, (), TOP_KEYS)
    if "agents" in found:
        agents = _agents(report, found["agents"], ("agents",))
        names = _agent_names(found["agents"])
    else:  # a file that only tunes sessions or triggers keeps the built-in agent
        agents = {ECHO_ID: ECHO_AGENT}
        names = [ECHO_ID]
    return Config(
        agents=MappingProxyType(agents),
        default_agent=_default_agent(report, found.get("defaultAgent"), names),
        sessions=replace(
            SessionPolicy(), **_fields(report, found.get("sessions"), ("sessions",), _SESSIONS)
        ),
        triggers=replace(
            Triggers(), **_fields(report, found.get("triggers"), ("triggers",), _TRIGGERS)
        ),
        source=source,
    )


def _agent_names(raw: object) -> list[str]:
    """The agent ids written in the file, valid or not (so a bad agent is not also 'unknown')."""
    return [key for key in raw if isinstance(key, str)] if isinstance(raw, dict) else []


def _default_agent(report: _Report, raw: object, names: Sequence[str]) -> str:
    if raw is None:
        return names[0] if names else ""
    name = _text(report, raw, ("defaultAgent",))
    if name is None:
        return ""
    if names and name not in names:
        report.add(("defaultAgent",), UNKNOWN_AGENT.format(name=name, known=_choices(names)))
    return name


# --- agents -------------------------------------------------------------------------------


def _agents(report: _Report, raw: object, path: KeyPath) -> dict[str, AgentSpec]:
    if raw is None or raw == {}:
        report.add(path, NO_AGENTS)
        return {}
    if not isinstance(raw, dict):
        report.add(path, EXPECTED_AGENTS.format(got=_shown(raw)))
        return {}
    agents: dict[str, AgentSpec] = {}
    for agent_id, body in raw.items():
        where = (*path, str(agent_id))
        if not isinstance(agent_id, str) or not AGENT_ID.fullmatch(agent_id):
            report.add(where, BAD_AGENT_ID.format(got=_shown(agent_id)))
            continue
        spec = _agent(report, agent_id, body, where)
        if spec is not None:
            agents[agent_id] = spec
    return agents


COMMON_AGENT_KEYS = ("engine", "description", "systemPrompt", "tools")


def _agent(report: _Report, agent_id: str, raw: object, path: KeyPath) -> AgentSpec | None:
    before = len(report)
    found = _mapping(report, raw, path, AGENT_KEYS)
    engine = _engine(report, found.get("engine"), (*path, "engine"))
    description = _blank_ok(report, found.get("description"), (*path, "description"))
    system_prompt = _blank_ok(report, found.get("systemPrompt"), (*path, "systemPrompt"))
    tools = _tools(report, found["tools"], (*path, "tools")) if "tools" in found else SESSION_TOOLS
    options = _engine_options(report, engine, found, path)
    if len(report) > before or engine is None:
        return None
    return AgentSpec(
        id=agent_id,
        engine=engine,
        description=description or "",
        system_prompt=system_prompt or "",
        tools=tools or (),
        options=MappingProxyType(options),
    )


def _engine(report: _Report, raw: object, path: KeyPath) -> str | None:
    engines = _choices(ENGINE_OPTIONS)
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
    report: _Report, engine: str | None, found: Mapping[str, object], path: KeyPath
) -> dict[str, Any]:
    """The engine's own settings (for `script`: the parsed rules) as AgentSpec.options."""
    return {} if engine is None else ENGINE_OPTIONS[engine](report, found, path)


def _tools(report: _Report, raw: object, path: KeyPath) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        report.add(path, EXPECTED_TOOLS.format(got=_shown(raw)))
        return None
    tools: list[str] = []
    for number, name in enumerate(raw):
        if not isinstance(name, str) or name not in SESSION_TOOLS:
            reason = UNKNOWN_TOOL.format(name=name, known=_choices(SESSION_TOOLS))
            report.add((*path, number), _unknown(str(name), SESSION_TOOLS, reason))
        elif name not in tools:
            tools.append(name)
    return tuple(tools)


# --- the script engine's rules --------------------------------------------------------------

RULE_KEYS = ("when", "match", "do")


def _script_options(report: _Report, found: Mapping[str, object], path: KeyPath) -> dict[str, Any]:
    where = (*path, SCRIPT_OPTION)
    if SCRIPT_OPTION not in found:
        report.add(where, ENGINE_KEY_REQUIRED.format(engine=SCRIPT_ENGINE, what="a list of rules"))
        return {}
    return {SCRIPT_OPTION: _rules(report, found[SCRIPT_OPTION], where)}


def _rules(report: _Report, raw: object, path: KeyPath) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        report.add(path, EXPECTED_RULES.format(got=_shown(raw)))
        return ()
    rules = (_rule(report, item, (*path, number)) for number, item in enumerate(raw))
    return tuple(rule for rule in rules if rule is not None)


def _rule(report: _Report, raw: object, path: KeyPath) -> Rule | None:
    if not isinstance(raw, dict):
        report.add(path, EXPECTED_RULE.format(got=_shown(raw)))
        return None
    found = _mapping(report, raw, path, RULE_KEYS)
    when = _pattern(report, found["when"], (*path, "when")) if "when" in found else ANY_BODY
    kind = _kind(report, found["match"], (*path, "match")) if "match" in found else None
    if "do" not in found:
        report.add((*path, "do"), REQUIRED)
        return None
    actions = _actions(report, found["do"], (*path, "do"))
    if when is None or actions is None:
        return None
    return Rule(actions=actions, when=when, kind=kind)


def _pattern(report: _Report, raw: object, path: KeyPath) -> re.Pattern[str] | None:
    text = _any_text(report, raw, path)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        report.add(path, BAD_REGEX.format(pattern=text, reason=exc))
        return None


def _kind(report: _Report, raw: object, path: KeyPath) -> str | None:
    if isinstance(raw, str) and raw in INPUT_KINDS:
        return raw
    report.add(path, BAD_KIND.format(kinds=_choices(INPUT_KINDS), got=_shown(raw)))
    return None


def _actions(report: _Report, raw: object, path: KeyPath) -> tuple[Action, ...] | None:
    if not isinstance(raw, list) or not raw:
        report.add(path, EXPECTED_ACTIONS.format(got=_shown(raw)))
        return None
    actions = [_action(report, item, (*path, number)) for number, item in enumerate(raw)]
    return tuple(action for action in actions if action is not None)


def _action(report: _Report, raw: object, path: KeyPath) -> Action | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        report.add(path, EXPECTED_ACTION.format(actions=_choices(ACTIONS), got=_shown(raw)))
        return None
    ((name, value),) = raw.items()
    parse = ACTIONS.get(name) if isinstance(name, str) else None
    if parse is None:
        reason = UNKNOWN_ACTION.format(actions=_choices(ACTIONS))
        report.add((*path, str(name)), _unknown(str(name), list(ACTIONS), reason))
        return None
    return parse(report, value, (*path, name))


def _reply(report: _Report, raw: object, path: KeyPath) -> Reply | None:
    text = _text(report, raw, path)
    return None if text is None else Reply(text)


def _say(report: _Report, raw: object, path: KeyPath) -> Say | None:
    text = _text(report, raw, path)
    return None if text is None else Say(text)


def _fail(report: _Report, raw: object, path: KeyPath) -> Fail | None:
    text = _text(report, raw, path)
    return None if text is None else Fail(text)


def _task_completed(report: _Report, raw: object, path: KeyPath) -> TaskCompleted | None:
    text = _blank_ok(report, raw, path)
    return None if text is None else TaskCompleted(text)


def _sleep(report: _Report, raw: object, path: KeyPath) -> Sleep | None:
    seconds = _number(raw)
    if seconds is not None and 0 <= seconds <= MAX_SLEEP_SECONDS:
        return Sleep(seconds)
    report.add(path, BAD_SLEEP.format(most=MAX_SLEEP_SECONDS, got=_shown(raw)))
    return None


STATUS_KEYS = ("steps", "done", "summary")


def _update_status(report: _Report, raw: object, path: KeyPath) -> UpdateStatus | None:
    if not isinstance(raw, dict):
        report.add(path, NOT_A_MAPPING.format(keys=_choices(STATUS_KEYS), got=_shown(raw)))
        return None
    before = len(report)
    found = _mapping(report, raw, path, STATUS_KEYS)
    steps = _steps(report, found.get("steps"), (*path, "steps"))
    done = (
        None if steps is None else _done(report, found.get("done", 0), (*path, "done"), len(steps))
    )
    summary = _blank_ok(report, found.get("summary"), (*path, "summary"))
    if len(report) > before or steps is None or done is None or summary is None:
        return None
    return UpdateStatus(steps, done, summary)


def _steps(report: _Report, raw: object, path: KeyPath) -> tuple[str, ...] | None:
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(step, str) and step.strip() for step in raw)
    ):
        return tuple(raw)
    report.add(path, EXPECTED_STEPS.format(got=_shown(raw)))
    return None


def _done(report: _Report, raw: object, path: KeyPath, most: int) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= most:
        return raw
    report.add(path, BAD_DONE.format(most=most, got=_shown(raw)))
    return None


ActionParser = Callable[[_Report, object, KeyPath], Action | None]

ACTIONS: Mapping[str, ActionParser] = {
    "reply": _reply,
    "update_status": _update_status,
    "task_completed": _task_completed,
    "say": _say,
    "sleep": _sleep,
    "fail": _fail,
}

# --- engines --------------------------------------------------------------------------------

OptionsParser = Callable[[_Report, Mapping[str, object], KeyPath], dict[str, Any]]

# How each engine's own agent keys (for `script`: `script`) become AgentSpec.options.
ENGINE_OPTIONS: Mapping[str, OptionsParser] = {SCRIPT_ENGINE: _script_options}
AGENT_KEYS = (*COMMON_AGENT_KEYS, SCRIPT_OPTION)

ENGINE_BUILDERS: Mapping[str, Callable[[AgentSpec], Engine]] = {
    SCRIPT_ENGINE: ScriptEngine.from_spec,
}
