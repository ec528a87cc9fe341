"""The `script` engine's rules as written in threadline.yml: validated with their lines
and built into `bot.agents.script`'s objects (each `when` regex compiled once)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from bot.agents import yamlcheck as y
from bot.agents.base import ALL_TOOLS
from bot.agents.script import (
    ANY_BODY,
    INPUT_KINDS,
    MAX_SLEEP_SECONDS,
    SCRIPT_ENGINE,
    SCRIPT_OPTION,
    Action,
    CallTool,
    Fail,
    Reply,
    Rule,
    Say,
    Sleep,
    TaskCompleted,
    UpdateStatus,
)

ENGINE_KEY_REQUIRED = "required for engine {engine}: {what}"
UNKNOWN_CALL_TOOL = "unknown tool {name!r}; tools are {known}"
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


RULE_KEYS = ("when", "match", "do")


def script_options(
    report: y.Report, found: Mapping[str, object], path: y.KeyPath
) -> dict[str, Any]:
    where = (*path, SCRIPT_OPTION)
    if SCRIPT_OPTION not in found:
        report.add(where, ENGINE_KEY_REQUIRED.format(engine=SCRIPT_ENGINE, what="a list of rules"))
        return {}
    return {SCRIPT_OPTION: _rules(report, found[SCRIPT_OPTION], where)}


def _rules(report: y.Report, raw: object, path: y.KeyPath) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        report.add(path, EXPECTED_RULES.format(got=y.shown(raw)))
        return ()
    rules = (_rule(report, item, (*path, number)) for number, item in enumerate(raw))
    return tuple(rule for rule in rules if rule is not None)


def _rule(report: y.Report, raw: object, path: y.KeyPath) -> Rule | None:
    if not isinstance(raw, dict):
        report.add(path, EXPECTED_RULE.format(got=y.shown(raw)))
        return None
    found = y.mapping(report, raw, path, RULE_KEYS)
    when = _pattern(report, found["when"], (*path, "when")) if "when" in found else ANY_BODY
    kind = _kind(report, found["match"], (*path, "match")) if "match" in found else None
    if "do" not in found:
        report.add((*path, "do"), y.REQUIRED)
        return None
    actions = _actions(report, found["do"], (*path, "do"))
    if when is None or actions is None:
        return None
    return Rule(actions=actions, when=when, kind=kind)


def _pattern(report: y.Report, raw: object, path: y.KeyPath) -> re.Pattern[str] | None:
    text = y.any_text(report, raw, path)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        report.add(path, BAD_REGEX.format(pattern=text, reason=exc))
        return None


def _kind(report: y.Report, raw: object, path: y.KeyPath) -> str | None:
    if isinstance(raw, str) and raw in INPUT_KINDS:
        return raw
    report.add(path, BAD_KIND.format(kinds=y.choices(INPUT_KINDS), got=y.shown(raw)))
    return None


def _actions(report: y.Report, raw: object, path: y.KeyPath) -> tuple[Action, ...] | None:
    if not isinstance(raw, list) or not raw:
        report.add(path, EXPECTED_ACTIONS.format(got=y.shown(raw)))
        return None
    actions = [_action(report, item, (*path, number)) for number, item in enumerate(raw)]
    return tuple(action for action in actions if action is not None)


def _action(report: y.Report, raw: object, path: y.KeyPath) -> Action | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        report.add(path, EXPECTED_ACTION.format(actions=y.choices(ACTIONS), got=y.shown(raw)))
        return None
    ((name, value),) = raw.items()
    parse = ACTIONS.get(name) if isinstance(name, str) else None
    if parse is None:
        reason = UNKNOWN_ACTION.format(actions=y.choices(ACTIONS))
        report.add((*path, str(name)), y.unknown(str(name), list(ACTIONS), reason))
        return None
    return parse(report, value, (*path, name))


def _reply(report: y.Report, raw: object, path: y.KeyPath) -> Reply | None:
    text = y.text(report, raw, path)
    return None if text is None else Reply(text)


def _say(report: y.Report, raw: object, path: y.KeyPath) -> Say | None:
    text = y.text(report, raw, path)
    return None if text is None else Say(text)


def _fail(report: y.Report, raw: object, path: y.KeyPath) -> Fail | None:
    text = y.text(report, raw, path)
    return None if text is None else Fail(text)


def _task_completed(report: y.Report, raw: object, path: y.KeyPath) -> TaskCompleted | None:
    text = y.blank_ok(report, raw, path)
    return None if text is None else TaskCompleted(text)


def _sleep(report: y.Report, raw: object, path: y.KeyPath) -> Sleep | None:
    seconds = y.number(raw)
    if seconds is not None and 0 <= seconds <= MAX_SLEEP_SECONDS:
        return Sleep(seconds)
    report.add(path, BAD_SLEEP.format(most=MAX_SLEEP_SECONDS, got=y.shown(raw)))
    return None


STATUS_KEYS = ("steps", "done", "summary")


def _update_status(report: y.Report, raw: object, path: y.KeyPath) -> UpdateStatus | None:
    if not isinstance(raw, dict):
        report.add(path, y.NOT_A_MAPPING.format(keys=y.choices(STATUS_KEYS), got=y.shown(raw)))
        return None
    before = len(report)
    found = y.mapping(report, raw, path, STATUS_KEYS)
    steps = _steps(report, found.get("steps"), (*path, "steps"))
    done = (
        None if steps is None else _done(report, found.get("done", 0), (*path, "done"), len(steps))
    )
    summary = y.blank_ok(report, found.get("summary"), (*path, "summary"))
    if len(report) > before or steps is None or done is None or summary is None:
        return None
    return UpdateStatus(steps, done, summary)


def _steps(report: y.Report, raw: object, path: y.KeyPath) -> tuple[str, ...] | None:
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(step, str) and step.strip() for step in raw)
    ):
        return tuple(raw)
    report.add(path, EXPECTED_STEPS.format(got=y.shown(raw)))
    return None


def _done(report: y.Report, raw: object, path: y.KeyPath, most: int) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= most:
        return raw
    report.add(path, BAD_DONE.format(most=most, got=y.shown(raw)))
    return None


CALL_KEYS = ("tool", "args")


def _call(report: y.Report, raw: object, path: y.KeyPath) -> CallTool | None:
    if not isinstance(raw, dict):
        report.add(path, y.NOT_A_MAPPING.format(keys=y.choices(CALL_KEYS), got=y.shown(raw)))
        return None
    before = len(report)
    found = y.mapping(report, raw, path, CALL_KEYS)
    tool = found.get("tool")
    if not isinstance(tool, str) or tool not in ALL_TOOLS:
        reason = UNKNOWN_CALL_TOOL.format(name=tool, known=y.choices(ALL_TOOLS))
        report.add((*path, "tool"), reason)
    args = found.get("args", {})
    if not isinstance(args, dict):
        report.add(
            (*path, "args"), y.NOT_A_MAPPING.format(keys="the tool's arguments", got=y.shown(args))
        )
        return None
    if len(report) > before:
        return None
    return CallTool(str(tool), MappingProxyType({str(k): v for k, v in args.items()}))


ActionParser = Callable[[y.Report, object, y.KeyPath], Action | None]

ACTIONS: Mapping[str, ActionParser] = {
    "reply": _reply,
    "update_status": _update_status,
    "task_completed": _task_completed,
    "say": _say,
    "sleep": _sleep,
    "fail": _fail,
    "call": _call,
}
