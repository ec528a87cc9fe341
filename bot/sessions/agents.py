"""The configured agents as the session runtime sees them."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, fields, replace
from types import MappingProxyType
from typing import Any

from bot.agents.base import AgentSpec, Engine
from bot.agents.config import Config, SessionPolicy, build_engine
from bot.agents.llm import OPTIONS_KEY, LLMOptions
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
