"""A `command` agent's keys in threadline.yml, validated with their lines and built into
`bot.agents.command.CommandOptions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.agents import yamlcheck as y
from bot.agents.command import ADAPTERS, COMMAND_OPTION, CommandOptions
from bot.agents.providers.base import ProviderConfig

COMMAND_KEYS = ("command", "program", "args", "timeoutSeconds")  # with provider, model
BAD_ADAPTER = "expected which CLI runs the agent: one of {adapters}, got {got}"
PROGRAM_REQUIRED = "required for command: generic (the program that reads the task on stdin)"
UNKNOWN_PROVIDER = "unknown provider {name!r}; providers are {known}"
BAD_SECONDS = "expected a number of seconds above 0, got {got}"
NOT_A_WORKSPACE = (
    "engine command runs its CLI in a workspace: set workspace to read-only or read-write"
)


def command_options(
    report: y.Report,
    found: Mapping[str, object],
    path: y.KeyPath,
    known: Mapping[str, ProviderConfig | None],
) -> dict[str, Any]:
    before = len(report)
    adapter = found.get("command")
    if adapter not in ADAPTERS:
        report.add(
            (*path, "command"),
            BAD_ADAPTER.format(adapters=y.choices(ADAPTERS), got=y.shown(adapter)),
        )
        return {}
    assert isinstance(adapter, str)
    mode = found.get("workspace", "none")
    if mode == "none" or (isinstance(mode, Mapping) and mode.get("mode", "none") == "none"):
        report.add((*path, "workspace"), NOT_A_WORKSPACE)
    program = adapter
    if "program" in found:
        program = y.text(report, found["program"], (*path, "program")) or adapter
    elif adapter == "generic":
        report.add((*path, "program"), PROGRAM_REQUIRED)
    args = y.texts(report, found["args"], (*path, "args")) if "args" in found else ()
    provider = None
    if "provider" in found:
        name = found["provider"]
        if not isinstance(name, str) or name not in known:
            reason = UNKNOWN_PROVIDER.format(name=name, known=y.choices(known))
            report.add((*path, "provider"), y.unknown(str(name), list(known), reason))
        else:
            provider = known[name]
    model = y.text(report, found["model"], (*path, "model")) if "model" in found else None
    seconds = 1800.0
    if "timeoutSeconds" in found:
        number = y.number(found["timeoutSeconds"])
        if number is None or number <= 0:
            report.add(
                (*path, "timeoutSeconds"), BAD_SECONDS.format(got=y.shown(found["timeoutSeconds"]))
            )
        else:
            seconds = number
    if len(report) > before:
        return {}
    options = CommandOptions(adapter, program, tuple(args or ()), provider, model, seconds)
    return {COMMAND_OPTION: options}
