"""Commands in a thread with a live session: /done and the user signals, /cancel, /status,
/extend, /help. Each is checked against the author's permission every time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot import commands
from bot.agents.config import Config
from bot.router import Context
from bot.sessions import status
from bot.sessions.service import Trigger
from bot.sessions.store import CANCELLED, USER_SIGNAL, SessionInfo

log = logging.getLogger(__name__)

STATUS_LINE = (
    "Session `{id}` (agent `{agent}`) is {state} · {elapsed} so far · "
    "time limit in {left} · {turns} turn(s)."
)
UNKNOWN_AGENT = "There is no agent `{agent}` here; agents: {known}."


async def apply_commands(
    session: SessionInfo,
    parsed: commands.Parsed,
    trigger: Trigger,
    writer: bool,
    ctx: Context,
) -> None:
    """Carry out a comment's commands in order; a user signal ends the session."""
    sessions = ctx.runtime.sessions
    names: list[str] = [f"/{c.name}" for c in parsed.commands] or [parsed.signal or "(invalid)"]
    if not writer:
        await sessions.note(
            session,
            "command_refused",
            {"by": trigger.login, "commands": names, "why": "no write access"},
        )
        await sessions.refuse(trigger, command=names[0])
        return
    await sessions.note(
        session, "commands", {"by": trigger.login, "commands": names, "signal": parsed.signal}
    )
    if parsed.problems:
        await sessions.reply(session, f"problems.{trigger.comment_id}", "\n".join(parsed.problems))
    for command in parsed.commands:
        key = f"{command.name}.{trigger.comment_id}.{command.line}"
        if command.name == "done":
            await sessions.close(session, USER_SIGNAL, by=trigger.login)
            return
        if command.name == "cancel":
            await sessions.close(session, CANCELLED, by=trigger.login)
            return
        if command.name == "status":
            await sessions.reply(session, key, status_line(session))
        elif command.name == "extend":
            await sessions.extend(session, float(command.argument), by=trigger.login)
        elif command.name == "help":
            await help_reply(trigger, ctx, session)
        elif command.name in ("approve", "request-changes"):
            await sessions.decide(
                session,
                approve=command.name == "approve",
                by=trigger.login,
                text=command.argument,
                how="comment",
                key=key,
            )
    if parsed.signal is not None and not any(c.name == "done" for c in parsed.commands):
        await sessions.close(session, USER_SIGNAL, by=trigger.login)


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


async def help_reply(trigger: Trigger, ctx: Context, session: SessionInfo | None = None) -> None:
    config = ctx.runtime.config
    text = commands.help_text(
        ctx.runtime.bot_names[0],
        config.sessions.exit_criteria.explicit_signals,
        int(config.sessions.max_extend_minutes),
    )
    await ctx.runtime.sessions.plain_reply(trigger, f"help.{trigger.client_request_id}", text)


async def unknown_agent(trigger: Trigger, ctx: Context, config: Config | None = None) -> None:
    known = ", ".join(f"`{a}`" for a in (config or ctx.runtime.config).agents)
    text = UNKNOWN_AGENT.format(agent=trigger.agent_id, known=known)
    await ctx.runtime.sessions.plain_reply(
        trigger, f"unknown-agent.{trigger.client_request_id}", text
    )


REPO_CONFIG_PROBLEMS = (
    "Threadline could not use this repository's `{path}`; the previous valid configuration "
    "(or the server's) stays in force:\n\n{problems}"
)


async def repo_config(trigger: Trigger, host: str, repo: str, ctx: Context) -> Config:
    """The configuration in force in `repo`; a newer file with problems is answered in the
    trigger's thread, once per trigger, with each problem and its line."""
    answer = await ctx.runtime.repo_config(host, trigger.installation_id, repo)
    if answer.problems:
        listed = "\n".join(f"- `{problem}`" for problem in answer.problems)
        text = REPO_CONFIG_PROBLEMS.format(path=answer.path, problems=listed)
        await ctx.runtime.sessions.plain_reply(
            trigger, f"repo-config.{trigger.client_request_id}", text
        )
    return answer.config
