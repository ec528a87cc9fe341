"""The OpenAPI 3.1 document of /api/v1, built from the operations table below.

`install_api` (routes.py) registers exactly the routes listed in `OPERATIONS` and
refuses to start when a handler has no operation here or an operation has no
handler; tests/test_api.py walks the document over HTTP and checks every answer
against the schema it documents.
"""

from __future__ import annotations

from typing import Any

from bot import __version__
from bot.api.overrides import MAX_INSTRUCTIONS_CHARS
from bot.api.schema import DEFAULT_TASK_WAIT, MAX_GOAL_CHARS, MAX_TASK_CHARS, MAX_WAIT_SECONDS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}

NUMBER: Schema = {"type": "number"}
OVERRIDES: dict[str, Schema] = {
    "exitCriteria": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "timeLimit": {
                "type": "object",
                "properties": {"maxDurationMinutes": {"type": "number", "exclusiveMinimum": 0}},
            },
            "userSignals": {
                "type": "object",
                "properties": {"explicit": {"type": "array", "items": STRING}},
            },
        },
    },
    "listenToComments": {"type": "boolean"},
    "keepSessionOpenForComments": {"type": "boolean"},
    "agentIds": {"type": "array", "items": STRING, "description": "a coordinator's sub-agents"},
    "coordinatorModelKey": {"type": "string", "description": "the model of the agent"},
    "metadata": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"provider": {"type": "string", "description": "a configured provider"}},
    },
    "runtimeParams": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": STRING,
            "temperature": NUMBER,
            "maxTokens": INTEGER,
            "topP": NUMBER,
            "topK": INTEGER,
            "stopSequences": {"type": "array", "items": STRING},
            "providerSpecific": {"type": "object"},
        },
    },
    "additionalInstructions": {
        "type": "string",
        "maxLength": MAX_INSTRUCTIONS_CHARS,
        "description": "added to the agent's system prompt",
    },
}
OVERRIDES_NOTE = (
    " Per-session overrides (exitCriteria, listenToComments, keepSessionOpenForComments, "
    "agentIds, coordinatorModelKey, metadata.provider, runtimeParams, additionalInstructions) "
    "count only when the server's `sessions.apiOverrides` allows them (by default the first "
    "three); any other is refused with 403 override_not_allowed."
)

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {"code": STRING, "message": STRING},
            }
        },
    },
    "Thread": {
        "type": "object",
        "required": ["host", "repo", "kind", "number"],
        "properties": {
            "host": {"type": "string", "enum": ["github", "gitlab", "local"]},
            "repo": {"type": "string", "description": "OWNER/REPO (GitLab: the project path)"},
            "kind": {"type": "string", "enum": ["issue", "pull"]},
            "number": {"type": "integer", "minimum": 1},
            "reviewThread": nullable(STRING),
            "installationId": {
                "type": "integer",
                "description": "the GitHub App installation (requests only)",
            },
        },
    },
    "Session": {
        "type": "object",
        "required": [
            "id",
            "state",
            "agent",
            "task",
            "thread",
            "startedBy",
            "createdAt",
            "closedAt",
            "stopReason",
            "closedBy",
            "turns",
            "usage",
            "lastOutput",
            "parent",
        ],
        "properties": {
            "id": STRING,
            "state": {
                "type": "string",
                "enum": ["active", "busy", "idle", "awaiting_approval", "closed", "failed"],
            },
            "agent": STRING,
            "task": STRING,
            "thread": nullable(ref("Thread")),
            "startedBy": STRING,
            "createdAt": {"type": "string", "format": "date-time"},
            "closedAt": nullable({"type": "string", "format": "date-time"}),
            "stopReason": nullable(STRING),
            "closedBy": nullable(STRING),
            "turns": INTEGER,
            "usage": {
                "type": "object",
                "required": ["tokensIn", "tokensOut"],
                "properties": {"tokensIn": INTEGER, "tokensOut": INTEGER},
            },
            "lastOutput": nullable(STRING),
            "parent": nullable(STRING),
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "at", "kind", "data"],
        "properties": {
            "id": INTEGER,
            "at": {"type": "string", "format": "date-time"},
            "kind": STRING,
            "data": {"type": "object"},
        },
    },
    "LaunchRequest": {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "agent": STRING,
            "task": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_CHARS},
            "goal": {"type": "string", "maxLength": MAX_GOAL_CHARS},
            "clientRequestId": {
                "type": "string",
                "maxLength": 200,
                "description": "the same id and body again answer the same session (200); "
                "the same id with another body is refused (409)",
            },
            "thread": {
                **ref("Thread"),
                "description": "where the session works; without it the session is "
                "headless: its replies and status live only in its transcript",
            },
            **OVERRIDES,
        },
    },
    "TaskRequest": {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "description": "a LaunchRequest plus how long to wait for the one turn",
        "properties": {
            "agent": STRING,
            "task": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_CHARS},
            "goal": {"type": "string", "maxLength": MAX_GOAL_CHARS},
            "clientRequestId": {"type": "string", "maxLength": 200},
            "thread": ref("Thread"),
            **OVERRIDES,
            "wait": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_WAIT_SECONDS,
                "description": f"seconds (default {DEFAULT_TASK_WAIT:g}); a turn still "
                "running then is stopped and the session closed",
            },
        },
    },
    "TaskResult": {
        "type": "object",
        "required": ["finished", "output", "replies", "session", "events"],
        "properties": {
            "finished": {"type": "boolean"},
            "output": nullable(STRING),
            "replies": {"type": "array", "items": STRING},
            "session": ref("Session"),
            "events": {"type": "array", "items": ref("Event")},
        },
    },
    "CancelRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "wait": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_WAIT_SECONDS,
                "description": "answer once the turn has stopped (or after this long)",
            }
        },
    },
    "CancelResult": {
        "type": "object",
        "required": ["cancelling", "session"],
        "properties": {
            "cancelling": {
                "type": "boolean",
                "description": "a turn was in flight and is being stopped",
            },
            "session": ref("Session"),
        },
    },
    "ApproveRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "approve": {"type": "boolean", "description": "false: request changes"},
            "comment": {
                "type": "string",
                "maxLength": MAX_GOAL_CHARS,
                "description": "what to change (required with approve false)",
            },
        },
    },
    "Decision": {
        "type": "object",
        "required": ["gate", "session"],
        "properties": {
            "gate": {
                "type": "object",
                "required": ["id", "status", "subject"],
                "properties": {"id": INTEGER, "status": STRING, "subject": STRING},
            },
            "session": ref("Session"),
        },
    },
    "PromptRequest": {
        "type": "object",
        "required": ["input"],
        "additionalProperties": False,
        "properties": {
            "input": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_CHARS},
            "wait": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            "runtimeParams": {
                **OVERRIDES["runtimeParams"],
                "description": "for the turn that reads this input only, over the session's "
                "own; allowed when the server's `sessions.apiOverrides` names runtimeParams "
                "(else 403 override_not_allowed, and nothing is queued)",
            },
        },
    },
    "Queued": {
        "type": "object",
        "required": ["queued", "session"],
        "properties": {"queued": {"type": "boolean"}, "session": ref("Session")},
    },
    "TurnResult": {
        "type": "object",
        "required": ["queued", "finished", "session", "replies", "events"],
        "properties": {
            "queued": {"type": "boolean"},
            "finished": {"type": "boolean"},
            "session": ref("Session"),
            "replies": {"type": "array", "items": STRING},
            "events": {"type": "array", "items": ref("Event")},
        },
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions", "next"],
        "properties": {
            "sessions": {"type": "array", "items": ref("Session")},
            "next": nullable(STRING),
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["events", "next"],
        "properties": {
            "events": {"type": "array", "items": ref("Event")},
            "next": nullable(INTEGER),
        },
    },
    "AgentList": {
        "type": "object",
        "required": ["agents"],
        "properties": {
            "agents": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "engine", "description", "providers", "tools", "default"],
                    "properties": {
                        "id": STRING,
                        "engine": STRING,
                        "description": STRING,
                        "providers": {
                            "type": "array",
                            "items": STRING,
                            "description": "the provider an llm agent calls (empty for others)",
                        },
                        "tools": {"type": "array", "items": STRING},
                        "default": {"type": "boolean"},
                    },
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["state", "database", "sessions"],
        "properties": {
            "state": {"type": "string", "enum": ["ok", "failing"]},
            "database": {
                "type": "object",
                "required": ["state"],
                "properties": {"state": STRING},
            },
            "sessions": {
                "type": "object",
                "required": ["state"],
                "properties": {"state": STRING},
            },
        },
    },
}

