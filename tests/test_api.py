"""/api/v1 over real HTTP: tokens (bootstrap and the database's), launch through the
session service (idempotent by clientRequestId), prompt with wait, reads filtered by a
token's repositories, close, agents, health, the one error shape, and the CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.api.tokens import TokenStore
from bot.cli import main
from bot.config import Settings
from bot.db.models import OutboxItem, SessionRow
from bot.hosts.local_seed import DEMO_PULL, DEMO_REPO
from tests.conftest import Running, run_app, with_settings
from tests.fakes.github import FakeGitHub

BOOTSTRAP = "bootstrap-operator-token-for-the-api-tests"
V1 = "/api/v1"
THREAD = {"host": "local", "repo": DEMO_REPO, "kind": "pull", "number": DEMO_PULL}
OTHER = {"host": "github", "repo": "octo/other", "kind": "issue", "number": 3, "installationId": 9}


@dataclass
class Api:
    app: Running
    tokens: TokenStore

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.app.http.request(
            method, self.app.url + V1 + path, data=data, headers=headers
        ) as response:
            return response.status, await response.json()

    def sessions(self) -> int:
        with Session(self.app.engine) as session:
            return int(session.execute(select(func.count()).select_from(SessionRow)).scalar_one())


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    """A second host with a second repository (installation 9): issue 3, pull 4."""
    async with FakeGitHub() as fake:
        fake.install(9, ["octo/other"])
        fake.add_issue("octo/other", 3)
        fake.add_pull("octo/other", 4, head_sha="c" * 40, base_sha="d" * 40)
        yield fake


def api_settings(settings: Settings, gh: FakeGitHub, **more: object) -> Settings:
    return with_settings(
        settings,
        playground=True,
        operator_token=BOOTSTRAP,
        outbox_min_interval_seconds=0.0,
        outbox_retry_seconds=0.05,
        github_app_id=gh.app_id,
        github_private_key=gh.private_key_pem,
        github_api_url=gh.url,
        github_graphql_url=gh.graphql_url,
        github_redelivery_minutes=0.0,
        host_timeout_seconds=2.0,
        **more,
    )


@pytest.fixture
async def api(settings: Settings, gh: FakeGitHub) -> AsyncIterator[Api]:
    async with run_app(api_settings(settings, gh)) as app:
        yield Api(app, TokenStore(app.engine))


def assert_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_launch_twice_with_one_client_request_id_makes_one_session(api: Api) -> None:
    token, _ = api.tokens.create("ci", "operator")
    body = {"task": "look at the retries", "clientRequestId": "build-17", "thread": THREAD}
    status, first = await api.call("POST", "/sessions", token, body)
    assert status == 201, first
    assert first["startedBy"] == "operator:ci"
    assert first["agent"] == "echo"
    assert first["thread"] == {**THREAD, "reviewThread": None}
    status, again = await api.call("POST", "/sessions", token, body)
    assert status == 200, again
    assert again["id"] == first["id"]
    assert api.sessions() == 1

    status, other = await api.call("POST", "/sessions", token, {**body, "task": "something else"})
    assert_error(status, other, 409, "idempotency_conflict")
    assert api.sessions() == 1
    [line] = api.tokens.audit_lines()
    assert (line.token, line.action, line.target) == ("ci", "launch", first["id"])


async def test_a_second_launch_in_a_busy_thread_is_refused(api: Api) -> None:
    status, first = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "a", "thread": THREAD})
    assert status == 201, first
    status, second = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "b", "thread": THREAD})
    assert_error(status, second, 409, "thread_busy")
    assert first["id"] in second["error"]["message"]


async def test_prompt_with_wait_answers_the_turns_result(api: Api) -> None:
    token, _ = api.tokens.create("ci", "operator")
    status, launched = await api.call(
        "POST", "/sessions", token, {"task": "restate this", "thread": THREAD}
    )
    assert status == 201
    sid = launched["id"]
    status, done = await api.call("POST", f"/sessions/{sid}/prompt", token, {"input": "and more"})
    assert status == 202, done
    status, answer = await api.call(
        "POST", f"/sessions/{sid}/prompt", token, {"input": "what now?", "wait": 20}
    )
    assert status == 200, answer
    assert answer["finished"] is True
    kinds = [event["kind"] for event in answer["events"]]
    assert "turn_finished" in kinds
    assert answer["session"]["state"] == "idle"
    assert any("what now?" in reply for reply in answer["replies"]), answer["replies"]
    status, events = await api.call("GET", f"/sessions/{sid}/events?limit=1000", token)
    assert status == 200
    inputs = [e["data"] for e in events["events"] if e["kind"] == "input"]
    assert [(d["kind"], d["author"], d["body"]) for d in inputs] == [
        ("operator", "operator:ci", "and more"),
        ("operator", "operator:ci", "what now?"),
    ]
    status, shown = await api.call("GET", f"/sessions/{sid}", token)
    assert status == 200
    # The inputs may arrive before the launch's first turn starts, which then reads them
    # all: one turn or more, and the answer above is the turn that read "what now?".
    assert shown["turns"] >= 1
    actions = [(a.token, a.action, a.target) for a in api.tokens.audit_lines()]
    assert actions == [("ci", "prompt", sid), ("ci", "prompt", sid), ("ci", "launch", sid)]


async def test_viewer_cannot_launch_prompt_or_close(api: Api) -> None:
    viewer, _ = api.tokens.create("watcher", "viewer")
    status, body = await api.call("POST", "/sessions", viewer, {"task": "x", "thread": THREAD})
    assert_error(status, body, 403, "forbidden")
    assert api.sessions() == 0
    status, launched = await api.call(
        "POST", "/sessions", BOOTSTRAP, {"task": "x", "thread": THREAD}
    )
    sid = launched["id"]
    status, body = await api.call("POST", f"/sessions/{sid}/prompt", viewer, {"input": "hi"})
    assert_error(status, body, 403, "forbidden")
    status, body = await api.call("DELETE", f"/sessions/{sid}", viewer)
    assert_error(status, body, 403, "forbidden")
    status, body = await api.call("GET", f"/sessions/{sid}", viewer)
    assert status == 200
    assert body["id"] == sid


async def test_a_token_limited_to_one_repository_sees_nothing_of_another(api: Api) -> None:
    limited, _ = api.tokens.create("demo-only", "operator", [DEMO_REPO])
    status, mine = await api.call("POST", "/sessions", limited, {"task": "x", "thread": THREAD})
    assert status == 201
    status, theirs = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "y", "thread": OTHER})
    assert status == 201, theirs
    status, body = await api.call("POST", "/sessions", limited, {"task": "z", "thread": OTHER})
    assert_error(status, body, 403, "forbidden")
    for method, path, payload in [
        ("GET", f"/sessions/{theirs['id']}", None),
        ("GET", f"/sessions/{theirs['id']}/events", None),
        ("POST", f"/sessions/{theirs['id']}/prompt", {"input": "hi"}),
        ("DELETE", f"/sessions/{theirs['id']}", None),
    ]:
        status, body = await api.call(method, path, limited, payload)
        assert_error(status, body, 404, "not_found")
    status, listed = await api.call("GET", "/sessions", limited)
    assert [s["id"] for s in listed["sessions"]] == [mine["id"]]
    status, everything = await api.call("GET", "/sessions", BOOTSTRAP)
    assert {s["id"] for s in everything["sessions"]} == {mine["id"], theirs["id"]}
    # The inspector's routes do not filter by repository: a limited token stays out.
    async with api.app.http.get(
        api.app.url + "/api/sessions", headers={"Authorization": f"Bearer {limited}"}
    ) as response:
        assert response.status == 403


async def test_a_revoked_token_gets_401(api: Api) -> None:
    token, _ = api.tokens.create("old", "operator")
    status, _body = await api.call("GET", "/agents", token)
    assert status == 200
    api.tokens.revoke("old")
    status, body = await api.call("GET", "/agents", token)
    assert_error(status, body, 401, "unauthorized")
    status, body = await api.call("GET", "/agents", None)
    assert_error(status, body, 401, "unauthorized")
    status, body = await api.call("GET", "/agents", "tl_not-a-token")
    assert_error(status, body, 401, "unauthorized")


async def test_the_inspector_accepts_database_tokens(api: Api) -> None:
    token, _ = api.tokens.create("looker", "viewer")
    async with api.app.http.get(
        api.app.url + "/api/sessions", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
    api.tokens.revoke("looker")
    async with api.app.http.get(
        api.app.url + "/api/sessions", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 401


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "bad_json"),
        (b"[1, 2]", 422, "invalid"),
        (json.dumps({"task": 5, "thread": THREAD}).encode(), 422, "invalid"),
        (json.dumps({"task": "", "thread": THREAD}).encode(), 422, "invalid"),
        (json.dumps({"task": "x", "thread": {**THREAD, "number": "1"}}).encode(), 422, "invalid"),
        (json.dumps({"task": "x", "thread": {**THREAD, "host": "x"}}).encode(), 422, "invalid"),
        (json.dumps({"task": "x", "thread": THREAD, "colour": 1}).encode(), 422, "invalid"),
        (
            json.dumps({"task": "x", "thread": THREAD, "agent": "nobody"}).encode(),
            422,
            "unknown_agent",
        ),
        (json.dumps({"task": "x" * 70000, "thread": THREAD}).encode(), 413, "too_large"),
        (
            json.dumps({"task": "x", "thread": {**OTHER, "installationId": None}}).encode(),
            422,
            "invalid",
        ),
    ],
)
async def test_bad_launches_get_one_error_shape_and_create_nothing(
    api: Api, raw: bytes, status: int, code: str
) -> None:
    got, body = await api.call("POST", "/sessions", BOOTSTRAP, raw=raw)
    assert_error(got, body, status, code)
    assert api.sessions() == 0
    assert api.tokens.audit_lines() == []


async def test_close_agents_health_and_unknown_routes(api: Api) -> None:
    status, launched = await api.call(
        "POST", "/sessions", BOOTSTRAP, {"task": "x", "thread": THREAD}
    )
    sid = launched["id"]
    status, closed = await api.call("DELETE", f"/sessions/{sid}", BOOTSTRAP)
    assert status == 200
    assert closed["state"] == "closed"
    assert closed["stopReason"] == "operator"
    assert closed["closedBy"] == "operator:operator"
    status, body = await api.call("DELETE", f"/sessions/{sid}", BOOTSTRAP)
    assert_error(status, body, 409, "not_live")
    status, body = await api.call("POST", f"/sessions/{sid}/prompt", BOOTSTRAP, {"input": "x"})
    assert_error(status, body, 409, "not_live")
    status, body = await api.call("GET", "/sessions/s-00000000", BOOTSTRAP)
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("GET", "/nothing-here", BOOTSTRAP)
    assert_error(status, body, 404, "not_found")
    status, agents = await api.call("GET", "/agents", BOOTSTRAP)
    assert status == 200
    assert [a["id"] for a in agents["agents"]] == ["echo"]
    status, health = await api.call("GET", "/health", BOOTSTRAP)
    assert status == 200
    assert health["database"]["state"] == "ok"
    assert health["sessions"]["state"] == "ok"


def test_tokens_and_audit_from_the_command_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["tokens", "create", "ci", "--scope", "operator", "--repo", "octo/a"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("tl_")
    assert "shown only now" in out.err
    assert main(["tokens", "create", "ci", "--scope", "viewer"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["tokens", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["scope"], listed["repos"]) == ("ci", "operator", ["octo/a"])
    assert token not in json.dumps(listed)
    assert main(["tokens", "revoke", "ci"]) == 0
    assert main(["tokens", "revoke", "nobody"]) == 1
    capsys.readouterr()
    assert main(["tokens", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["audit"]) == 0
    assert "no API actions recorded" in capsys.readouterr().out


# ------------------------------------------------------------------ the OpenAPI document


def check(schema: dict[str, Any], value: Any, doc: dict[str, Any], where: str = "$") -> None:
    """Assert `value` fits `schema` (the JSON Schema subset the document uses)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        check(doc["components"]["schemas"][name], value, doc, where)
        return
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                check(option, value, doc, where)
                return
            except AssertionError as exc:
                problems.append(str(exc))
        raise AssertionError(f"{where}: fits no option: {problems}")
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "null": type(None),
    }
    wanted = schema.get("type")
    if wanted is not None:
        assert isinstance(value, kinds[wanted]), f"{where}: {value!r} is not {wanted}"
        if wanted in ("integer", "number"):
            assert not isinstance(value, bool), f"{where}: a boolean is not {wanted}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            assert name in value, f"{where}: {name} missing"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), f"{where}: extra {set(value) - set(properties)}"
        for name, sub in properties.items():
            if name in value:
                check(sub, value[name], doc, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, doc, f"{where}[{i}]")


