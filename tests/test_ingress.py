"""Webhook ingress end to end: real HTTP on loopback, a real database, the real worker."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import create_app
from bot.config import MAX_BODY_BYTES, Settings
from bot.db import make_engine
from bot.db.models import Delivery
from bot.inbox import Inbox
from tests import payloads as p
from tests.conftest import Running, end_backends, postgres_schema, run_app, with_settings


async def post_github(
    app: Running, event: str, payload: dict[str, Any], *, delivery: str | None = None
) -> tuple[int, dict[str, Any], str]:
    body = p.encode(payload)
    headers = p.github_headers(event, body, delivery=delivery)
    async with app.http.post(f"{app.url}/webhooks/github", data=body, headers=headers) as resp:
        return resp.status, await resp.json(), headers["X-GitHub-Delivery"]


async def post_gitlab(
    app: Running, event: str, payload: dict[str, Any], **header_options: Any
) -> tuple[int, dict[str, Any]]:
    headers = p.gitlab_headers(event, **header_options)
    async with app.http.post(
        f"{app.url}/webhooks/gitlab", data=p.encode(payload), headers=headers
    ) as resp:
        return resp.status, await resp.json()


def stored_count(app: Running) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Delivery)).scalar_one())


GITHUB_CASES = [
    ("issue_comment", p.issue_comment("@threadline look", pull=False), "CommentEvent created"),
    ("issue_comment", p.issue_comment("@threadline look", pull=True), "CommentEvent created"),
    ("pull_request_review", p.review("changes_requested"), "ReviewEvent submitted"),
    ("pull_request_review_comment", p.review_comment(), "CommentEvent created"),
    ("issues", p.issues_event("labeled"), "IssueEvent labeled"),
    ("installation", p.installation_event("created"), "InstallationEvent created"),
]


@pytest.mark.parametrize(("event", "payload", "routed"), GITHUB_CASES)
async def test_github_delivery_is_stored_once_normalized_and_routed(
    app: Running, event: str, payload: dict[str, Any], routed: str
) -> None:
    status, answer, delivery = await post_github(app, event, payload)
    assert (status, answer["status"]) == (202, "queued")
    await app.drain()
    row = app.inbox.get(delivery)
    assert row is not None
    assert (row.status, row.attempts, row.event) == ("done", 1, event)
    assert row.note is not None
    assert row.note.startswith(routed)
    assert "handlers." in row.note

    # GitHub redelivers with the same delivery id: acknowledged, not processed again.
    status, answer, _ = await post_github(app, event, payload, delivery=delivery)
    assert (status, answer["status"], answer["id"]) == (200, "duplicate", row.pk)
    await app.drain()
    again = app.inbox.get(delivery)
    assert again is not None
    assert (again.attempts, again.finished_at) == (1, row.finished_at)
    assert stored_count(app) == 1


async def test_comments_are_recorded_under_their_thread(app: Running) -> None:
    await post_github(app, "issue_comment", p.issue_comment("on the issue", number=7))
    await post_github(app, "issue_comment", p.issue_comment("on the PR", number=12, pull=True))
    await post_github(app, "pull_request_review_comment", p.review_comment("root", comment_id=70))
    await post_github(
        app, "pull_request_review_comment", p.review_comment("reply", comment_id=71, in_reply_to=70)
    )
    await app.drain()
    recorded = {(c.thread_key, c.body) for c in app.runtime.history.all()}
    assert recorded == {
        ("github:octo-org/hello-world/issues/7", "on the issue"),
        ("github:octo-org/hello-world/pulls/12", "on the PR"),
        ("github:octo-org/hello-world/pulls/12/threads/70", "root"),
        ("github:octo-org/hello-world/pulls/12/threads/70", "reply"),
    }


@pytest.mark.parametrize(("fixture", "event"), sorted(p.GITLAB_FIXTURES.items()))
async def test_gitlab_fixture_is_accepted_and_settled(
    app: Running, fixture: str, event: str
) -> None:
    payload = p.gitlab_fixture(fixture)
    status, answer = await post_gitlab(app, event, payload)
    handled = event != "Push Hook"
    assert (status, answer["status"]) == (202, "queued" if handled else "ignored")
    await app.drain()
    row = app.inbox.get(str(answer["id"]))
    assert row is not None
    noteable = payload.get("object_attributes", {}).get("noteable_type")
    if not handled or noteable in ("Commit", "Snippet"):
        assert row.status == "ignored"
    else:
        assert row.status == "done", row.last_error
    assert "X-Gitlab-Token" not in row.headers
    assert p.GITLAB_TOKEN not in json.dumps(row.headers)


async def test_gitlab_notes_are_recorded_and_redelivery_is_deduplicated(app: Running) -> None:
    payload = p.gitlab_fixture("docs/note_hook.merge_request.json")
    key = str(uuid.uuid4())
    first = await post_gitlab(app, "Note Hook", payload, idempotency_key=key)
    second = await post_gitlab(app, "Note Hook", payload, idempotency_key=key)
    assert first[0] == 202
    assert second == (200, {**second[1], "status": "duplicate"})
    await app.drain()
    assert [(c.thread_key, c.author) for c in app.runtime.history.all()] == [
        ("gitlab:gitlab-org/gitlab-test/pulls/1", "root")
    ]


async def test_gitlab_without_idempotency_key_dedupes_on_event_uuid_and_body(app: Running) -> None:
    payload = p.gitlab_fixture("docs/note_hook.issue.json")
    headers = p.gitlab_headers("Note Hook", idempotency_key=None)
    answers = []
    for _ in range(2):
        async with app.http.post(
            f"{app.url}/webhooks/gitlab", data=p.encode(payload), headers=headers
        ) as resp:
            answers.append((resp.status, (await resp.json())["status"]))
    assert answers == [(202, "queued"), (200, "duplicate")]


async def test_ping_gets_pong(app: Running) -> None:
    status, answer, _ = await post_github(
        app, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}
    )
    assert (status, answer["status"]) == (200, "pong")


async def test_unknown_event_is_stored_as_ignored_and_answered_202(app: Running) -> None:
    status, answer, delivery = await post_github(
        app, "star", {"action": "created", "starred_at": None}
    )
    assert (status, answer["status"]) == (202, "ignored")
    row = app.inbox.get(delivery)
    assert row is not None
    assert row.status == "ignored"
    assert row.attempts == 0
    status, answer = await post_gitlab(app, "Pipeline Hook", {"object_kind": "pipeline"})
    assert (status, answer["status"]) == (202, "ignored")


async def test_the_bots_own_comments_never_reach_a_handler(app: Running) -> None:
    for author, kind in (
        ("threadline", "User"),
        ("threadline[bot]", "Bot"),
        ("dependabot[bot]", "Bot"),
    ):
        await post_github(
            app, "issue_comment", p.issue_comment("status", author=author, author_type=kind)
        )
    gl = p.gitlab_fixture("docs/note_hook.issue.json")
    gl["object_attributes"]["system"] = True
    await post_gitlab(app, "Note Hook", gl)
    await app.drain()
    rows = app.inbox.list()
    assert len(rows) == 4
    assert all(r.status == "ignored" for r in rows), [(r.status, r.note) for r in rows]
    assert app.runtime.history.all() == []


def _signed(body: bytes, **overrides: str) -> dict[str, str]:
    headers = p.github_headers("issue_comment", body)
    for name, value in overrides.items():
        headers[name.replace("_", "-")] = value
    return headers


BODY = p.encode(p.issue_comment())


@pytest.mark.parametrize(
    ("case", "body", "headers", "status"),
    [
        ("tampered body", BODY + b" ", _signed(BODY), 401),
        ("wrong secret", BODY, p.github_headers("issue_comment", BODY, secret="not it"), 401),
        (
            "missing signature",
            BODY,
            {k: v for k, v in _signed(BODY).items() if k != "X-Hub-Signature-256"},
            401,
        ),
        ("sha1 signature only", BODY, _signed(BODY, X_Hub_Signature_256="sha1=" + "0" * 40), 401),
        (
            "missing event header",
            BODY,
            {k: v for k, v in _signed(BODY).items() if k != "X-GitHub-Event"},
            400,
        ),
        ("malformed JSON", b'{"action": ', _signed(b'{"action": '), 400),
        ("wrong content type", BODY, _signed(BODY, Content_Type="text/plain"), 415),
    ],
)
async def test_bad_github_requests_are_refused_and_store_nothing(
    app: Running, case: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    async with app.http.post(f"{app.url}/webhooks/github", data=body, headers=headers) as resp:
        assert resp.status == status, case
        assert "error" in await resp.json()
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    ("case", "headers", "body", "status"),
    [
        ("wrong token", p.gitlab_headers("Note Hook", token="guess"), b"{}", 401),
        (
            "missing token",
            {k: v for k, v in p.gitlab_headers("Note Hook").items() if k != "X-Gitlab-Token"},
            b"{}",
            401,
        ),
        (
            "missing event",
            {k: v for k, v in p.gitlab_headers("Note Hook").items() if k != "X-Gitlab-Event"},
            b"{}",
            400,
        ),
        ("malformed JSON", p.gitlab_headers("Note Hook"), b"{not json", 400),
    ],
)
async def test_bad_gitlab_requests_are_refused_and_store_nothing(
    app: Running, case: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    async with app.http.post(f"{app.url}/webhooks/gitlab", data=body, headers=headers) as resp:
        assert resp.status == status, case
        text = await resp.text()
    assert p.GITLAB_TOKEN not in text
    assert stored_count(app) == 0


async def test_a_26_mb_body_gets_413_and_is_not_stored(app: Running) -> None:
    body = b'{"pad": "' + b"x" * (26 * 1024 * 1024) + b'"}'
    assert len(body) > MAX_BODY_BYTES
    async with app.http.post(
        f"{app.url}/webhooks/github", data=io.BytesIO(body), headers=_signed(body)
    ) as resp:
        assert resp.status == 413

    async def chunks() -> Any:  # no Content-Length: the limit must hold while reading
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    async with app.http.post(
        f"{app.url}/webhooks/gitlab", data=chunks(), headers=p.gitlab_headers("Note Hook")
    ) as resp:
        assert resp.status == 413
    assert stored_count(app) == 0


async def test_a_host_without_a_secret_is_not_served(settings: Settings) -> None:
    async with run_app(with_settings(settings, gitlab_webhook_token=None)) as app:
        status, _ = await post_gitlab(app, "Note Hook", {"object_kind": "note"})
        assert status == 404
        assert stored_count(app) == 0


async def test_health_endpoints(app: Running) -> None:
    async with app.http.get(f"{app.url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "alive"
    async with app.http.get(f"{app.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["database"] == "ok"


async def test_unreachable_database_answers_503_so_the_host_redelivers() -> None:
    from aiohttp import ClientSession, web

    # Port 1 on loopback refuses connections at once: a database that is down.
    broken = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    settings = Settings(github_webhook_secret=p.SECRET)
    runner = web.AppRunner(create_app(settings, inbox=Inbox(broken)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with ClientSession() as http:
            body = p.encode(p.issue_comment())
            async with http.post(
                f"http://{host}:{port}/webhooks/github",
                data=body,
                headers=p.github_headers("issue_comment", body),
            ) as resp:
                assert resp.status == 503
                assert "redeliver" in (await resp.json())["error"]
            async with http.get(f"http://{host}:{port}/readyz") as resp:
                assert resp.status == 503
                answer = await resp.json()
                # What is wrong, without the driver's details (host, port, user).
                assert answer == {
                    "status": "unavailable",
                    "database": "unreachable: connection refused (OperationalError)",
                }
            async with http.get(f"http://{host}:{port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
        broken.dispose()


async def test_a_dropped_database_connection_costs_no_delivery() -> None:
    """PostgreSQL ends the ingress writer's connection (a restart, say): the next
    delivery is stored on a new connection and answered 202, not 503."""

    with postgres_schema() as url:
        marker = f"tl_writer_{uuid.uuid4().hex[:8]}"
        settings = Settings(
            database_url=f"{url}&application_name={marker}",
            port=0,
            github_webhook_secret=p.SECRET,
        )
        async with run_app(settings, workers=0) as app:
            first, _, _ = await post_github(app, "issue_comment", p.issue_comment("one"))
            assert first == 202
            ended = end_backends(url, marker)
            assert ended >= 1  # the writer's own connection among them
            second, answer, delivery = await post_github(
                app, "issue_comment", p.issue_comment("two", comment_id=2)
            )
            assert (second, answer["status"]) == (202, "queued")
            assert app.inbox.get(delivery) is not None
            assert stored_count(app) == 2


async def test_concurrent_deliveries_are_all_stored_and_processed_once(app: Running) -> None:
    results = await asyncio.gather(
        *(
            post_github(app, "issue_comment", p.issue_comment(f"comment {i}", comment_id=9000 + i))
            for i in range(60)
        )
    )
    assert {status for status, _, _ in results} == {202}
    await app.drain()
    assert sorted(int(c.body.split()[1]) for c in app.runtime.history.all()) == list(range(60))
    assert app.inbox.counts() == {"done": 60}


async def test_installation_lifecycle_is_recorded(app: Running) -> None:
    await post_github(app, "installation", p.installation_event("created"))
    await app.drain()
    info = app.runtime.installations.get("github", 4242)
    assert info is not None
    assert (info.status, info.account, info.repositories) == (
        "active",
        "octo-org",
        ("octo-org/hello-world",),
    )
    removed = {
        "action": "removed",
        "installation": p.installation_event()["installation"],
        "repositories_added": [],
        "repositories_removed": [{"id": 1, "full_name": "octo-org/hello-world"}],
        "sender": p.user("maintainer", 2),
    }
    await post_github(app, "installation_repositories", removed)
    await post_github(app, "installation", p.installation_event("suspend"))
    await app.drain()
    info = app.runtime.installations.get("github", 4242)
    assert info is not None
    assert (info.status, info.repositories) == ("suspended", ())
    await post_github(app, "installation", p.installation_event("deleted"))
    await app.drain()
    info = app.runtime.installations.get("github", 4242)
    assert info is not None
    assert info.status == "deleted"