ERROR_TEXT = {
    400: "malformed JSON",
    401: "no token, an unknown token or a revoked one",
    403: "the token lacks the scope, may not touch the repository, or asks for an override "
    "the server does not allow (override_not_allowed)",
    404: "no such session (or not one this token may see)",
    409: "a conflict: the clientRequestId was used with another body, the thread has a "
    "live session, the session is not live, nothing waits on an approval, or the "
    "repository is paused or past a daily spending limit (code `held`)",
    413: "a field or the body is too large",
    422: "a field is missing, of the wrong type or unknown; an unknown agent "
    "(unknown_agent); a thread its host does not have (unknown_thread)",
    502: "the host did not answer when the thread was checked",
    503: "this process runs no sessions, or the database is failing",
}


def _answer(schema: str, text: str) -> Schema:
    return {"description": text, "content": {"application/json": {"schema": ref(schema)}}}


def _operation(
    summary: str, ok: dict[int, tuple[str, str]], errors: tuple[int, ...], **extra: Any
) -> Schema:
    responses = {str(code): _answer(schema, text) for code, (schema, text) in ok.items()}
    for code in (401, *errors):
        responses[str(code)] = _answer("Error", ERROR_TEXT[code])
    return {"summary": summary, "responses": responses, **extra}


def _body(schema: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": STRING}


def _query(name: str, schema: Schema, text: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


# (method, path under /api/v1) -> operation
OPERATIONS: dict[tuple[str, str], Schema] = {
    ("POST", "/sessions"): _operation(
        "Launch a session in a thread, or headless (operator scope)",
        {201: ("Session", "launched"), 200: ("Session", "launched before with this id")},
        (400, 403, 409, 413, 422, 502, 503),
        requestBody=_body("LaunchRequest"),
        description="Idempotent by clientRequestId." + OVERRIDES_NOTE,
    ),
    ("POST", "/tasks"): _operation(
        "One-shot delegation: a session runs one turn on the task and is closed (operator scope)",
        {200: ("TaskResult", "the turn's result; the session is closed")},
        (400, 403, 409, 413, 422, 502, 503),
        requestBody=_body("TaskRequest"),
        description=OVERRIDES_NOTE.strip(),
    ),
    ("POST", "/sessions/{id}/cancel"): _operation(
        "Stop the turn in flight (operator scope): the model call and any running command "
        "are aborted in whichever process runs them, within about a second; the session "
        "stays and goes idle",
        {
            202: ("CancelResult", "asked; the turn is still stopping"),
            200: ("CancelResult", "stopped (with `wait`), or no turn was in flight"),
        },
        (400, 403, 404, 409, 422),
        parameters=[ID_PARAM],
        requestBody={
            "required": False,
            "content": {"application/json": {"schema": ref("CancelRequest")}},
        },
    ),
    ("POST", "/sessions/{id}/approve"): _operation(
        "Answer the session's open approval gate as a maintainer's reply would (operator "
        "scope): an approved change set is applied, and the session resumes",
        {200: ("Decision", "decided")},
        (400, 403, 404, 409, 422, 503),
        parameters=[ID_PARAM],
        requestBody={
            "required": False,
            "content": {"application/json": {"schema": ref("ApproveRequest")}},
        },
    ),
    ("GET", "/sessions"): _operation(
        "Sessions, newest first, within the token's repositories",
        {200: ("SessionList", "a page of sessions")},
        (422,),
        parameters=[
            _query("state", STRING, "live, active, busy, idle, closed, failed"),
            _query("repo", STRING, "OWNER/REPO"),
            _query("agent", STRING, "agent id"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
            _query("before", STRING, "the `next` of the previous page"),
        ],
    ),
    ("GET", "/sessions/{id}"): _operation(
        "One session: state, usage, stop reason, last output",
        {200: ("Session", "the session")},
        (404,),
        parameters=[ID_PARAM],
    ),
    ("DELETE", "/sessions/{id}"): _operation(
        "Close a session (operator scope)",
        {200: ("Session", "closed")},
        (403, 404, 409, 503),
        parameters=[ID_PARAM],
    ),
    ("POST", "/sessions/{id}/prompt"): _operation(
        "Give a live session input, recorded as operator input under the token's name, "
        "optionally with runtimeParams for the turn that reads it",
        {
            202: ("Queued", "queued for the next turn"),
            200: ("TurnResult", "with `wait`: the turn that read the input"),
        },
        (400, 403, 404, 409, 413, 422, 503),
        parameters=[ID_PARAM],
        requestBody=_body("PromptRequest"),
    ),
    ("GET", "/sessions/{id}/events"): _operation(
        "A page of the session's transcript, oldest first; with `Accept: text/event-stream`, "
        "server-sent events (`id:` the event id, `data:` the Event) until the session ends "
        "(`event: end`), resumed after `Last-Event-ID`",
        {200: ("EventPage", "events after `after`")},
        (404, 422),
        parameters=[
            ID_PARAM,
            _query("after", INTEGER, "the `next` of the previous page (0: from the start)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
        ],
    ),
    ("GET", "/agents"): _operation(
        "The configured agents", {200: ("AgentList", "the agents")}, (503,)
    ),
    ("GET", "/health"): _operation(
        "The database and the session runtime, each with its state",
        {200: ("Health", "all is well")},
        (503,),
    ),
}


SSE = {"schema": {"type": "string", "description": "text/event-stream: id and data lines"}}
OPERATIONS[("GET", "/sessions/{id}/events")]["responses"]["200"]["content"]["text/event-stream"] = (
    SSE
)


def document(prefix: str) -> Schema:
    """The OpenAPI 3.1 document, with every path under `prefix`."""
    paths: dict[str, dict[str, Schema]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(prefix + path, {})[method.lower()] = operation
    paths[prefix + "/openapi.json"] = {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _answer("Error", ERROR_TEXT[401]),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Threadline API",
            "version": __version__,
            "description": "Launch, steer, read and close agent sessions. Every error has "
            'one shape: {"error": {"code", "message"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
