"""`sessions.apiOverrides` in threadline.yml: which per-session settings a launch through
the API may carry (the server's file only; a repository's file cannot name it).

By default only the settings that shape a session's life are allowed; those that change
what runs or what it costs (sub-agents, model, provider, runtime parameters, extra
instructions) must be named by the server's configuration.
"""

from __future__ import annotations

from bot.agents import yamlcheck as y

API_OVERRIDES = (
    "exitCriteria",
    "listenToComments",
    "keepSessionOpenForComments",
    "agentIds",
    "coordinatorModelKey",
    "metadata.provider",
    "runtimeParams",
    "additionalInstructions",
)
DEFAULT_API_OVERRIDES = ("exitCriteria", "listenToComments", "keepSessionOpenForComments")
UNKNOWN_OVERRIDE = "unknown override {name!r}; overrides are {known}"


def api_overrides(report: y.Report, raw: object, path: y.KeyPath) -> tuple[str, ...] | None:
    """The names listed (an empty list allows none), each one of `API_OVERRIDES`."""
    names = () if raw == [] else y.texts(report, raw, path)
    if names is None:
        return None
    for name in names:
        if name not in API_OVERRIDES:
            report.add(path, UNKNOWN_OVERRIDE.format(name=name, known=y.choices(API_OVERRIDES)))
            return None
    return tuple(names)
