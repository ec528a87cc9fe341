"""Carrying out what `bot.decide` decided, for comments, reviews and issue triggers.

`handle` reads the event, looks up each fact the decision asks for (the thread's live
session, the session waiting on an approval, the author's permission, the repository's
configuration) and turns the actions into calls on the session runtime. It decides
nothing itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, assert_never

from bot import decide as d
from bot.events import CommentEvent, Event, IssueEvent, ReviewEvent, ThreadRef
from bot.hosts.base import NoCredentials
from bot.log import bind
from bot.router import Context
from bot.sessions.agents import session_options
from bot.sessions.service import Trigger
from bot.sessions.store import CANCELLED, USER_SIGNAL, SessionInfo
from handlers.session_commands import (
    NOTHING_TO_APPROVE,
    REPO_CONFIG_PROBLEMS,
    UNKNOWN_AGENT,
    help_text,
    status_line,
)

log = logging.getLogger(__name__)


async def handle(event: CommentEvent | ReviewEvent | IssueEvent, ctx: Context) -> None:
    """Decide what `event` means and do it."""
    facts = d.Facts.read(
        event,
        config=ctx.runtime.config,
        bot_names=ctx.runtime.bot_names,
        request_id=f"{event.host}:{ctx.delivery_id}",
        delivery_id=ctx.delivery_id,
    )
    try:
        actions = await settle(facts, ctx)
        for action in actions:
            await carry_out(action, facts, ctx)
    except NoCredentials as exc:
        # Webhooks only: without credentials nothing can be checked or written back.
        log.warning("%s in %s not acted on: %s", _kind(event), event.thread.key, exc)


async def settle(facts: d.Facts, ctx: Context) -> list[d.Action]:
    """Decide, looking up each fact the decision asks for, until it says what to do."""
    while True:
        decision = d.decide(facts)
        if not isinstance(decision, d.Ask):
            return decision
        facts = facts.knowing(decision.fact, await look_up(decision, facts, ctx))


async def look_up(ask: d.Ask, facts: d.Facts, ctx: Context) -> Any:
    event = facts.event
    sessions = ctx.runtime.sessions
    if ask.fact == "live":
        return await sessions.live_for(_thread(ask, event))
    if ask.fact == "awaiting":
        return await sessions.awaiting_in(_thread(ask, event))
    if ask.fact == "last":
        return await sessions.last_in(_thread(ask, event))
    if ask.fact == "hold":
        return await sessions.hold_for(event.host, event.repo)
    if ask.fact == "writer":
        return await sessions.can_write(
            event.host, event.installation_id, event.repo, event.actor.login
        )
    return await ctx.runtime.repo_config(event.host, event.installation_id, event.repo)


async def carry_out(action: d.Action, facts: d.Facts, ctx: Context) -> None:
    """Do one action on behalf of the event's author (logged with its session bound)."""
    session = getattr(action, "session", None)
    with bind(session=session.id if isinstance(session, SessionInfo) else None):
        await _carry_out(action, facts, ctx)


