"""Comments in issue, PR/MR and review threads: kept per thread, and routed to sessions.

A comment that mentions the bot (or says `/agent`) starts a session in its thread; in a
thread with a live session, commands steer it and other comments become its input.
Only people with write access may start, steer or end a session; what others write in
a listened thread is recorded, and fed only when the configuration says so.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot import commands
from bot.events import CommentEvent
from bot.hosts.base import NoCredentials
from bot.router import Context, Router
from bot.sessions.agents import session_options
from bot.sessions.service import Trigger
from handlers.session_commands import apply_commands, help_reply, repo_config, unknown_agent

router = Router()
log = logging.getLogger(__name__)


def parse(event: CommentEvent, ctx: Context) -> commands.Parsed:
    config = ctx.runtime.config
    return commands.parse(
        event.body,
        bot_names=ctx.runtime.bot_names,
        agent_ids=tuple(config.agents),
        user_signals=config.sessions.exit_criteria.explicit_signals,
        max_extend_minutes=int(config.sessions.max_extend_minutes),
    )


def trigger_of(event: CommentEvent, ctx: Context, parsed: commands.Parsed) -> Trigger:
    task, agent_id = event.body.strip(), None
    if parsed.mention is not None:
        task = parsed.mention.task or task
    elif parsed.agent is not None:
        task, agent_id = parsed.agent.task or task, parsed.agent.agent_id
    return Trigger(
        client_request_id=f"{event.host}:{ctx.delivery_id}",
        thread=event.thread,
        installation_id=event.installation_id,
        login=event.actor.login,
        task=task,
        agent_id=agent_id,
        comment_id=event.comment_id,
        url=event.url,
    )


@router.register(CommentEvent)
async def record_comment(event: CommentEvent, ctx: Context) -> None:
    """Keep every created, edited or deleted comment in its thread's history."""
    fresh = await ctx.runtime.record_comment(event, ctx.delivery_pk)
    log.info(
        "comment %s in %s by %s%s",
        event.action,
        event.thread.key,
        event.actor.login,
        "" if fresh else " (already recorded)",
    )


@router.register(CommentEvent, "created")
async def route_comment(event: CommentEvent, ctx: Context) -> None:
    """Start a session, steer one, or give it the comment as input."""
    try:
        await _route(event, ctx)
    except NoCredentials as exc:
        # Webhooks only: without credentials nothing can be checked or written back.
        log.warning("comment in %s not acted on: %s", event.thread.key, exc)


async def _route(event: CommentEvent, ctx: Context) -> None:
    sessions = ctx.runtime.sessions
    config = ctx.runtime.config
    parsed = parse(event, ctx)
    asks_task = config.triggers.mention and (parsed.mention or parsed.agent) is not None
    live = await sessions.live_for(event.thread)
    trigger = trigger_of(event, ctx, parsed)
    answers = any(c.name in ("approve", "request-changes") for c in parsed.commands)
    if answers and (live is None or live.state != "awaiting_approval"):
        # An answer in a pull request's conversation to a gate in one of its review threads.
        live = await sessions.awaiting_in(event.thread) or live
    if live is None:
        if asks_task:
            await start(trigger, event, ctx)
        elif any(c.name == "help" for c in parsed.commands):
            await help_reply(trigger, ctx)
        return
    writer = await sessions.can_write(
        event.host, event.installation_id, event.repo, event.actor.login
    )
    if parsed.commands or parsed.signal or parsed.problems:
        await apply_commands(live, parsed, trigger, writer, ctx)
        return
    if not live.options.listen_to_comments:
        await sessions.note(
            live,
            "input_ignored",
            {"by": event.actor.login, "why": "not listening", "comment": event.comment_id},
        )
        return
    if not writer and not live.options.feed_outsider_comments:
        await sessions.note(
            live,
            "input_ignored",
            {
                "by": event.actor.login,
                "why": "no write access",
                "body": event.body,
                "comment": event.comment_id,
            },
        )
        return
    await sessions.feed(
        live,
        kind="comment",
        author=event.actor.login,
        body=trigger.task if asks_task else event.body,
        comment_id=event.comment_id,
        url=event.url,
    )


async def start(trigger: Trigger, event: CommentEvent, ctx: Context) -> None:
    sessions = ctx.runtime.sessions
    if not await sessions.can_write(
        event.host, event.installation_id, event.repo, event.actor.login
    ):
        await sessions.refuse(trigger)
        log.info(
            "refused a trigger by %s in %s: no write access", event.actor.login, event.thread.key
        )
        return
    config = await repo_config(trigger, event.host, event.repo, ctx)
    if not config.triggers.mention:
        log.info("mentions are turned off in %s by its configuration file", event.repo)
        return
    try:
        agent = config.agent(trigger.agent_id)
    except KeyError:
        await unknown_agent(trigger, ctx, config)
        return
    await sessions.launch(replace(trigger, agent=agent, options=session_options(config.sessions)))


@router.register(CommentEvent, "edited")
async def amend_input(event: CommentEvent, ctx: Context) -> None:
    """An edited comment that is still waiting for the next turn changes with it."""
    if await ctx.runtime.sessions.amend(event.comment_id, event.body, event.actor.login):
        log.info("queued input from comment %s amended", event.comment_id)


@router.register(CommentEvent, "deleted")
async def withdraw_input(event: CommentEvent, ctx: Context) -> None:
    """A deleted comment that is still waiting for the next turn is taken back."""
    if await ctx.runtime.sessions.withdraw(event.comment_id, event.actor.login):
        log.info("queued input from comment %s withdrawn", event.comment_id)
