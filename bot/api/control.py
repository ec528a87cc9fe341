"""The control plane's operations, free of any transport.

Each operation is an async function taking the API context (`Api`), the caller's
`Principal` and a typed request (bot/api/schema.py), and answering plain JSON-able
values or raising `ApiError`. The HTTP routes (routes.py) and the MCP server call
these and only these, so scope checks, repository limits, idempotency, the audit
trail and the transcript are the same whichever way a request comes in.

Names are stable: launch, prompt, status, list_sessions, events, close, cancel,
approve, delegate_task, agents, health.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.agents.base import AgentSpec
from bot.agents.llm import OPTIONS_KEY, LLMOptions
from bot.api import overrides
from bot.api.health import report as health_report
from bot.api.schema import (
    ApiError,
    ApproveRequest,
    CancelRequest,
    EventsRequest,
    LaunchRequest,
    ListRequest,
    PromptRequest,
    TaskRequest,
)
from bot.api.tokens import TokenStore
from bot.db.models import SessionRow
from bot.events import HEADLESS, ThreadRef
from bot.hosts.base import HostError, NoCredentials
from bot.runtime import Runtime
from bot.sessions.agents import session_options
from bot.sessions.limits import Hold
from bot.sessions.service import SessionService, Trigger
from bot.sessions.store import DONE, SessionInfo, SessionOptions, SessionStore
from bot.sessions.store import OPERATOR as CLOSED_BY_OPERATOR
from bot.web.auth import OPERATOR, VIEWER, Principal
from bot.web.queries import BadCursor, Reads
from bot.web.redact import redact

log = logging.getLogger(__name__)

TURN_END_KINDS = ("turn_finished", "failed", "closed")
WAIT_POLL_SECONDS = 0.05


@dataclass
class Api:
    """What the operations share: the runtime (None in a process without one), the
    database, its reads, the token store (and audit trail) and the session store."""

    runtime: Runtime | None
    engine: Engine
    reads: Reads
    tokens: TokenStore
    store: SessionStore
    hosts: tuple[str, ...] = ()  # the hosts this server is set up for (health reports them)

    @property
    def has_service(self) -> bool:
        return self.runtime is not None and self.runtime.has_sessions

    def service(self) -> SessionService:
        if self.runtime is None or not self.has_service:
            raise ApiError(503, "unavailable", "this process runs no sessions (no workers)")
        return self.runtime.sessions


@dataclass(frozen=True)
class Launched:
    """What `launch` answers: the session, and whether this call made it (False: the
    same clientRequestId launched it before)."""

    session: dict[str, Any]
    created: bool


# ------------------------------------------------------------------ helpers


def require(who: Principal, role: str) -> None:
    """Refuse a caller whose token lacks `role`."""
    if not who.at_least(role):
        raise ApiError(403, "forbidden", f"this needs a token with the {role} scope")


async def audit(api: Api, who: Principal, action: str, target: str | None) -> None:
    await asyncio.to_thread(api.tokens.audit, who.who, action, target)


def thread_json(session: SessionInfo) -> dict[str, Any] | None:
    """The session's thread; None for a headless session."""
    thread = session.thread
    if thread.host == HEADLESS:
        return None
    return {
        "host": thread.host,
        "repo": thread.repo,
        "kind": thread.target,
        "number": thread.number,
        "reviewThread": thread.thread_id,
    }


def session_json(session: SessionInfo) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "id": session.id,
        "state": session.state,
        "agent": session.agent_id,
        "task": session.task,
        "thread": thread_json(session),
        "startedBy": session.started_by,
        "createdAt": session.created_at.isoformat(),
        "closedAt": session.closed_at.isoformat() if session.closed_at else None,
        "stopReason": session.close_reason,
        "closedBy": session.closed_by,
        "turns": session.turns,
        "usage": {"tokensIn": session.tokens_in, "tokensOut": session.tokens_out},
        "lastOutput": session.output,
        "parent": session.parent_id,
    }


def event_json(row: Any) -> dict[str, Any]:
    """A transcript event as the API shows it (secrets redacted)."""
    return {**row.summary(), "data": redact(row.data)}


