"""The MCP server's tools: each one a thin mapping onto an operation of bot/api/control.py.

A tool's arguments are turned into the same typed request the HTTP API builds (through
the same checks in bot/api/schema.py) and handed, with the caller's `Principal`, to the
same operation; so scopes, repository limits, idempotency by clientRequestId, the audit
trail and the transcript are the API's, whichever way a request came in. An operation's
`ApiError` becomes a tool error carrying the API's one error shape.

`pm_session` bundles launch, status, send and close under one `action`, as orchestrators
that drive sessions through a single tool expect; the `sessions_*`, `tasks_delegate`,
`agents_discover` and `bridge_health` tools are the bridge's vocabulary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from bot.api import control
from bot.api.control import Api
from bot.api.overrides import OVERRIDE_FIELDS
from bot.api.schema import (
    MAX_WAIT_SECONDS,
    ApiError,
    approve_request,
    cancel_request,
    events_request,
    invalid,
    launch_request,
    list_request,
    prompt_request,
    task_request,
)
from bot.sessions.search import MAX_SEARCH, SessionDirectory
from bot.web.auth import VIEWER, Principal

# How long sessions_prompt and pm_session's send wait for the turn by default: the
# bridge's prompt answers the turn's text, so it waits unless told not to.
DEFAULT_WAIT_SECONDS = 60.0
PM_ACTIONS = ("launch_task", "status", "send", "close")

_TEXT: dict[str, Any] = {"type": "string"}
_SID: dict[str, Any] = {"type": "string", "description": "the session's id (s-...)"}
_WAIT: dict[str, Any] = {
    "type": "number",
    "minimum": 0,
    "maximum": MAX_WAIT_SECONDS,
    "description": "seconds to wait for the turn's result (0: just queue the input)",
}
_THREAD: dict[str, Any] = {
    "type": "object",
    "description": "the host thread to bind the session to; leave out for a headless session",
    "properties": {
        "host": {"type": "string", "enum": ["github", "gitlab", "local"]},
        "repo": {"type": "string", "description": "OWNER/REPO"},
        "kind": {"type": "string", "enum": ["issue", "pull"]},
        "number": {"type": "integer", "minimum": 1},
        "reviewThread": _TEXT,
        "installationId": {"type": "integer"},
    },
    "required": ["host", "repo", "number"],
}


_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": _TEXT,
        "temperature": {"type": "number"},
        "maxTokens": {"type": "integer"},
        "topP": {"type": "number"},
        "topK": {"type": "integer"},
        "stopSequences": {"type": "array", "items": _TEXT},
        "providerSpecific": {"type": "object"},
    },
}
_TURN_PARAMS: dict[str, Any] = {
    **_PARAMS,
    "description": "runtimeParams (model, temperature, maxTokens, ...) for the turn that "
    "reads this input only, when the server's sessions.apiOverrides allows runtimeParams",
}


def _object(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required)}


_OVERRIDES: dict[str, Any] = {
    "additionalInstructions": {"type": "string", "description": "more instructions for this run"},
    "metadata": {
        "type": "object",
        "description": "metadata.provider picks one of the agent's providers for the session",
        "properties": {"provider": _TEXT},
    },
    "runtimeParams": {
        **_PARAMS,
        "description": "model, temperature, maxTokens, topP, topK, stopSequences, "
        "providerSpecific: the session's defaults",
    },
    "exitCriteria": {"type": "object"},
    "listenToComments": {"type": "boolean"},
    "keepSessionOpenForComments": {"type": "boolean"},
    "agentIds": {"type": "array", "items": _TEXT},
    "coordinatorModelKey": _TEXT,
}
_LAUNCH = {
    **_OVERRIDES,
    "task": {"type": "string", "description": "what the agent is to do"},
    "goal": {"type": "string", "description": "the outcome that ends the work"},
    "clientRequestId": {
        "type": "string",
        "description": "makes the launch idempotent: the same id and arguments answer the "
        "same session; the same id with other arguments is refused",
    },
    "thread": _THREAD,
}

TOOLS: Mapping[str, tuple[str, dict[str, Any]]] = MappingProxyType(
    {
        "pm_session": (
            "Drive one agent session. action launch_task starts one (agentHandle, task, "
            "optional goal, additionalInstructions, thread, clientRequestId for safe retries); "
            "status reads it; send gives it input (message, optional wait, optional "
            "runtimeParams for that turn); close ends it.",
            _object(
                {
                    "action": {"type": "string", "enum": list(PM_ACTIONS)},
                    "agentHandle": {"type": "string", "description": "the agent's id"},
                    **_LAUNCH,
                    "sessionId": _SID,
                    "message": _TEXT,
                    "wait": _WAIT,
                },
                ("action",),
            ),
        ),
        "sessions_create": (
            "Start a session of an agent on a task; answers its sessionId and state.",
            _object({"agentId": _TEXT, **_LAUNCH}, ("task",)),
        ),
        "sessions_prompt": (
            "Give a live session input and (unless wait is 0) answer the turn's result: its "
            "text, whether it finished, the session's state and usage.",
            _object(
                {"sessionId": _SID, "prompt": _TEXT, "wait": _WAIT, "runtimeParams": _TURN_PARAMS},
                ("sessionId", "prompt"),
            ),
        ),
        "sessions_status": (
            "A session's state (active, busy, idle, awaiting_approval, failed, closed), "
            "usage, stop reason and last output.",
            _object({"sessionId": _SID}, ("sessionId",)),
        ),
        "sessions_close": (
            "Close a live session.",
            _object({"sessionId": _SID}, ("sessionId",)),
        ),
        "sessions_cancel": (
            "Stop the turn a session is running (the model call is aborted, a running "
            "command stopped); the session stays and goes idle. With wait, answer once "
            "the turn has stopped.",
            _object({"sessionId": _SID, "wait": _WAIT}, ("sessionId",)),
        ),
        "sessions_approve": (
            "Answer a session's open approval gate: approve (default) applies its proposed "
            "change; approve false with a comment sends it back with what to change.",
            _object(
                {"sessionId": _SID, "approve": {"type": "boolean"}, "comment": _TEXT},
                ("sessionId",),
            ),
        ),
        "tasks_delegate": (
            "One-shot: start a session of an agent, run one turn on the prompt, close it, "
            "and answer the result (a turn still running after wait is stopped).",
            _object(
                {"agentId": _TEXT, "prompt": _TEXT, "wait": _WAIT, "thread": _THREAD, **_OVERRIDES},
                ("prompt",),
            ),
        ),
        "agents_discover": (
            "The configured agents: id, engine, description, provider(s), tools, and which is the "
            "default.",
            _object({}),
        ),
        "bridge_health": (
            "Whether the database and the session runtime answer.",
            _object({}),
        ),
        "sessions_list": (
            "Sessions this token may see, newest first; filters by state, repo and agent; "
            "`before` is the `next` cursor of the previous page.",
            _object(
                {
                    "state": _TEXT,
                    "repo": _TEXT,
                    "agent": _TEXT,
                    "before": _TEXT,
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                }
            ),
        ),
        "sessions_history": (
            "A page of a session's transcript, oldest first, after event id `after`.",
            _object(
                {
                    "sessionId": _SID,
                    "after": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                ("sessionId",),
            ),
        ),
        "sessions_search": (
            "Full-text search over the transcripts of the sessions this token may see: words "
            'must all appear, "a phrase" as written, `or` between alternatives, -word excluded.',
            _object(
                {"query": _TEXT, "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH}},
                ("query",),
            ),
        ),
    }
)

Handler = Callable[[Api, Principal, Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _text(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{name} is required (a non-empty string)")
    return value


def _launch_body(args: Mapping[str, Any], agent_key: str) -> dict[str, Any]:
    """The POST /sessions body these arguments stand for."""
    fields = ("task", "goal", "clientRequestId", "thread", *OVERRIDE_FIELDS)
    body: dict[str, Any] = {key: args[key] for key in fields if key in args}
    if args.get(agent_key) is not None:
        body["agent"] = args[agent_key]
    return body


async def _launch(api: Api, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    launched = await control.launch(api, who, launch_request(body))
    return {**launched.session, "sessionId": launched.session["id"], "created": launched.created}


def _wait(args: Mapping[str, Any]) -> Any:
    return args.get("wait", DEFAULT_WAIT_SECONDS)


async def _prompt(
    api: Api, who: Principal, sid: str, text: Any, args: Mapping[str, Any]
) -> dict[str, Any]:
    body = {"input": text, "wait": _wait(args)}
    if args.get("runtimeParams") is not None:
        body["runtimeParams"] = args["runtimeParams"]
    answer = await control.prompt(api, who, sid, prompt_request(body))
    replies = answer.get("replies", [])
    session = answer["session"]
    return {
        "sessionId": sid,
        "text": "\n\n".join(replies) if replies else (session.get("lastOutput") or ""),
        "stopReason": session.get("stopReason"),
        "usage": session.get("usage"),
        **answer,
    }


async def pm_session(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    action = args.get("action")
    if action == "launch_task":
        return await _launch(api, who, _launch_body(args, "agentHandle"))
    if action == "status":
        return await control.status(api, who, _text(args, "sessionId"))
    if action == "send":
        return await _prompt(api, who, _text(args, "sessionId"), args.get("message"), args)
    if action == "close":
        return await _close(api, who, _text(args, "sessionId"))
    raise invalid(f"action must be one of {', '.join(PM_ACTIONS)}")


async def _close(api: Api, who: Principal, sid: str) -> dict[str, Any]:
    return {"closed": True, "sessionId": sid, "session": await control.close(api, who, sid)}


async def sessions_create(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await _launch(api, who, _launch_body(args, "agentId"))


async def sessions_prompt(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await _prompt(api, who, _text(args, "sessionId"), args.get("prompt"), args)


async def sessions_status(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    answer = await control.status(api, who, _text(args, "sessionId"))
    return {"sessionId": answer["id"], "status": answer["state"], **answer}


async def sessions_close(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await _close(api, who, _text(args, "sessionId"))


async def sessions_cancel(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    sid = _text(args, "sessionId")
    req = cancel_request({"wait": args["wait"]} if "wait" in args else None)
    return {"sessionId": sid, **await control.cancel(api, who, sid, req)}


async def sessions_approve(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    sid = _text(args, "sessionId")
    body = {key: args[key] for key in ("approve", "comment") if key in args}
    return {"sessionId": sid, **await control.approve(api, who, sid, approve_request(body))}


async def tasks_delegate(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    body = _launch_body({**args, "task": args.get("prompt")}, "agentId")
    if "wait" in args:
        body["wait"] = args["wait"]
    answer = await control.delegate_task(api, who, task_request(body))
    session = answer["session"]
    replies = answer.get("replies", [])
    return {
        "sessionId": session["id"],
        "text": answer.get("output") or "\n\n".join(replies),
        "stopReason": session.get("stopReason"),
        "usage": session.get("usage"),
        **answer,
    }


async def agents_discover(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await control.agents(api, who)


async def bridge_health(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await control.health(api, who)


async def sessions_list(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    return await control.list_sessions(api, who, list_request(args))


async def sessions_history(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    sid = _text(args, "sessionId")
    return await control.events(api, who, sid, events_request(args))


async def sessions_search(api: Api, who: Principal, args: Mapping[str, Any]) -> dict[str, Any]:
    """Search within the repositories the token may see (the token's access policy)."""
    control.require(who, VIEWER)
    query = _text(args, "query")
    limit = args.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SEARCH:
        raise invalid(f"limit must be an integer from 1 to {MAX_SEARCH}")
    directory = SessionDirectory(api.engine)
    hits = await asyncio.to_thread(directory.search, "", None, query, limit=limit, repos=who.repos)
    return {"hits": hits}


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "pm_session": pm_session,
        "sessions_create": sessions_create,
        "sessions_prompt": sessions_prompt,
        "sessions_status": sessions_status,
        "sessions_close": sessions_close,
        "sessions_cancel": sessions_cancel,
        "sessions_approve": sessions_approve,
        "tasks_delegate": tasks_delegate,
        "agents_discover": agents_discover,
        "bridge_health": bridge_health,
        "sessions_list": sessions_list,
        "sessions_history": sessions_history,
        "sessions_search": sessions_search,
    }
)
if set(HANDLERS) != set(TOOLS):
    raise RuntimeError("the MCP tools and their handlers differ")


async def call(api: Api, who: Principal, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Run tool `name`; ApiError says why not (an unknown tool is one too)."""
    handler = HANDLERS.get(name)
    if handler is None:
        raise ApiError(404, "unknown_tool", f"no tool {name!r}")
    return await handler(api, who, args)
