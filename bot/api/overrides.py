"""Per-session overrides on a launch through the API: read from the body, checked against
the server's allow-list (`sessions.apiOverrides`) and its configuration, and laid onto
the session's options. Nothing is created when one is refused.

The names are the seed material's: `exitCriteria` (timeLimit.maxDurationMinutes,
userSignals.explicit), `listenToComments`, `keepSessionOpenForComments`, `agentIds`,
`coordinatorModelKey` (the model of the session's agent), `metadata.provider`,
`runtimeParams`, `additionalInstructions`.

A prompt's `runtimeParams` (for the one turn that reads it) pass the same checks:
`turn_params`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.agents.base import AgentSpec
from bot.agents.config import Config
from bot.agents.llm import OPTIONS_KEY, LLMOptions
from bot.api.schema_base import ApiError, invalid, object_of
from bot.sessions.store import SessionOptions

MAX_INSTRUCTIONS_CHARS = 8192
MAX_TIME_LIMIT_MINUTES = 24 * 60.0
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "temperature": (int, float),
    "maxTokens": (int,),
    "topP": (int, float),
    "topK": (int,),
    "stopSequences": (list,),
    "providerSpecific": (dict,),
}
OVERRIDE_FIELDS = (
    "exitCriteria",
    "listenToComments",
    "keepSessionOpenForComments",
    "agentIds",
    "coordinatorModelKey",
    "metadata",
    "runtimeParams",
    "additionalInstructions",
)


@dataclass(frozen=True)
class Overrides:
    """What a launch asked to set for its session; `given` names each one (as the
    allow-list spells it)."""

    given: tuple[str, ...] = ()
    time_limit_minutes: float | None = None
    user_signals: tuple[str, ...] | None = None
    listen_to_comments: bool | None = None
    keep_open_for_comments: bool | None = None
    agent_ids: tuple[str, ...] | None = None
    model: str | None = None
    provider: str | None = None
    runtime_params: dict[str, Any] = field(default_factory=dict)
    additional_instructions: str | None = None

    def record(self) -> dict[str, Any]:
        """What a replay compares: the overrides as given (a different set: another launch)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, (), {})}


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{name} must be true or false")
    return value


def _exit_criteria(raw: Any) -> tuple[float | None, tuple[str, ...] | None]:
    body = object_of(raw, "exitCriteria", ("timeLimit", "userSignals"))
    minutes = signals = None
    if body.get("timeLimit") is not None:
        limit = object_of(body["timeLimit"], "exitCriteria.timeLimit", ("maxDurationMinutes",))
        value = limit.get("maxDurationMinutes")
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not 0 < value <= MAX_TIME_LIMIT_MINUTES
        ):
            raise invalid(
                "exitCriteria.timeLimit.maxDurationMinutes must be a number of minutes "
                f"above 0 and at most {MAX_TIME_LIMIT_MINUTES:g}"
            )
        minutes = float(value)
    if body.get("userSignals") is not None:
        found = object_of(body["userSignals"], "exitCriteria.userSignals", ("explicit",))
        listed = found.get("explicit")
        if not isinstance(listed, list) or not all(
            isinstance(s, str) and s.strip() and len(s) <= 100 for s in listed
        ):
            raise invalid("exitCriteria.userSignals.explicit must be a list of short texts")
        signals = tuple(listed)
    return minutes, signals


def runtime_params(raw: Any) -> dict[str, Any]:
    body = object_of(raw, "runtimeParams", tuple(PARAM_TYPES))
    for name, value in body.items():
        kinds = PARAM_TYPES[name]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise invalid(f"runtimeParams.{name} has the wrong type")
    stops = body.get("stopSequences")
    if stops is not None and not all(isinstance(s, str) for s in stops):
        raise invalid("runtimeParams.stopSequences must be a list of texts")
    return dict(body)