async def visible(api: Api, who: Principal, session_id: str) -> SessionInfo:
    """The session `session_id`, when `who` may see it (else 404, as if it did not exist)."""
    found = await asyncio.to_thread(api.store.get, session_id)
    if found is None or not who.may_touch(found.thread.repo):
        raise ApiError(404, "not_found", f"no session {session_id}")
    return found


def _by_request_id(engine: Engine, key: str) -> str | None:
    with Session(engine) as session:
        return session.execute(
            select(SessionRow.id).where(SessionRow.client_request_id == key)
        ).scalar_one_or_none()


def _same_launch(session: SessionInfo, task: str, agent_id: str, thread: ThreadRef) -> bool:
    """Whether a launch asked for what `session` is (a headless one: any headless thread)."""
    if (session.task, session.agent_id) != (task, agent_id):
        return False
    if thread.host == HEADLESS:
        return session.thread.host == HEADLESS
    return session.thread.key == thread.key


async def _replay(
    api: Api,
    session_id: str,
    task: str,
    agent_id: str,
    thread: ThreadRef,
    options: SessionOptions,
) -> Launched:
    found = await asyncio.to_thread(api.store.get, session_id)
    assert found is not None
    if not _same_launch(found, task, agent_id, thread) or found.options != options:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this clientRequestId launched a different session; use a new id",
        )
    return Launched(session_json(found), created=False)


async def _check_thread(service: SessionService, req: LaunchRequest) -> None:
    """Refuse a thread its host does not have: one request, which the host answers 404
    for a thread that does not exist ("get a pull request", "get an issue"; listing an
    issue's comments would page through all of them). The playground's issues are not
    checked (its host makes any issue it is asked about)."""
    thread = req.thread
    if thread.host == HEADLESS or service.host_client is None:
        return
    if thread.target == "issue" and thread.host == "local":
        return
    try:
        client = service.host_client(thread.host, req.installation_id)
        if thread.target == "pull":
            await client.pull_info(thread.conversation)
        else:
            await client.issue_details(thread.conversation)
    except NoCredentials:
        raise ApiError(
            422, "unknown_thread", f"Threadline has no credentials for {thread.host}"
        ) from None
    except HostError as exc:
        if exc.status == 404:
            raise ApiError(
                422, "unknown_thread", f"{thread.host} has no {thread.target} {thread.key}"
            ) from None
        raise ApiError(502, "host_error", f"{thread.host} did not answer: {exc}") from None


# ------------------------------------------------------------------ operations


async def launch(
    api: Api, who: Principal, req: LaunchRequest, *, one_turn: bool = False
) -> Launched:
    """Start a session (operator scope), idempotent by the request's clientRequestId.
    Per-session overrides must be allowed by the server's configuration; a thread-bound
    pull request must exist on its host. `one_turn`: for `delegate_task`."""
    require(who, OPERATOR)
    if not who.may_touch(req.thread.repo):
        raise ApiError(403, "forbidden", f"this token may not touch {req.thread.repo}")
    service = api.service()
    runtime = api.runtime
    assert runtime is not None
    if req.thread.host == HEADLESS:
        config = runtime.config  # no repository: the server's configuration as it is
    else:
        answer = await runtime.repo_config(req.thread.host, req.installation_id, req.thread.repo)
        config = answer.config
    try:
        agent = config.agent(req.agent)
    except KeyError:
        known = ", ".join(sorted(config.agents))
        raise ApiError(
            422, "unknown_agent", f"no agent {req.agent!r} in {req.thread.repo}; known: {known}"
        ) from None
    key = f"api:{who.who}:{req.client_request_id or uuid.uuid4().hex}"

    def looks() -> tuple[Hold | None, str | None]:
        # The hold and the idempotency key in one trip off the event loop.
        hold = service.holds.hold_for(req.thread.host, req.thread.repo)
        before = _by_request_id(api.engine, key) if req.client_request_id else None
        return hold, before

    hold, before = await asyncio.to_thread(looks)
    if hold is not None:  # paused, or past a daily spending limit: nothing starts
        raise ApiError(409, "held", hold.text)
    options = overrides.apply(
        req.overrides,
        session_options(config.sessions),
        agent,
        allowed=runtime.config.sessions.api_overrides,  # the server's file decides
        config=runtime.config,
    )
    if one_turn:  # a delegated task: one turn, then closed; no comments come in
        options = replace(options, keep_open_for_comments=False, listen_to_comments=False)
    task = req.full_task
    if before is not None:
        return await _replay(api, before, task, agent.id, req.thread, options)
    await _check_thread(service, req)
    trigger = Trigger(
        client_request_id=key,
        thread=req.thread,
        installation_id=req.installation_id,
        login=who.actor,  # an operator token counts as a maintainer: operator:<name>
        task=task,
        agent_id=agent.id,
        agent=agent,
        options=options,
    )
    result = await service.launch(trigger)
    if not result.created:
        mine = await asyncio.to_thread(_by_request_id, api.engine, key)
        if mine is not None:  # a concurrent launch with the same id won
            return await _replay(api, mine, task, agent.id, req.thread, options)
        raise ApiError(
            409,
            "thread_busy",
            f"{req.thread.key} has a live session already: {result.session.id}",
        )
    await audit(api, who, "launch", result.session.id)
    return Launched(session_json(result.session), created=True)


