"""Issues and pull/merge requests: a label, an assignment or a mention starts a session.

An issue labeled with the configured label (`triggers.label`), assigned to the bot
(`triggers.assignment`), or opened with a mention of the bot (`triggers.mention`) gets
a session on the issue, with the issue's title and text as its task. The person who
labeled, assigned or opened it needs write access, as for any trigger.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot import commands
from bot.agents.config import Triggers
from bot.events import IssueEvent, PullRequestEvent
from bot.hosts.base import NoCredentials
from bot.router import Context, Router
from bot.sessions.agents import session_options
from bot.sessions.service import Trigger
from handlers.session_commands import repo_config

router = Router()
log = logging.getLogger(__name__)


def wants_session(event: IssueEvent, ctx: Context, triggers: Triggers | None = None) -> bool:
    triggers = triggers or ctx.runtime.config.triggers
    names = {n.lower() for n in ctx.runtime.bot_names}
    if event.action == "labeled":
        return triggers.label is not None and (event.label or "").lower() == triggers.label.lower()
    if event.action == "assigned":
        who = (event.assignee or "").lower().removesuffix("[bot]")
        return triggers.assignment and who in names
    if event.action == "opened" and triggers.mention:
        parsed = commands.parse(event.body, bot_names=ctx.runtime.bot_names)
        return parsed.mention is not None
    return False


@router.register(IssueEvent, "opened", "labeled", "assigned")
async def start_from_issue(event: IssueEvent, ctx: Context) -> None:
    """Start a session on the issue when a trigger asks for one."""
    if not wants_session(event, ctx):
        return
    sessions = ctx.runtime.sessions
    task = f"{event.title}\n\n{event.body}".strip()
    trigger = Trigger(
        client_request_id=f"{event.host}:{ctx.delivery_id}",
        thread=event.thread,
        installation_id=event.installation_id,
        login=event.actor.login,
        task=task,
        url=event.url,
    )
    try:
        allowed = await sessions.can_write(
            event.host, event.installation_id, event.repo, event.actor.login
        )
    except NoCredentials as exc:
        log.warning("issue %s not acted on: %s", event.thread.key, exc)
        return
    if not allowed:
        await sessions.refuse(trigger)
        return
    config = await repo_config(trigger, event.host, event.repo, ctx)
    if not wants_session(event, ctx, config.triggers):
        log.info("issue %s: the repository's configuration turned this trigger off", event.repo)
        return
    agent = config.agent(None)
    options = session_options(config.sessions)
    result = await sessions.launch(replace(trigger, agent=agent, options=options))
    log.info(
        "issue %s %s by %s: session %s%s",
        event.thread.key,
        event.action,
        event.actor.login,
        result.session.id,
        "" if result.created else " (already running)",
    )


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