def overrides_of(body: dict[str, Any]) -> Overrides:
    """The overrides in a launch's (already shape-checked) body."""
    given: list[str] = []
    values: dict[str, Any] = {}
    if body.get("exitCriteria") is not None:
        given.append("exitCriteria")
        values["time_limit_minutes"], values["user_signals"] = _exit_criteria(body["exitCriteria"])
    for name, key in (
        ("listenToComments", "listen_to_comments"),
        ("keepSessionOpenForComments", "keep_open_for_comments"),
    ):
        flag = _flag(body, name)
        if flag is not None:
            given.append(name)
            values[key] = flag
    ids = body.get("agentIds")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(a, str) and a for a in ids):
            raise invalid("agentIds must be a list of agent ids")
        given.append("agentIds")
        values["agent_ids"] = tuple(ids)
    model = body.get("coordinatorModelKey")
    if model is not None:
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise invalid("coordinatorModelKey must be a model name")
        given.append("coordinatorModelKey")
        values["model"] = model
    if body.get("metadata") is not None:
        metadata = object_of(body["metadata"], "metadata", ("provider",))
        provider = metadata.get("provider")
        if provider is not None:
            if not isinstance(provider, str) or not provider:
                raise invalid("metadata.provider must be a provider id")
            given.append("metadata.provider")
            values["provider"] = provider
    if body.get("runtimeParams") is not None:
        given.append("runtimeParams")
        values["runtime_params"] = runtime_params(body["runtimeParams"])
    extra = body.get("additionalInstructions")
    if extra is not None:
        if not isinstance(extra, str):
            raise invalid("additionalInstructions must be a string")
        if len(extra) > MAX_INSTRUCTIONS_CHARS:
            raise ApiError(
                413, "too_large", f"additionalInstructions is over {MAX_INSTRUCTIONS_CHARS} chars"
            )
        given.append("additionalInstructions")
        values["additional_instructions"] = extra
    return Overrides(given=tuple(given), **values)


def _refuse(refused: list[str], allowed: tuple[str, ...]) -> ApiError:
    shown = ", ".join(allowed) or "none"
    return ApiError(
        403,
        "override_not_allowed",
        f"this server does not allow {', '.join(refused)} per session "
        f"(sessions.apiOverrides allows: {shown})",
    )


def _is_llm(agent: AgentSpec) -> bool:
    return isinstance(agent.options.get(OPTIONS_KEY), LLMOptions)


def turn_params(
    params: dict[str, Any], agent: AgentSpec, *, allowed: tuple[str, ...]
) -> dict[str, Any]:
    """A prompt's runtimeParams (already type-checked), for one turn of a session of
    `agent`: allowed by the same rules as a launch's (the allow-list names
    runtimeParams, and the agent is an LLM agent), else ApiError."""
    if "runtimeParams" not in allowed:
        raise _refuse(["runtimeParams"], allowed)
    if not _is_llm(agent):
        raise invalid(f"runtimeParams needs an agent with engine llm; {agent.id} is {agent.engine}")
    return dict(params)


def apply(
    overrides: Overrides,
    options: SessionOptions,
    agent: AgentSpec,
    *,
    allowed: tuple[str, ...],
    config: Config,
) -> SessionOptions:
    """`options` with `overrides` laid on, after checking each against the allow-list and
    the configuration (ApiError otherwise)."""
    refused = [name for name in overrides.given if name not in allowed]
    if refused:
        raise _refuse(refused, allowed)
    for name in ("coordinatorModelKey", "metadata.provider", "runtimeParams"):
        if name in overrides.given and not _is_llm(agent):
            raise invalid(f"{name} needs an agent with engine llm; {agent.id} is {agent.engine}")
    if overrides.provider is not None and overrides.provider not in config.providers:
        known = ", ".join(sorted(config.providers)) or "none"
        raise invalid(f"no provider {overrides.provider!r}; known: {known}")
    for sub in overrides.agent_ids or ():
        if sub not in config.agents or sub == agent.id:
            raise invalid(f"agentIds: {sub!r} is not another configured agent")
    changed = options
    if overrides.time_limit_minutes is not None:
        changed = replace(changed, time_limit_minutes=overrides.time_limit_minutes)
    if overrides.user_signals is not None:
        changed = replace(changed, user_signals=overrides.user_signals)
    if overrides.listen_to_comments is not None:
        changed = replace(changed, listen_to_comments=overrides.listen_to_comments)
    if overrides.keep_open_for_comments is not None:
        changed = replace(changed, keep_open_for_comments=overrides.keep_open_for_comments)
    params = dict(overrides.runtime_params)
    if overrides.model is not None:
        params["model"] = overrides.model
    return replace(
        changed,
        runtime_params=params or None,
        additional_instructions=overrides.additional_instructions,
        agent_ids=overrides.agent_ids,
        provider=overrides.provider,
    )
