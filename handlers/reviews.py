"""Pull request reviews, merge request approvals and review thread resolution."""

from __future__ import annotations

import logging

from bot.events import ReviewEvent, ReviewThreadEvent
from bot.router import Context, Router

router = Router()
log = logging.getLogger(__name__)


@router.register(ReviewEvent)
async def note_review(event: ReviewEvent, ctx: Context) -> None:
    """Log reviews; approval gates will act on them."""
    log.info(
        "review %s (%s) on %s by %s at %s",
        event.action,
        event.state,
        event.thread.key,
        event.actor.login,
        event.commit_id or "unknown commit",
    )


@router.register(ReviewThreadEvent, "resolved", "unresolved")
async def note_thread_resolution(event: ReviewThreadEvent, ctx: Context) -> None:
    """Log review threads being resolved or reopened."""
    log.info("review thread %s %s by %s", event.thread.key, event.action, event.actor.login)
