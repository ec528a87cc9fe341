"""Issues and pull/merge requests: a label, an assignment or a mention starts a session.

An issue labeled with the configured label (`triggers.label`), assigned to the bot
(`triggers.assignment`), or opened with a mention of the bot (`triggers.mention`) gets
a session on the issue, with the issue's title and text as its task. The person who
labeled, assigned or opened it needs write access, as for any trigger.
"""

from __future__ import annotations

import logging

from bot.events import IssueEvent, PullRequestEvent
from bot.router import Context, Router
from handlers.act import handle

router = Router()
log = logging.getLogger(__name__)


@router.register(IssueEvent, "opened", "labeled", "assigned")
async def start_from_issue(event: IssueEvent, ctx: Context) -> None:
    """Start a session on the issue when a trigger asks for one (`bot.decide`)."""
    await handle(event, ctx)


@router.register(PullRequestEvent)
async def note_pull_request(event: PullRequestEvent, ctx: Context) -> None:
    """Log pull/merge request changes; a new head makes gates asked on an older one stale."""
    log.info(
        "pull request %s %s (head %s) by %s",
        event.thread.key,
        event.action,
        event.head_sha or "?",
        event.actor.login,
    )
    if event.head_sha and event.action == "synchronize":
        await ctx.runtime.sessions.head_moved(event.thread.conversation, event.head_sha)
