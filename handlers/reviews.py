"""Pull request reviews, merge request approvals and review thread resolution."""

from __future__ import annotations

import logging

from bot.events import ReviewEvent, ReviewThreadEvent
from bot.router import Context, Router
from handlers.act import handle

router = Router()
log = logging.getLogger(__name__)


@router.register(ReviewEvent)
async def note_review(event: ReviewEvent, ctx: Context) -> None:
    """Log reviews."""
    log.info(
        "review %s (%s) on %s by %s at %s",
        event.action,
        event.state,
        event.thread.key,
        event.actor.login,
        event.commit_id or "unknown commit",
    )


@router.register(ReviewEvent, "submitted")
async def answer_gate(event: ReviewEvent, ctx: Context) -> None:
    """A GitHub review (Approve / Request changes) or a GitLab approval answers the gate
    of the pull request's waiting session, when its author may write. A review on an
    older commit than the head does not count (the session runtime checks that)."""
    await handle(event, ctx)


@router.register(ReviewThreadEvent, "resolved", "unresolved")
async def note_thread_resolution(event: ReviewThreadEvent, ctx: Context) -> None:
    """Log review threads being resolved or reopened."""
    log.info("review thread %s %s by %s", event.thread.key, event.action, event.actor.login)
