"""The configured agents as the session runtime sees them."""

from __future__ import annotations

from bot.agents.base import AgentSpec, Engine
from bot.agents.config import Config, SessionPolicy, build_engine
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
        if agent.id not in self._engines:
            self._engines[agent.id] = build_engine(agent)
        return self._engines[agent.id]


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