async def _carry_out(action: d.Action, facts: d.Facts, ctx: Context) -> None:
    event = facts.event
    login = event.actor.login
    if isinstance(action, d.Ignore):
        log.log(
            logging.INFO if action.notable else logging.DEBUG,
            "%s %s in %s by %s: nothing to do, %s",
            _kind(event),
            event.action,
            _thread_key(event),
            login,
            action.reason,
        )
        return
    sessions = ctx.runtime.sessions  # only processes with workers have sessions
    match action:
        case d.Record(session, kind, data):
            await sessions.note(session, kind, data)
        case d.RefuseOnce(command):
            await sessions.refuse(trigger_for(facts), command=command)
            log.info(
                "refused %s by %s in %s: no write access",
                command or "a trigger",
                login,
                _thread_key(event),
            )
        case d.ReportConfigProblems(path, problems):
            listed = "\n".join(f"- `{problem}`" for problem in problems)
            text = REPO_CONFIG_PROBLEMS.format(path=path, problems=listed)
            await _plain_reply(facts, ctx, "repo-config", text)
        case d.UnknownAgent(agent_id, known):
            text = UNKNOWN_AGENT.format(agent=agent_id, known=", ".join(f"`{a}`" for a in known))
            await _plain_reply(facts, ctx, "unknown-agent", text)
        case d.NothingToApprove():
            await _plain_reply(facts, ctx, "no-gate", NOTHING_TO_APPROVE)
        case d.AnswerHelp():
            await _plain_reply(
                facts, ctx, "help", help_text(ctx.runtime.config, ctx.runtime.bot_names)
            )
        case d.Start():
            await _launch(action, facts, ctx)
        case d.Resume(earlier, start):
            await _launch(start, facts, ctx, resumed_from=earlier.id)
        case d.Held(hold):
            thread = thread_of(event)
            await sessions.plain_reply(trigger_for(facts), hold.reply_key(thread.key), hold.text)
            log.info("%s in %s starts nothing: %s", _kind(event), thread.key, hold.kind)
        case d.Feed(session, body, comment_id, url, kind):
            await sessions.feed(
                session, kind=kind, author=login, body=body, comment_id=comment_id, url=url
            )
        case d.Reply(session, key, text):
            await sessions.reply(session, key, text)
        case d.RunCommand():
            await _run_command(action, login, ctx)
        case d.AnswerGate(session, approve, text, how, key, sha):
            await sessions.decide(
                session, approve=approve, by=login, text=text, sha=sha, how=how, key=key
            )
        case d.Amend(comment_id, body):
            if await sessions.amend(comment_id, body, login):
                log.info("queued input from comment %s amended", comment_id)
        case d.Withdraw(comment_id):
            if await sessions.withdraw(comment_id, login):
                log.info("queued input from comment %s withdrawn", comment_id)
        case _:
            assert_never(action)


async def _launch(
    start: d.Start, facts: d.Facts, ctx: Context, *, resumed_from: str | None = None
) -> None:
    event = facts.event
    trigger = replace(
        trigger_for(facts),
        task=start.task,
        agent_id=start.agent_id,
        comment_id=start.comment_id,
        url=start.url,
        agent=start.agent,
        options=session_options(start.policy),
        resumed_from=resumed_from,
    )
    result = await ctx.runtime.sessions.launch(trigger)
    with bind(session=result.session.id):
        log.info(
            "%s %s in %s by %s: session %s%s%s",
            _kind(event),
            event.action,
            _thread_key(event),
            event.actor.login,
            result.session.id,
            f" resuming {resumed_from}" if resumed_from else "",
            "" if result.created else " (already running)",
        )


async def _run_command(action: d.RunCommand, login: str, ctx: Context) -> None:
    sessions, session = ctx.runtime.sessions, action.session
    if action.name == "done":
        await sessions.close(session, USER_SIGNAL, by=login)
    elif action.name == "cancel":
        await sessions.close(session, CANCELLED, by=login)
    elif action.name == "status":
        await sessions.reply(session, action.key, status_line(session))
    else:
        await sessions.extend(session, float(action.argument), by=login)


def trigger_for(facts: d.Facts) -> Trigger:
    """Who asks, where, under which request id (the task is the decision's)."""
    event = facts.event
    return Trigger(
        client_request_id=facts.request_id,
        thread=thread_of(event),
        installation_id=event.installation_id,
        login=event.actor.login,
        task="",
    )


async def _plain_reply(facts: d.Facts, ctx: Context, what: str, text: str) -> None:
    trigger = trigger_for(facts)
    await ctx.runtime.sessions.plain_reply(trigger, f"{what}.{facts.request_id}", text)


def _thread(ask: d.Ask, event: Event) -> ThreadRef:
    return ask.thread or thread_of(event)


def thread_of(event: Event) -> ThreadRef:
    if isinstance(event, CommentEvent | ReviewEvent | IssueEvent):
        return event.thread
    raise TypeError(f"{type(event).__name__} has no thread")


def _thread_key(event: Event) -> str:
    return thread_of(event).key


def _kind(event: Event) -> str:
    return {CommentEvent: "comment", ReviewEvent: "review", IssueEvent: "issue"}.get(
        type(event), type(event).__name__
    )