async def prompt(api: Api, who: Principal, session_id: str, req: PromptRequest) -> dict[str, Any]:
    """Queue input for a live session (operator scope). With `wait`, answer the turn that
    read it (`finished` says whether it ended within the wait). `runtimeParams` hold for
    that turn only, allowed as a launch's are; a refused one queues nothing."""
    require(who, OPERATOR)
    session = await visible(api, who, session_id)
    service = api.service()
    params = None
    if req.runtime_params is not None:
        params = _turn_params(api, service, session, req.runtime_params)
    mark = await asyncio.to_thread(api.reads.last_event_id, session.id)
    known = {item.id for item in await asyncio.to_thread(api.store.inputs, session.id)}
    queued = await service.feed(
        session, kind="operator", author=who.actor, body=req.input, params=params
    )
    if not queued:
        raise ApiError(409, "not_live", f"session {session.id} is {session.state}")
    await audit(api, who, "prompt", session.id)
    mine = [
        item.id
        for item in await asyncio.to_thread(api.store.inputs, session.id)
        if item.id not in known and item.author == who.actor
    ]
    if not req.wait or not mine:
        return {"queued": True, "session": session_json(session)}
    return await turn_result(api, session.id, mark, mine[0], req.wait)


def _turn_params(
    api: Api, service: SessionService, session: SessionInfo, params: dict[str, Any]
) -> dict[str, Any]:
    """A prompt's runtimeParams, checked against the server's allow-list and the
    session's agent (as for a launch)."""
    runtime = api.runtime
    assert runtime is not None
    try:
        agent = service.agent_for(session)
    except KeyError:
        raise ApiError(
            409, "not_live", f"session {session.id}: its agent is no longer configured"
        ) from None
    return overrides.turn_params(params, agent, allowed=runtime.config.sessions.api_overrides)


async def turn_result(
    api: Api, session_id: str, mark: int, input_id: int, wait: float
) -> dict[str, Any]:
    """The TurnResult of the turn that reads `input_id` (events after `mark`)."""
    events = await _turn_events(api, session_id, mark, input_id, wait)
    fresh = await asyncio.to_thread(api.store.get, session_id)
    assert fresh is not None
    return {
        "queued": True,
        "finished": any(e["kind"] in TURN_END_KINDS for e in events),
        "session": session_json(fresh),
        "replies": replies(events),
        "events": events,
    }


def replies(events: list[dict[str, Any]]) -> list[str]:
    """The bodies of the `reply` tool calls among `events`."""
    return [
        e["data"]["args"]["body"]
        for e in events
        if e["kind"] == "tool_call"
        and e["data"].get("tool") == "reply"
        and isinstance(e["data"].get("args"), dict)
        and isinstance(e["data"]["args"].get("body"), str)
    ]