async def test_every_documented_route_answers_with_its_documented_shapes(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", BOOTSTRAP)
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    status, launched = await api.call(
        "POST", "/sessions", BOOTSTRAP, {"task": "x", "thread": THREAD}
    )
    sid = launched["id"]
    bodies = {
        ("POST", "/sessions"): {"task": "x", "thread": THREAD, "clientRequestId": "doc"},
        ("POST", "/sessions/{id}/prompt"): {"input": "hello", "wait": 10},
        ("POST", "/sessions/{id}/cancel"): {"wait": 10},
        ("POST", "/tasks"): {"task": "restate this", "wait": 20},
    }
    operations = [
        (method.upper(), path, operation)
        for path, methods in doc["paths"].items()
        for method, operation in methods.items()
    ]
    operations.sort(key=lambda op: op[0] == "DELETE")  # close last
    seen = set()
    for method, full, operation in operations:
        path = full.removeprefix(V1)
        concrete = path.replace("{id}", sid)
        key = (method, path)
        seen.add(key)
        if key == ("POST", "/sessions"):
            # The thread is busy: the documented 409, then the same in another thread.
            status, body = await api.call(method, concrete, BOOTSTRAP, bodies[key])
            assert str(status) in operation["responses"], (key, status)
            check(
                operation["responses"][str(status)]["content"]["application/json"]["schema"],
                body,
                doc,
            )
            await api.call("DELETE", f"/sessions/{sid}", BOOTSTRAP)
        status, body = await api.call(method, concrete, BOOTSTRAP, bodies.get(key))
        if key == ("POST", "/sessions"):
            sid = body["id"]
        assert str(status) in operation["responses"], (key, status, body)
        answer = operation["responses"][str(status)]
        if "content" in answer:
            check(answer["content"]["application/json"]["schema"], body, doc, f"{key}")
        # Without a token: the documented 401, in the error shape.
        status, body = await api.call(method, concrete, None, bodies.get(key))
        assert status == 401
        check(operation["responses"]["401"]["content"]["application/json"]["schema"], body, doc)
        if "requestBody" in operation:
            # What this test sends fits the documented body (and so do the documented
            # extras it sends below).
            documented = operation["requestBody"]["content"]["application/json"]["schema"]
            check(documented, bodies.get(key) or {}, doc, f"{key} request")
            status, body = await api.call(method, concrete, BOOTSTRAP, raw=b"{")
            assert status == 400
            check(operation["responses"]["400"]["content"]["application/json"]["schema"], body, doc)
    # A prompt's documented runtimeParams, which this server's apiOverrides do not allow:
    # the documented 403 in the error shape.
    prompt = doc["paths"][f"{V1}/sessions/{{id}}/prompt"]["post"]
    turn = {"input": "hot", "runtimeParams": {"temperature": 0.9, "maxTokens": 50}}
    check(prompt["requestBody"]["content"]["application/json"]["schema"], turn, doc)
    status, launched = await api.call("POST", "/sessions", BOOTSTRAP, {"task": "y"})
    assert status == 201, launched
    status, body = await api.call("POST", f"/sessions/{launched['id']}/prompt", BOOTSTRAP, turn)
    assert_error(status, body, 403, "override_not_allowed")
    check(prompt["responses"]["403"]["content"]["application/json"]["schema"], body, doc)
    assert ("GET", "/openapi.json") in seen
    assert ("GET", "/sessions/{id}/events") in seen
    assert {("POST", "/tasks"), ("POST", "/sessions/{id}/cancel")} <= seen
    assert ("POST", "/sessions/{id}/approve") in seen
    assert len(seen) == 12


async def test_the_inspectors_close_goes_through_the_session_service(api: Api) -> None:
    token, _ = api.tokens.create("ops", "operator")
    _status, launched = await api.call("POST", "/sessions", token, {"task": "x", "thread": THREAD})
    sid = launched["id"]
    async with api.app.http.post(
        f"{api.app.url}/api/sessions/{sid}/close", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["done"] is True
    _status, shown = await api.call("GET", f"/sessions/{sid}", token)
    assert (shown["state"], shown["closedBy"]) == ("closed", "operator:ops")
    actions = [(a.token, a.action, a.target) for a in api.tokens.audit_lines()]
    assert actions == [("ops", "close", sid), ("ops", "launch", sid)]


async def test_a_headless_session_answers_through_the_api_and_writes_to_no_host(api: Api) -> None:
    token, _ = api.tokens.create("bot", "operator")
    body = {"task": "restate this", "clientRequestId": "h1"}
    status, launched = await api.call("POST", "/sessions", token, body)
    assert status == 201, launched
    assert launched["thread"] is None
    assert launched["startedBy"] == "operator:bot"
    status, again = await api.call("POST", "/sessions", token, body)
    assert (status, again["id"]) == (200, launched["id"])
    status, other = await api.call("POST", "/sessions", token, {**body, "task": "no"})
    assert_error(status, other, 409, "idempotency_conflict")
    status, second = await api.call("POST", "/sessions", token, {"task": "another"})
    assert status == 201  # each headless session has a thread of its own
    assert second["id"] != launched["id"]
    sid = launched["id"]
    status, answer = await api.call(
        "POST", f"/sessions/{sid}/prompt", token, {"input": "and this?", "wait": 20}
    )
    assert status == 200, answer
    assert any("and this?" in reply for reply in answer["replies"]), answer["replies"]
    with Session(api.app.engine) as session:
        assert session.execute(select(func.count()).select_from(OutboxItem)).scalar_one() == 0
        # Nor is a status comment made for it: no thread would show one.
        row = session.get(SessionRow, sid)
        assert row is not None
        assert row.status_seq == 0
    # A token limited to repositories neither launches nor sees headless sessions.
    limited, _ = api.tokens.create("demo-only", "operator", [DEMO_REPO])
    status, body = await api.call("POST", "/sessions", limited, {"task": "x"})
    assert_error(status, body, 403, "forbidden")
    status, body = await api.call("GET", f"/sessions/{sid}", limited)
    assert_error(status, body, 404, "not_found")
