"""Issues and pull/merge requests opened, labeled, assigned or updated."""

from __future__ import annotations

import logging

from bot.events import IssueEvent, PullRequestEvent
from bot.router import Context, Router

router = Router()
log = logging.getLogger(__name__)


@router.register(IssueEvent)
async def note_issue(event: IssueEvent, ctx: Context) -> None:
    """Log issue changes; label and assignment triggers will start sessions from here."""
    detail = event.label or event.assignee or ""
    log.info("issue %s %s %s by %s", event.thread.key, event.action, detail, event.actor.login)


@router.register(PullRequestEvent)
async def note_pull_request(event: PullRequestEvent, ctx: Context) -> None:
    """Log pull/merge request changes; a moved head will make approvals stale."""
    log.info(
        "pull request %s %s (head %s) by %s",
        event.thread.key,
        event.action,
        event.head_sha or "?",
        event.actor.login,
    )
