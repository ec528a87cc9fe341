"""An agent's workspace and protected-path settings in the server's configuration file:
`workspace` (mode, network, outsider code, setup steps) and `allowProtectedPaths`."""

from __future__ import annotations

from bot.agents import yamlcheck as y
from bot.agents.base import (
    PROTECTED_KINDS,
    WORKSPACE_MODES,
    WORKSPACE_READ_TOOLS,
    WORKSPACE_WRITE_TOOLS,
)

EXPECTED_PROTECTED = "expected true, false or a list of kinds ({kinds}), got {got}"
UNKNOWN_PROTECTED = "unknown kind of protected path {name!r}; kinds are {kinds}"
BAD_WORKSPACE = "workspace is one of none, read-only, read-write"
WORKSPACE_KEYS = ("mode", "network", "outsiderCode", "setup")
BAD_SETUP = "expected a list of commands: each a shell string or an argv list of strings"
BAD_OUTSIDER_CODE = "outsiderCode is `run` or `refuse` (the default)"


def _allow_protected(report: y.Report, raw: object, path: y.KeyPath) -> frozenset[str]:
    """`allowProtectedPaths`: true (every kind), false or absent (none), or a list of kinds."""
    if raw is None or raw is False:
        return frozenset()
    if raw is True:
        return frozenset(PROTECTED_KINDS)
    kinds = PROTECTED_KINDS
    if not isinstance(raw, list):
        report.add(path, EXPECTED_PROTECTED.format(kinds=y.choices(kinds), got=y.shown(raw)))
        return frozenset()
    allowed = set()
    for number, kind in enumerate(raw):
        if kind not in kinds:
            reason = UNKNOWN_PROTECTED.format(name=kind, kinds=y.choices(kinds))
            report.add((*path, number), y.unknown(str(kind), kinds, reason))
        else:
            allowed.add(str(kind))
    return frozenset(allowed)


def _workspace(report: y.Report, raw: object, path: y.KeyPath) -> tuple[str, bool, bool]:
    """`workspace: MODE`, or `workspace: {mode, network, outsiderCode}` (server file only:
    a repository's file cannot set it)."""
    network = outsiders = False
    if isinstance(raw, dict):
        found = y.mapping(report, raw, path, WORKSPACE_KEYS)
        if "network" in found:
            network = bool(y.flag(report, found["network"], (*path, "network")))
        if "outsiderCode" in found:
            if found["outsiderCode"] not in ("run", "refuse"):
                report.add((*path, "outsiderCode"), BAD_OUTSIDER_CODE)
            outsiders = found["outsiderCode"] == "run"
        raw, path = found.get("mode", "read-only"), (*path, "mode")
    if raw not in WORKSPACE_MODES:
        report.add(path, BAD_WORKSPACE)
        return "none", False, False
    return str(raw), network, outsiders


def _workspace_setup(report: y.Report, raw: object, path: y.KeyPath) -> tuple[tuple[str, ...], ...]:
    """`workspace: {setup: [...]}`: each step a shell string (run with `sh -c`) or an argv."""
    if not isinstance(raw, dict) or "setup" not in raw:
        return ()
    steps = raw["setup"]
    if not isinstance(steps, list):
        report.add(path, BAD_SETUP)
        return ()
    found: list[tuple[str, ...]] = []
    for number, step in enumerate(steps):
        if isinstance(step, str) and step.strip():
            found.append(("sh", "-c", step))
        elif isinstance(step, list) and step and all(isinstance(p, str) for p in step):
            found.append(tuple(step))
        else:
            report.add((*path, number), BAD_SETUP)
    return tuple(found)


def _with_workspace_tools(tools: tuple[str, ...], workspace: str) -> tuple[str, ...]:
    """By default an agent with a workspace gets the workspace tools its mode allows."""
    if workspace == "none":
        return tools
    extra: tuple[str, ...] = WORKSPACE_READ_TOOLS
    if workspace == "read-write":
        extra = (*extra, *WORKSPACE_WRITE_TOOLS)
    return (*tools, *(name for name in extra if name not in tools))
