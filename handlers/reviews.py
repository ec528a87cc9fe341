"""Pull request reviews, merge request approvals and review thread resolution."""

from __future__ import annotations

import logging

from bot.events import ReviewEvent, ReviewThreadEvent
from bot.hosts.base import NoCredentials
from bot.router import Context, Router

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
    older commit than the head does not count."""
    if event.state not in ("approved", "changes_requested"):
        return
    sessions = ctx.runtime.sessions
    try:
        waiting = await sessions.awaiting_in(event.thread.conversation)
        if waiting is None:
            return
        if not await sessions.can_write(
            event.host, event.installation_id, event.repo, event.actor.login
        ):
            await sessions.note(
                waiting,
                "approval_refused",
                {"by": event.actor.login, "why": "no write access", "how": "review"},
            )
            return
    except NoCredentials as exc:
        log.warning("review on %s not acted on: %s", event.thread.key, exc)
        return
    await sessions.decide(
        waiting,
        approve=event.state == "approved",
        by=event.actor.login,
        text=event.body,
        sha=event.commit_id,
        how="review",
        key=f"review.{event.review_id or ctx.delivery_id}",
    )


@router.register(ReviewThreadEvent, "resolved", "unresolved")
async def note_thread_resolution(event: ReviewThreadEvent, ctx: Context) -> None:
    """Log review threads being resolved or reopened."""
    log.info("review thread %s %s by %s", event.thread.key, event.action, event.actor.login)