async def _turn_events(
    api: Api, session_id: str, after: int, input_id: int, wait: float
) -> list[dict[str, Any]]:
    """The transcript of the turn that reads input `input_id`, from its start to its end
    (or what there is of it when `wait` seconds have passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    turn: list[dict[str, Any]] = []
    while True:
        for row in await asyncio.to_thread(api.reads.events_after, session_id, after):
            after = row.id
            event = event_json(row)
            if turn or (
                event["kind"] == "turn_started" and input_id in event["data"].get("inputs", ())
            ):
                turn.append(event)
            elif event["kind"] in ("closed", "failed"):
                return [event]  # the session ended before the input was read
            if turn and event["kind"] in TURN_END_KINDS:
                return turn
        if loop.time() >= deadline:
            return turn
        await asyncio.sleep(WAIT_POLL_SECONDS)


async def status(api: Api, who: Principal, session_id: str) -> dict[str, Any]:
    """One session: state, usage, stop reason, last output (viewer scope)."""
    require(who, VIEWER)
    return session_json(await visible(api, who, session_id))


async def list_sessions(api: Api, who: Principal, req: ListRequest) -> dict[str, Any]:
    """Sessions, newest first, within the caller's repositories (viewer scope)."""
    require(who, VIEWER)
    try:
        page = await asyncio.to_thread(
            api.reads.sessions,
            state=req.state,
            repo=req.repo,
            agent=req.agent,
            before=req.before,
            limit=req.limit,
            repos=who.repos,
        )
    except BadCursor:
        raise ApiError(422, "invalid", "before is not a cursor this API gave") from None
    sessions = []
    for line in page.rows:
        found = await asyncio.to_thread(api.store.get, line.id)
        if found is not None:
            sessions.append(session_json(found))
    return {"sessions": sessions, "next": page.older}


async def events(api: Api, who: Principal, session_id: str, req: EventsRequest) -> dict[str, Any]:
    """A page of the session's transcript after `req.after`, oldest first (viewer scope)."""
    require(who, VIEWER)
    session = await visible(api, who, session_id)
    page = await asyncio.to_thread(api.reads.events, session.id, after=req.after, limit=req.limit)
    listed = [event_json(row) for row in page.events]
    return {"events": listed, "next": listed[-1]["id"] if page.has_after and listed else None}


async def close(api: Api, who: Principal, session_id: str) -> dict[str, Any]:
    """Close a live session (operator scope)."""
    require(who, OPERATOR)
    session = await visible(api, who, session_id)
    closed = await close_as(api, session, who)
    if closed is None:
        raise ApiError(409, "not_live", f"session {session.id} is {session.state} already")
    return session_json(closed)


async def close_as(api: Api, session: SessionInfo, who: Principal) -> SessionInfo | None:
    """Close `session` for `who` through the session service (its delegations and its
    workspace close too), recorded in the audit trail; None if it was not live. The
    inspector's close (pages and /api/sessions/{id}/close) comes here as well."""
    closed = await api.service().close(session, CLOSED_BY_OPERATOR, by=who.actor)
    if closed is not None:
        await audit(api, who, "close", session.id)
    return closed


async def agents(api: Api, who: Principal) -> dict[str, Any]:
    """The configured agents (viewer scope)."""
    require(who, VIEWER)
    runtime = api.runtime
    if runtime is None:
        raise ApiError(503, "unavailable", "no configuration in this process")
    config = runtime.config
    listed = [
        {
            "id": agent.id,
            "engine": agent.engine,
            "description": agent.description,
            "providers": providers_of(agent),
            "tools": list(agent.tools),
            "default": agent.id == config.default_agent,
        }
        for agent in config.agents.values()
    ]
    return {"agents": listed}


def providers_of(agent: AgentSpec) -> list[str]:
    """The provider an llm agent calls; none for an agent of another engine."""
    options = agent.options.get(OPTIONS_KEY)
    return [options.provider.id] if isinstance(options, LLMOptions) else []


async def health(api: Api, who: Principal) -> dict[str, Any]:
    """The database, the session runtime, each host and each provider, each with its
    state (viewer scope; see bot/api/health.py for what each state means)."""
    require(who, VIEWER)
    config = api.runtime.config if api.runtime is not None else None
    providers = config.providers if config is not None else {}
    return await health_report(
        api.engine, has_sessions=api.has_service, hosts=api.hosts, providers=providers
    )


