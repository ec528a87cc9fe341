"""The configured agents as the session runtime sees them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from types import MappingProxyType
from typing import Any

from bot.agents.base import AgentSpec, Engine
from bot.agents.config import Config, SessionPolicy, build_engine
from bot.agents.llm import OPTIONS_KEY, LLMOptions
from bot.agents.providers.base import ToolChoice
from bot.agents.script import SCRIPT_OPTION
from bot.sessions.store import SessionOptions


class Agents:
    """Looks agents up in the configuration and keeps one engine per agent."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._engines: dict[str, Engine] = {}

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.config.agents)

    def agent(self, agent_id: str | None) -> AgentSpec:
        return self.config.agent(agent_id)

    def engine(self, agent: AgentSpec) -> Engine:
        # One engine per agent as configured, and one per set of per-session overrides
        # (another provider, sub-agents or instructions make another engine).
        llm = agent.options.get(OPTIONS_KEY)
        provider = llm.provider.id if isinstance(llm, LLMOptions) else ""
        key = "\0".join((agent.id, provider, ",".join(agent.agent_ids), agent.system_prompt))
        if key not in self._engines:
            self._engines[key] = build_engine(agent)
        return self._engines[key]

    def overridden(self, agent: AgentSpec, options: SessionOptions) -> AgentSpec:
        """`agent` with the session's overrides (launched through the API) applied."""
        return with_overrides(agent, options, self.config)

    async def close(self) -> None:
        """Release what engines hold (a provider's HTTP client)."""
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            close = getattr(engine, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def with_overrides(agent: AgentSpec, options: SessionOptions, config: Config) -> AgentSpec:
    """`agent` with a session's overrides: instructions added to its system prompt, other
    sub-agents, another provider. Checked at launch (bot/api/overrides.py); a provider or
    sub-agent gone from the configuration since is left out."""
    if options.additional_instructions:
        prompt = f"{agent.system_prompt}\n\n{options.additional_instructions}".strip()
        agent = replace(agent, system_prompt=prompt)
    llm = agent.options.get(OPTIONS_KEY)
    changed = llm
    if options.agent_ids is not None:
        ids = tuple(a for a in options.agent_ids if a in config.agents)
        agent = replace(agent, agent_ids=ids)
        if isinstance(changed, LLMOptions):
            subs = {a: config.agents[a].description for a in ids}
            changed = replace(changed, sub_agents=MappingProxyType(subs))
    if options.provider is not None and isinstance(changed, LLMOptions):
        provider = config.providers.get(options.provider)
        if provider is not None:
            changed = replace(changed, provider=provider)
    if changed is not llm:
        agent = replace(agent, options=MappingProxyType({**agent.options, OPTIONS_KEY: changed}))
    return agent


def spec_record(agent: AgentSpec) -> dict[str, Any]:
    """The agent as a session records it at launch (shown by `sessions show` and the
    inspector): everything but secrets. A provider's API key never appears."""
    record: dict[str, Any] = {
        "id": agent.id,
        "engine": agent.engine,
        "description": agent.description,
        "system_prompt": agent.system_prompt,
        "tools": list(agent.tools),
        "agent_ids": list(agent.agent_ids),
        "max_delegations": agent.max_delegations,
        "budget": asdict(agent.budget),
        "access": None if agent.access is None else asdict(agent.access),
    }
    options = agent.options.get(OPTIONS_KEY)
    if isinstance(options, LLMOptions):
        params = {f.name: getattr(options.params, f.name) for f in fields(options.params)}
        params["provider_specific"] = dict(options.params.provider_specific)
        record["llm"] = {
            "provider": options.provider.id,
            "kind": options.provider.kind,
            "base_url": options.provider.base_url,
            "runtime_params": params,
            "tool_choice": asdict(options.tool_choice),
            "max_steps": options.max_steps,
        }
    if SCRIPT_OPTION in agent.options:
        record["script_rules"] = len(agent.options[SCRIPT_OPTION])
    return record


def session_options(policy: SessionPolicy) -> SessionOptions:
    """The settings a new session is launched with (kept with it for its whole life)."""
    return SessionOptions(
        listen_to_comments=policy.listen_to_comments,
        keep_open_for_comments=policy.keep_session_open_for_comments,
        time_limit_minutes=policy.exit_criteria.max_duration_minutes,
        user_signals=tuple(policy.exit_criteria.explicit_signals),
        idle_expiry_minutes=policy.idle_expiry_minutes,
        lifetime_minutes=policy.max_lifetime_minutes,
        max_extend_minutes=policy.max_extend_minutes,
        feed_outsider_comments=policy.feed_outsider_comments,
    )


CHOICE_OVERRIDE = "tool_choice_override"  # the spec key of a per-run tool_choice
BAD_TOOL_CHOICE = (
    "tool_choice: expected auto, any, none, or {{type: tool, name: <tool>}}; got {got!r}"
)


def parse_tool_choice(raw: object) -> ToolChoice:
    """A `tool_choice` as a spawn's arguments or a schedule give it ("auto", {"type":
    "any"}, {"type": "tool", "name": "reply"}); ValueError says what is wrong."""
    if isinstance(raw, str) and raw in ("auto", "any", "none"):
        return ToolChoice(raw)  # type: ignore[arg-type]
    if isinstance(raw, Mapping):
        kind, name = raw.get("type"), raw.get("name")
        if kind in ("auto", "any", "none") and set(raw) == {"type"}:
            return ToolChoice(kind)
        if kind == "tool" and isinstance(name, str) and name and set(raw) == {"type", "name"}:
            return ToolChoice("tool", name)
    raise ValueError(BAD_TOOL_CHOICE.format(got=raw))


def narrowed(
    agent: AgentSpec, active_tools: Sequence[str] | None, choice: ToolChoice | None
) -> AgentSpec:
    """`agent` for one run: only the tools of `active_tools` that it has (never more), and
    `choice` as its tool_choice (an llm agent's; other engines have none)."""
    if active_tools is not None:
        agent = replace(agent, tools=tuple(t for t in agent.tools if t in active_tools))
    options = agent.options.get(OPTIONS_KEY)
    if choice is not None and isinstance(options, LLMOptions):
        if choice.mode == "tool" and choice.name not in agent.tools:
            raise ValueError(f"tool_choice names {choice.name!r}, which this run may not use")
        fresh = replace(options, tool_choice=choice)
        agent = replace(agent, options=MappingProxyType({**agent.options, OPTIONS_KEY: fresh}))
    return agent


def run_record(agent: AgentSpec, choice: ToolChoice | None) -> dict[str, Any]:
    """spec_record for a narrowed run: the tool_choice kept so later turns use it too."""
    record = spec_record(agent)
    if choice is not None:
        record[CHOICE_OVERRIDE] = asdict(choice)
    return record


def with_run_choice(agent: AgentSpec, spec: Mapping[str, Any]) -> AgentSpec:
    """The agent with the tool_choice its session was launched with, if one was given."""
    raw = spec.get(CHOICE_OVERRIDE)
    if not isinstance(raw, Mapping):
        return agent
    choice = ToolChoice(raw.get("mode", "auto"), raw.get("name"))
    try:
        return narrowed(agent, None, choice)
    except ValueError:  # the tool is no longer the agent's: the configured choice stands
        return agent
