"""Comments in issue, PR/MR and review threads: kept per thread, and routed to sessions.

A comment that mentions the bot (or says `/agent`) starts a session in its thread; in a
thread with a live session, commands steer it and other comments become its input.
Only people with write access may start, steer or end a session; what others write in
a listened thread is recorded, and fed only when the configuration says so.
"""

from __future__ import annotations

import logging

from bot.events import CommentEvent
from bot.router import Context, Router
from handlers.act import handle

router = Router()
log = logging.getLogger(__name__)


@router.register(CommentEvent)
async def record_comment(event: CommentEvent, ctx: Context) -> None:
    """Keep every created, edited or deleted comment in its thread's history."""
    fresh = await ctx.runtime.record_comment(event, ctx.delivery_pk, ctx.with_settle)
    log.info(
        "comment %s in %s by %s%s",
        event.action,
        event.thread.key,
        event.actor.login,
        " (already recorded)" if fresh is False else "",
    )


@router.register(CommentEvent, "created", "edited", "deleted")
async def route_comment(event: CommentEvent, ctx: Context) -> None:
    """Start a session, steer one, give it the comment as input, or amend or withdraw
    queued input: whatever `bot.decide` says the comment means."""
    await handle(event, ctx)