# ------------------------------------------------------------------ turns and gates


async def cancel(api: Api, who: Principal, session_id: str, req: CancelRequest) -> dict[str, Any]:
    """Stop the session's turn in flight (operator scope), in whichever process runs it:
    the request goes into the database and that process's runner sees it within a
    second, aborts the model call and any running command, and leaves the session idle.
    `cancelling` is False when no turn was in flight. With `wait`, answer once the turn
    has stopped (or the wait is over)."""
    require(who, OPERATOR)
    session = await visible(api, who, session_id)
    answer = await asyncio.to_thread(api.store.request_cancel, session.id, by=who.actor, how="api")
    if answer == "missing":
        raise ApiError(404, "not_found", f"no session {session_id}")
    if answer == "not_live":
        raise ApiError(409, "not_live", f"session {session.id} is {session.state}")
    cancelling = answer in ("requested", "pending")
    if answer == "requested":
        await audit(api, who, "cancel", session.id)
    fresh = session
    if cancelling and req.wait:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.wait
        while True:
            found = await asyncio.to_thread(api.store.get, session.id)
            assert found is not None
            fresh = found
            if fresh.state != "busy" or loop.time() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_SECONDS * 2)
    else:
        found = await asyncio.to_thread(api.store.get, session.id)
        fresh = found or session
    return {"cancelling": cancelling, "session": session_json(fresh)}


async def approve(api: Api, who: Principal, session_id: str, req: ApproveRequest) -> dict[str, Any]:
    """Answer the session's open gate (operator scope) through the same path as a
    maintainer's `/approve` or `/request-changes` reply: an approved change set is
    applied, and the session resumes with the outcome as its input."""
    require(who, OPERATOR)
    session = await visible(api, who, session_id)
    service = api.service()
    if not session.live:
        raise ApiError(409, "not_live", f"session {session.id} is {session.state}")
    gate = await asyncio.to_thread(service.approvals.waiting_gate, session.id)
    if gate is None:
        raise ApiError(409, "nothing_to_approve", f"session {session.id} waits on no approval")
    decided = await service.decide(
        session,
        approve=req.approve,
        by=who.actor,
        text=req.text,
        how="api",
        key=f"api-decision.{gate.id}",
    )
    if decided is None:
        raise ApiError(
            409,
            "not_decided",
            f"gate #{gate.id} of session {session.id} was not decided: it went stale, was "
            "answered meanwhile, or this token started the run (see the transcript)",
        )
    await audit(api, who, "approve" if req.approve else "request_changes", session.id)
    fresh = await asyncio.to_thread(api.store.get, session.id)
    assert fresh is not None
    return {
        "gate": {"id": decided.id, "status": decided.status, "subject": decided.subject},
        "session": session_json(fresh),
    }


async def delegate_task(api: Api, who: Principal, req: TaskRequest) -> dict[str, Any]:
    """One-shot delegation (operator scope): a session that runs one turn on the task and
    is closed; answers its result. When the turn has not ended within `wait` seconds it
    is stopped and the session closed (`finished` False)."""
    launched = await launch(api, who, req.launch, one_turn=True)
    sid = str(launched.session["id"])
    inputs = await asyncio.to_thread(api.store.inputs, sid)
    first = min((item.id for item in inputs), default=0)
    events = await _turn_events(api, sid, 0, first, req.wait)
    finished = any(e["kind"] in TURN_END_KINDS for e in events)
    session = await asyncio.to_thread(api.store.get, sid)
    assert session is not None
    if session.live:
        if not finished:
            await asyncio.to_thread(api.store.request_cancel, sid, by=who.actor, how="task")
        closed = await api.service().close(session, DONE, by=who.actor)
        session = closed or session
    if launched.created:
        await audit(api, who, "task", sid)
    return {
        "finished": finished,
        "output": session.output,
        "replies": replies(events),
        "session": session_json(session),
        "events": events,
    }
