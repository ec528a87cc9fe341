"""What the bot answers about sessions and commands: the `/status` line, the `/help` list,
an unknown agent, a repository configuration it could not use."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import commands
from bot.agents.config import Config
from bot.sessions import status
from bot.sessions.store import SessionInfo

STATUS_LINE = (
    "Session `{id}` (agent `{agent}`) is {state} · {elapsed} so far · "
    "time limit in {left} · {turns} turn(s)."
)
UNKNOWN_AGENT = "There is no agent `{agent}` here; agents: {known}."
NOTHING_TO_APPROVE = "Nothing is waiting for approval in this thread."
REPO_CONFIG_PROBLEMS = (
    "Threadline could not use this repository's `{path}`; the previous valid configuration "
    "(or the server's) stays in force:\n\n{problems}"
)


def status_line(session: SessionInfo) -> str:
    now = datetime.now(UTC)
    return STATUS_LINE.format(
        id=session.id,
        agent=session.agent_id,
        state=status.STATES.get(session.state, session.state),
        elapsed=status.elapsed(session.created_at, now),
        left=status.elapsed(now, session.time_limit_at),
        turns=session.turns,
    )


def help_text(config: Config, bot_names: tuple[str, ...]) -> str:
    """The `/help` answer under the server's configuration."""
    return commands.help_text(
        bot_names[0],
        config.sessions.exit_criteria.explicit_signals,
        int(config.sessions.max_extend_minutes),
    )
