"""The `script` engine: offline, deterministic agents whose turns follow regex rules.

The split with `bot.agents.config`: this module owns the rule model (`Rule` and the
action dataclasses) and runs it; `bot.agents.config` reads `threadline.yml`, validates a
script agent's `script:` list (reporting problems with their file and line) and builds
these objects, compiling each `when` regex once. The parsed rules travel to the engine
in `AgentSpec.options["script"]` as a `tuple[Rule, ...]`, so the engine never parses
YAML and a test can build rules directly.

For each input of a turn, in order, the first rule whose `match` kind (if any) fits and
whose `when` regex `re.search`es the input's body runs its actions in order. Texts take
the placeholders in `PLACEHOLDERS`; anything else in braces is left as written.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.agents.base import (
    REPLY,
    SESSION_TOOLS,
    TASK_COMPLETED,
    UPDATE_STATUS,
    AgentSpec,
    EngineError,
    Tools,
    Turn,
    TurnInput,
)

SCRIPT_ENGINE = "script"
SCRIPT_OPTION = "script"  # the AgentSpec.options key holding the rules
INPUT_KINDS = ("task", "comment", "operator", "message", "spawn")  # the kinds TurnInput.kind takes
PLACEHOLDERS = ("input", "author", "task", "session", "turn", "agent")
MAX_SLEEP_SECONDS = 30.0
ANY_BODY = re.compile("")

NO_RULE_MATCHES = "script: no rule matches the {kind} from @{author}; nothing to do"
NOT_A_SCRIPT = "agent {agent!r}: options[{key!r}] must hold a tuple of script rules"

# `{{` and `}}` are literal braces as in str.format; `{name}` is a placeholder only when
# `name` is a bare word, so `{input.__class__}` or `{input[0]}` never reach an attribute
# or an index: they do not match and stay as written.
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LITERAL = {"{{": "{", "}}": "}"}


def fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute `{name}` placeholders from `values` in one pass; unknown ones stay as-is.

    Substituted text is not scanned again, so an input that contains `{task}` is posted
    as written rather than expanded.
    """

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in _LITERAL:
            return _LITERAL[token]
        return values.get(match.group(1), token)

    return _TOKEN.sub(one, template)


def placeholder_values(turn: Turn, item: TurnInput) -> dict[str, str]:
    """The values of `PLACEHOLDERS` while the script answers `item`."""
    return {
        "input": item.body,
        "author": item.author,
        "task": turn.task,
        "session": turn.session_id,
        "turn": str(turn.number),
        "agent": turn.agent.id,
    }


@dataclass(frozen=True)
class Reply:
    """`reply: text`: a message in the session's thread."""

    text: str

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        await tools.call(REPLY, {"body": fill(self.text, values)})


@dataclass(frozen=True)
class UpdateStatus:
    """`update_status: {steps, done, summary}`: the first `done` steps are checked."""

    steps: tuple[str, ...]
    done: int = 0
    summary: str = ""

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        steps = [
            {"title": fill(title, values), "done": index < self.done}
            for index, title in enumerate(self.steps)
        ]
        await tools.call(UPDATE_STATUS, {"steps": steps, "summary": fill(self.summary, values)})


@dataclass(frozen=True)
class TaskCompleted:
    """`task_completed: output`: the final answer; the runtime closes or keeps open."""

    output: str

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        await tools.call(TASK_COMPLETED, {"output": fill(self.output, values)})


@dataclass(frozen=True)
class Say:
    """`say: text`: recorded in the transcript, not posted."""

    text: str

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        await tools.say(fill(self.text, values))


@dataclass(frozen=True)
class Sleep:
    """`sleep: seconds`: hold the turn (so tests can queue inputs behind it)."""

    seconds: float

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        await asyncio.sleep(min(max(self.seconds, 0.0), MAX_SLEEP_SECONDS))


@dataclass(frozen=True)
class Fail:
    """`fail: reason`: the turn fails with EngineError, and the session with it."""

    reason: str

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        raise EngineError(fill(self.reason, values))


def _filled(value: Any, values: Mapping[str, str]) -> Any:
    """`value` with placeholders filled in every text inside it."""
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, Mapping):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_filled(item, values) for item in value]
    return value


@dataclass(frozen=True)
class CallTool:
    """`call: {tool, args}`: any tool, e.g. propose_change; texts in args take placeholders."""

    tool: str
    args: Mapping[str, Any]

    async def run(self, tools: Tools, values: Mapping[str, str]) -> None:
        await tools.call(self.tool, _filled(self.args, values))


Action = Reply | UpdateStatus | TaskCompleted | Say | Sleep | Fail | CallTool


@dataclass(frozen=True)
class Rule:
    """`{when, match, do}`: on a matching input, run `actions` in order.

    `kind` is the YAML `match` key: one of INPUT_KINDS, or None for every kind.
    """

    actions: tuple[Action, ...]
    when: re.Pattern[str] = ANY_BODY
    kind: str | None = None

    def matches(self, item: TurnInput) -> bool:
        if self.kind is not None and item.kind != self.kind:
            return False
        return self.when.search(item.body) is not None


@dataclass(frozen=True)
class ScriptEngine:
    """Runs a script agent's turns. Stateless: one instance may serve every session."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_spec(cls, spec: AgentSpec) -> ScriptEngine:
        """The engine for a script agent that `bot.agents.config` built."""
        rules = spec.options.get(SCRIPT_OPTION)
        if not isinstance(rules, tuple) or not all(isinstance(rule, Rule) for rule in rules):
            raise TypeError(NOT_A_SCRIPT.format(agent=spec.id, key=SCRIPT_OPTION))
        return cls(rules)

    def rule_for(self, item: TurnInput) -> Rule | None:
        """The first rule that applies to `item`, if any."""
        return next((rule for rule in self.rules if rule.matches(item)), None)

    async def run_turn(self, turn: Turn, tools: Tools) -> None:
        for item in turn.inputs:
            await self._answer(turn, item, tools)

    async def _answer(self, turn: Turn, item: TurnInput, tools: Tools) -> None:
        rule = self.rule_for(item)
        if rule is None:
            await tools.say(NO_RULE_MATCHES.format(kind=item.kind, author=item.author))
            return
        # A tool the agent may not use is still called: the runtime refuses it and
        # records the refusal, which is what a misconfigured script should show.
        values = placeholder_values(turn, item)
        for action in rule.actions:
            await action.run(tools, values)


def script_spec(
    agent_id: str,
    rules: Sequence[Rule],
    *,
    description: str = "",
    system_prompt: str = "",
    tools: Sequence[str] = SESSION_TOOLS,
) -> AgentSpec:
    """An AgentSpec for a script agent, with its rules where `ScriptEngine` looks."""
    return AgentSpec(
        id=agent_id,
        engine=SCRIPT_ENGINE,
        description=description,
        system_prompt=system_prompt,
        tools=tuple(tools),
        options=MappingProxyType({SCRIPT_OPTION: tuple(rules)}),
    )
