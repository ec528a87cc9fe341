"""Comments in issue, PR/MR and review threads: recorded per thread for the sessions to use."""

from __future__ import annotations

import logging

from bot.events import CommentEvent
from bot.router import Context, Router

router = Router()
log = logging.getLogger(__name__)


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
