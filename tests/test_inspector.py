"""The session inspector over real HTTP on loopback, on SQLite and PostgreSQL: who may
see and do what, that no secret leaves the server, paging, the live stream, filters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.config import Settings, load_settings
from bot.db.models import Delivery, OutboxItem, SessionRow, TranscriptEvent
from bot.events import ThreadRef
from bot.sessions.store import Launch, SessionInfo, SessionOptions, SessionStore
from bot.web.auth import (
    COOKIE,
    Keys,
    Principal,
    clean_name,
    form_page,
    safe_next,
)
from bot.web.inspector import build_items, diff_lines
from bot.web.links import github_web_url, thread_url
from bot.web.queries import EventRow
from bot.web.redact import HIDDEN, Scrubber, redact
from bot.web.run_token import RunToken, login_link, print_login_link, settle_operator_token
from tests.conftest import Running, run_app, with_settings
from tests.payloads import GITLAB_TOKEN, SECRET, encode, github_headers, issue_comment

OPERATOR_TOKEN = "operator-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-fedcba9876543210"
API_KEY = "sk-live-abcdefghijklmnop0123"
GITHUB_TOKEN = "ghp_0123456789abcdefghijklmnopqrstuv"

PR = ThreadRef("github", "octo-org/hello-world", "pull", 12)


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def inspector_settings(settings: Settings) -> Settings:
    return with_settings(
        settings,
        operator_token=OPERATOR_TOKEN,
        viewer_token=VIEWER_TOKEN,
        github_token=GITHUB_TOKEN,
    )


@pytest.fixture
async def site(inspector_settings: Settings) -> AsyncIterator[Running]:
    async with run_app(inspector_settings, workers=0) as running:
        yield running


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies for 127.0.0.1 (aiohttp's default jar skips IP hosts)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield http


async def sign_in(
    http: aiohttp.ClientSession, url: str, token: str, name: str = ""
) -> aiohttp.ClientResponse:
    async with http.post(
        f"{url}/login",
        data={"token": token, "name": name, "next": "/inspect/sessions"},
        allow_redirects=False,
    ) as resp:
        await resp.read()
        return resp


def launch(
    engine: Engine,
    number: int,
    *,
    repo: str = "octo-org/hello-world",
    agent: str = "echo",
    host: str = "github",
    target: str = "pull",
) -> SessionInfo:
    store = SessionStore(engine)
    result = store.launch(
        Launch(
            client_request_id=f"req-{repo}-{number}-{agent}",
            thread=ThreadRef(host, repo, target, number),  # type: ignore[arg-type]
            installation_id=42,
            agent_id=agent,
            task=f"review pull request {number}",
            started_by="maintainer",
            trigger_comment_id=str(5000 + number),
            trigger_url=f"https://github.com/{repo}/pull/{number}#issuecomment-{5000 + number}",
            options=SessionOptions(),
        ),
        max_live=1000,
    )
    assert result.created
    return result.session


def add_events(engine: Engine, session_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Many transcript events in one transaction (the store records one per transaction)."""
    now = utcnow()
    with Session(engine) as db, db.begin():
        db.execute(
            insert(TranscriptEvent),
            [{"session_id": session_id, "at": now, "kind": k, "data": d} for k, d in events],
        )


def event_ids(html: str) -> list[int]:
    return [
        int(x) for x in re.findall(r'data-testid="transcript-event" data-event-id="(\d+)"', html)
    ]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has a CSRF field"
    return found.group(1)


async def get_text(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.text()


# ------------------------------------------------------------------ access


async def test_unauthenticated_requests_are_refused_and_open_paths_stay_open(
    site: Running,
) -> None:
    session = await asyncio.to_thread(launch, site.engine, 1)
    for path in (
        "/inspect",
        "/inspect/sessions",
        f"/inspect/sessions/{session.id}",
        f"/inspect/sessions/{session.id}/transcript",
        f"/inspect/sessions/{session.id}/events",
        "/inspect/deliveries",
        "/inspect/outbox",
    ):
        async with site.http.get(site.url + path, allow_redirects=False) as resp:
            assert resp.status == 303, path
            assert resp.headers["Location"].startswith("/login?next=%2Finspect"), path
    for path in (
        "/api/sessions",
        f"/api/sessions/{session.id}",
        f"/api/sessions/{session.id}/transcript",
    ):
        async with site.http.get(site.url + path) as resp:
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "authentication required" in (await resp.json())["error"]
    async with site.http.post(f"{site.url}/api/sessions/{session.id}/close") as resp:
        assert resp.status == 401
    async with site.http.post(
        f"{site.url}/inspect/sessions/{session.id}/close", allow_redirects=False
    ) as resp:
        # A page's form sent while signed out: a sign-in page that says so, towards the
        # page the form was on (never the POST-only path: that ended in 405).
        assert resp.status == 401
        page = await resp.text()
        assert 'data-testid="form-not-taken"' in page
        assert f'name="next" value="/inspect/sessions/{session.id}"' in page
    assert (await asyncio.to_thread(SessionStore(site.engine).get, session.id)).state == "active"  # type: ignore[union-attr]

    async with site.http.get(f"{site.url}/healthz") as resp:
        assert resp.status == 200
    status, html = await get_text(site.http, f"{site.url}/login")
    assert status == 200
    assert 'data-testid="login-form"' in html
    # A webhook is judged by its signature, never by inspector auth.
    body = encode(issue_comment("@threadline hello"))
    async with site.http.post(
        f"{site.url}/webhooks/github",
        data=body,
        headers=github_headers("issue_comment", body, delivery="d-open"),
    ) as resp:
        assert resp.status == 202
    async with site.http.post(f"{site.url}/webhooks/github", data=b"{}") as resp:
        assert resp.status in (400, 401)


async def test_wrong_tokens_and_forged_cookies_are_refused(site: Running) -> None:
    async with site.http.get(
        f"{site.url}/api/sessions", headers={"Authorization": "Bearer not-the-token"}
    ) as resp:
        assert resp.status == 401
    async with site.http.get(
        f"{site.url}/api/sessions", headers={"Authorization": f"Basic {OPERATOR_TOKEN}"}
    ) as resp:
        assert resp.status == 401, "only the Bearer scheme carries a token"
    async with browser() as http:
        resp = await sign_in(http, site.url, "guess-0123456789")
        assert resp.status == 401
        assert COOKIE not in resp.cookies
        status, html = await get_text(http, f"{site.url}/login?token=guess-0123456789")
        assert status == 401
        assert "guess-0123456789" not in html, "a wrong token is not echoed"
        async with http.get(f"{site.url}/inspect/sessions", allow_redirects=False) as page:
            assert page.status == 303
    # A cookie signed for another token (the token was rotated) or tampered with.
    old_value, _ = Keys("an-older-operator-token-0000", None).issue("operator", "mallory")
    # A viewer's key signing an operator claim: the role is bound to its own token's key.
    raised, _ = Keys(VIEWER_TOKEN, None).issue("operator", "mallory")
    good, _ = Keys(OPERATOR_TOKEN, None).issue("operator", "mallory")
    for value in (old_value, raised, good[:-3] + "abc", "garbage"):
        async with site.http.get(
            f"{site.url}/inspect/sessions",
            headers={"Cookie": f"{COOKIE}={value}"},
            allow_redirects=False,
        ) as page:
            assert page.status == 303, value
    async with site.http.get(
        f"{site.url}/inspect/sessions", headers={"Cookie": f"{COOKIE}={good}"}
    ) as page:
        assert page.status == 200, "the same cookie, untouched, is accepted"


async def test_sign_in_sets_a_signed_strict_cookie_without_the_token(site: Running) -> None:
    await asyncio.to_thread(launch, site.engine, 3)
    async with browser() as http:
        resp = await sign_in(http, site.url, OPERATOR_TOKEN, name="alice")
        assert resp.status == 303
        assert resp.headers["Location"] == "/inspect/sessions"
        header = resp.headers["Set-Cookie"]
        assert "HttpOnly" in header
        assert "SameSite=Strict" in header
        assert OPERATOR_TOKEN not in header
        status, html = await get_text(http, f"{site.url}/inspect/sessions")
        assert status == 200
        assert 'data-testid="session-row"' in html
        assert 'data-testid="signed-in-as">operator · alice<' in html
        # The cookie also opens the JSON API (what the pages' scripts would use).
        async with http.get(f"{site.url}/api/sessions") as api:
            assert api.status == 200
        # Signing out forgets it.
        async with http.post(
            f"{site.url}/logout", data={"csrf": csrf_of(html)}, allow_redirects=False
        ) as out:
            assert out.status == 303
        async with http.get(f"{site.url}/inspect/sessions", allow_redirects=False) as page:
            assert page.status == 303

    # The printed link: GET /login?token=... signs in and sends on to a local path only.
    async with browser() as http:
        status, html = await get_text(
            http, f"{site.url}/login?token={VIEWER_TOKEN}&next=//evil.example/x"
        )
        assert status == 200
        assert 'content="0;url=/"' in html
        assert VIEWER_TOKEN not in html
        status, html = await get_text(http, f"{site.url}/inspect/sessions")
        assert status == 200
        assert 'data-testid="signed-in-as">viewer<' in html


# Where sign-in may send the browser: a path on this site, else the start page.
OFF_SITE_NEXT = [
    "/%09/evil.example/path",
    "/%0a/evil.example",
    "/%0D%0A/evil.example",
    "/\t/evil.example/path",
    "/\n/evil.example",
    "/%2509/evil.example",  # a tab after two rounds of decoding
    "//evil.example/x",
    "/\\evil.example",
    "/%5Cevil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "evil.example",
    " /inspect/sessions",
    "/inspect/sessions ",
    "/inspect/ sessions",
    "/inspect/%20sessions",
    "/inspect\x00/sessions",
    "/inspect/\x7f",
    "/inspect/\x85",
    "/inspect/\u2028",
    "",
    None,
]
SAME_SITE_NEXT = [
    "/",
    "/inspect/sessions",
    "/playground?as=maintainer",
    "/inspect/sessions?state=live&agent=echo",
    "/inspect/sessions/s-1%2Fx",
    "/api/sessions#top",
]


@pytest.mark.parametrize("target", OFF_SITE_NEXT)
def test_next_off_this_site_falls_back_to_the_start_page(target: str | None) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", SAME_SITE_NEXT)
def test_next_on_this_site_is_kept(target: str) -> None:
    assert safe_next(target) == target


async def test_sign_in_never_sends_the_browser_off_site(site: Running) -> None:
    """Over HTTP: both ways of signing in, with `next` spelled as a browser would send it."""
    for target in ("/%09/evil.example/path", "/\t/evil.example/path", "/\n/evil.example"):
        async with browser() as http:
            async with http.post(
                f"{site.url}/login",
                data={"token": OPERATOR_TOKEN, "next": target},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "/", target
            query = urlencode({"token": VIEWER_TOKEN, "next": target})
            status, html = await get_text(http, f"{site.url}/login?{query}")
            assert status == 200
            assert 'content="0;url=/"' in html, target
            assert "evil.example" not in html
    async with browser() as http:  # a path here is kept
        query = urlencode({"token": VIEWER_TOKEN, "next": "/inspect/sessions?state=live"})
        status, html = await get_text(http, f"{site.url}/login?{query}")
        assert 'content="0;url=/inspect/sessions?state=live"' in html


async def test_viewer_cannot_close_or_purge(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 4)
    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN, name="vic")
        status, html = await get_text(http, f"{site.url}/inspect/sessions/{session.id}")
        assert status == 200
        assert 'data-testid="close-button"' not in html
        assert 'data-testid="purge-button"' not in html
        csrf = csrf_of(html)  # the viewer's own, valid CSRF token
        for action in ("close", "purge"):
            async with http.get(f"{site.url}/inspect/sessions/{session.id}/{action}") as page:
                assert page.status == 403
            async with http.post(
                f"{site.url}/inspect/sessions/{session.id}/{action}",
                data={"csrf": csrf},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 403
    async with site.http.post(
        f"{site.url}/api/sessions/{session.id}/purge",
        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
    ) as resp:
        assert resp.status == 403
    store = SessionStore(site.engine)
    after = await asyncio.to_thread(store.get, session.id)
    assert after is not None
    assert after.state == "active"
    assert [e.kind for e in await asyncio.to_thread(store.transcript, session.id)] == ["launched"]


async def test_an_open_page_can_ask_whether_it_is_still_signed_in(site: Running) -> None:
    async with browser() as http:
        async with http.get(f"{site.url}/login/status") as resp:
            assert resp.status == 401
            assert await resp.json() == {"signedIn": False}
        await sign_in(http, site.url, OPERATOR_TOKEN, name="alice")
        async with http.get(f"{site.url}/login/status") as resp:
            assert resp.status == 200
            assert await resp.json() == {"signedIn": True, "role": "operator", "who": "alice"}
        http.cookie_jar.clear()  # as a restart with another token leaves the cookie
        async with http.get(f"{site.url}/login/status") as resp:
            assert resp.status == 401
    # A page says so when it learns it: the notice is on every page, hidden until then.
    async with browser() as http:
        await sign_in(http, site.url, OPERATOR_TOKEN)
        status, html = await get_text(http, f"{site.url}/inspect/sessions")
    assert status == 200
    assert 'id="signed-out" role="alert" hidden data-testid="signed-out"' in html
    assert 'fetch("/login/status"' in html


async def test_operator_closes_with_csrf_and_it_lands_in_the_transcript(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 5)
    store = SessionStore(site.engine)
    async with browser() as http:
        await sign_in(http, site.url, OPERATOR_TOKEN, name="alice")
        status, html = await get_text(http, f"{site.url}/inspect/sessions/{session.id}")
        assert 'data-testid="close-button"' in html
        status, confirm = await get_text(http, f"{site.url}/inspect/sessions/{session.id}/close")
        assert status == 200
        assert 'data-testid="confirm-close"' in confirm
        # Without the CSRF field (a forged form), or with another session's, nothing happens.
        for data in ({}, {"csrf": "forged"}):
            async with http.post(
                f"{site.url}/inspect/sessions/{session.id}/close",
                data=data,
                allow_redirects=False,
            ) as resp:
                assert resp.status == 403
        # A stale form (its CSRF value from an earlier sign-in) says so, shows what was
        # written and links back to its page; it does not sign anyone in or out.
        async with http.post(
            f"{site.url}/inspect/sessions/{session.id}/close",
            data={"csrf": "from-an-earlier-sign-in", "body": "my <b>long</b> note"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 403
            stale = await resp.text()
        assert 'data-testid="form-not-taken"' in stale
        assert "my &lt;b&gt;long&lt;/b&gt; note</textarea>" in stale
        assert f'href="/inspect/sessions/{session.id}" data-testid="back-to-page"' in stale
        assert 'data-testid="login-form"' not in stale
        assert (await asyncio.to_thread(store.get, session.id)).state == "active"  # type: ignore[union-attr]
        async with http.post(
            f"{site.url}/inspect/sessions/{session.id}/close",
            data={"csrf": csrf_of(confirm)},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == f"/inspect/sessions/{session.id}?done=close"
        status, html = await get_text(http, f"{site.url}/inspect/sessions/{session.id}?done=close")
        assert 'data-testid="session-state">closed<' in html
        assert 'data-testid="closing-reason">operator<' in html
        assert 'data-testid="closed-by">operator:alice<' in html
    closed = await asyncio.to_thread(store.get, session.id)
    assert closed is not None
    assert (closed.state, closed.close_reason, closed.closed_by) == (
        "closed",
        "operator",
        "operator:alice",
    )
    events = await asyncio.to_thread(store.transcript, session.id)
    assert events[-1].kind == "closed"
    assert events[-1].data == {"reason": "operator", "by": "operator:alice"}
    # The thread's status comment says so, through the outbox.
    with Session(site.engine) as db:
        keys = [k for (k,) in db.query(OutboxItem.key).all()]
    assert any(k.startswith(f"status.{session.id}@") for k in keys)


async def test_operator_purges_over_the_api_and_the_purge_is_recorded(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 6)
    await asyncio.to_thread(
        add_events, site.engine, session.id, [("message", {"turn": 1, "text": "hi"})]
    )
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with site.http.post(
        f"{site.url}/api/sessions/{session.id}/purge", headers=bearer
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"session": session.id, "action": "purge", "done": True}
    store = SessionStore(site.engine)
    events = await asyncio.to_thread(store.transcript, session.id)
    assert [(e.kind, e.data) for e in events] == [("purged", {"by": "operator:operator"})]
    purged = await asyncio.to_thread(store.get, session.id)
    assert purged is not None
    assert (purged.state, purged.close_reason, purged.closed_by) == (
        "closed",
        "purged",
        "operator:operator",
    )
    async with site.http.post(f"{site.url}/api/sessions/s-nothere/purge", headers=bearer) as resp:
        assert resp.status == 404
    # A cookie session must send its CSRF token to the API too.
    async with browser() as http:
        await sign_in(http, site.url, OPERATOR_TOKEN)
        async with http.post(f"{site.url}/api/sessions/{session.id}/close") as resp:
            assert resp.status == 403


# ------------------------------------------------------------------ no secrets


async def test_no_secret_appears_on_any_page(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 7)
    signed_body = encode(issue_comment("@threadline look"))
    signed_headers = github_headers("issue_comment", signed_body, delivery="d-secret")
    async with site.http.post(
        f"{site.url}/webhooks/github", data=signed_body, headers=signed_headers
    ) as resp:
        assert resp.status == 202
    signature = signed_headers["X-Hub-Signature-256"]
    with Session(site.engine) as db, db.begin():
        db.execute(
            update(SessionRow)
            .where(SessionRow.id == session.id)
            .values(
                spec={
                    "id": "echo",
                    "engine": "llm",
                    "system_prompt": "Be brief.",
                    "provider": {"api_key": API_KEY, "model": "m"},
                }
            )
        )
        db.execute(update(Delivery).values(last_error=f"host said no to {GITHUB_TOKEN}"))
    await asyncio.to_thread(
        add_events,
        site.engine,
        session.id,
        [
            ("tool_call", {"turn": 1, "tool": "fetch", "args": {"token": "tok-abcdefgh-12345"}}),
            (
                "message",
                {"turn": 1, "text": f"the secret is {SECRET}, the gitlab one {GITLAB_TOKEN}"},
            ),
            ("change_proposed", {"title": "leak", "diff": f"+key = {OPERATOR_TOKEN}\n"}),
        ],
    )
    secrets = (
        SECRET,
        GITLAB_TOKEN,
        OPERATOR_TOKEN,
        VIEWER_TOKEN,
        GITHUB_TOKEN,
        API_KEY,
        "tok-abcdefgh-12345",
        signature,
        signature.removeprefix("sha256="),
    )
    pages = [
        "/inspect/sessions",
        f"/inspect/sessions/{session.id}",
        f"/inspect/sessions/{session.id}/transcript",
        f"/inspect/sessions/{session.id}/changes",
        f"/inspect/sessions/{session.id}/close",
        "/inspect/deliveries",
        "/inspect/outbox",
        "/api/sessions",
        f"/api/sessions/{session.id}",
        f"/api/sessions/{session.id}/transcript",
        "/login",
    ]
    async with browser() as http:
        await sign_in(http, site.url, OPERATOR_TOKEN)
        seen = []
        for path in pages:
            status, text = await get_text(http, site.url + path)
            assert status == 200, path
            seen.append(text)
            for secret in secrets:
                assert secret not in text, f"{path} shows a secret"
        session_html = seen[1]
        assert "Be brief." in session_html, "the system prompt is shown"
        assert HIDDEN in session_html, "the API key's place says it is hidden"
        assert 'data-testid="delivery-row"' in seen[5]


# ------------------------------------------------------------------ transcripts


async def test_a_long_transcript_is_paged(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 8)
    await asyncio.to_thread(
        add_events,
        site.engine,
        session.id,
        [("tool_call", {"turn": 1, "tool": "read", "args": {"n": n}}) for n in range(449)],
    )  # 450 with the launch event
    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN)
        base = f"{site.url}/inspect/sessions/{session.id}/transcript"
        status, first = await get_text(http, base)
        assert status == 200
        ids = event_ids(first)
        assert len(ids) == 200
        assert ids == sorted(ids)
        assert "events 1 to 200 of 450" in first
        assert 'data-testid="page-next"' in first
        assert 'data-testid="page-previous"' not in first
        assert "<details" in first, "tool calls are folded"
        _, second = await get_text(http, f"{base}?after={ids[-1]}")
        ids2 = event_ids(second)
        assert len(ids2) == 200
        assert ids2[0] > ids[-1]
        _, third = await get_text(http, f"{base}?after={ids2[-1]}")
        ids3 = event_ids(third)
        assert len(ids3) == 50
        assert "events 401 to 450 of 450" in third
        assert 'data-testid="page-next"' not in third
        _, earlier = await get_text(http, f"{base}?before={ids3[0]}")
        assert event_ids(earlier) == ids2
        _, last = await get_text(http, f"{base}?last=1")
        assert event_ids(last) == (ids + ids2 + ids3)[-200:]
        assert "events 251 to 450 of 450" in last
        assert 'data-testid="page-previous"' in last
        # The live stream is offered on a live session's last page only.
        assert "data-stream=" in last
        assert "data-stream=" not in first

        # The API pages the same way, with a cap on the page size.
        api = f"{site.url}/api/sessions/{session.id}/transcript"
        async with http.get(f"{api}?limit=100") as resp:
            body = await resp.json()
        assert len(body["events"]) == 100
        assert body["total"] == 450
        async with http.get(f"{api}?after={body['next_after']}&limit=5000") as resp:
            rest = await resp.json()
        assert len(rest["events"]) == 350
        assert rest["next_after"] is None
        assert rest["events"][0]["id"] > body["events"][-1]["id"]
        async with http.get(f"{api}?after=abc") as resp:
            assert resp.status == 400


async def test_deltas_of_a_turn_show_as_one_message_and_changes_render_as_a_diff(
    site: Running,
) -> None:
    session = await asyncio.to_thread(launch, site.engine, 9)
    plain = await asyncio.to_thread(launch, site.engine, 10)
    await asyncio.to_thread(
        add_events,
        site.engine,
        session.id,
        [
            ("delta", {"turn": 1, "text": "Hel"}),
            ("delta", {"turn": 1, "text": "lo <b>"}),
            ("delta", {"turn": 1, "text": "world"}),
            ("tool_call", {"turn": 1, "tool": "reply", "args": {"body": "x"}}),
            ("delta", {"turn": 2, "text": "again"}),
            (
                "change_proposed",
                {
                    "title": "Fix retry",
                    "diff": "--- a/r.py\n+++ b/r.py\n@@ -1 +1 @@\n-old\n+new\n same",
                },
            ),
        ],
    )
    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN)
        _, html = await get_text(http, f"{site.url}/inspect/sessions/{session.id}/transcript")
        texts = re.findall(r'data-testid="event-text">([^<]*)<', html)
        assert texts == ["Hello &lt;b&gt;world", "again"]
        _, page = await get_text(http, f"{site.url}/inspect/sessions/{session.id}")
        assert 'data-testid="changes-link"' in page
        status, changes = await get_text(http, f"{site.url}/inspect/sessions/{session.id}/changes")
        assert status == 200
        assert '<span class="add" data-line="add">+new</span>' in changes
        assert '<span class="del" data-line="del">-old</span>' in changes
        assert '<span class="hunk" data-line="hunk">@@ -1 +1 @@</span>' in changes
        _, other = await get_text(http, f"{site.url}/inspect/sessions/{plain.id}")
        assert 'data-testid="changes-link"' not in other
        status, _ = await get_text(http, f"{site.url}/inspect/sessions/{plain.id}/changes")
        assert status == 404
        status, _ = await get_text(http, f"{site.url}/inspect/sessions/s-missing")
        assert status == 404


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


async def read_stream(resp: aiohttp.ClientResponse, into: Received) -> None:
    """Parse server-sent events until the stream ends."""
    kind, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data += line.split(":", 1)[1].strip()
        elif line == "":
            if kind == "end":
                into.ended = True
                return
            if data:
                into.events.append(json.loads(data))
                into.arrived.set()
            kind, data = "message", ""


async def test_the_stream_sends_events_recorded_after_it_opened(site: Running) -> None:
    session = await asyncio.to_thread(launch, site.engine, 11)
    store = SessionStore(site.engine)
    start = await asyncio.to_thread(lambda: store.transcript(session.id)[-1].id)
    received = Received()
    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN)
        async with http.get(
            f"{site.url}/inspect/sessions/{session.id}/events?after={start}"
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            reader = asyncio.create_task(read_stream(resp, received))
            await asyncio.sleep(0.3)
            assert received.events == [], "nothing new yet"
            await asyncio.to_thread(
                store.record, session.id, "delta", {"turn": 1, "text": "streamed <hi>"}
            )
            async with asyncio.timeout(5):
                await received.arrived.wait()
            [delta] = received.events
            assert delta["kind"] == "delta"
            assert delta["text"] == "streamed <hi>"
            assert "streamed &lt;hi&gt;" in delta["html"]
            # Closing ends the stream once the closing event has gone out.
            await asyncio.to_thread(store.close, session.id, "done", by="maintainer")
            async with asyncio.timeout(5):
                await reader
    assert received.ended
    assert [e["kind"] for e in received.events] == ["delta", "closed"]

    # Reconnecting with Last-Event-ID resumes after it; a closed, drained session ends at once.
    last = received.events[-1]["id"]
    again = Received()
    async with site.http.get(
        f"{site.url}/inspect/sessions/{session.id}/events",
        headers={"Authorization": f"Bearer {VIEWER_TOKEN}", "Last-Event-ID": str(last - 1)},
    ) as resp:
        async with asyncio.timeout(5):
            await read_stream(resp, again)
    assert [e["id"] for e in again.events] == [last]
    assert again.ended


# ------------------------------------------------------------------ lists and filters


async def test_sessions_filter_and_page(site: Running) -> None:
    def make() -> None:
        for n in range(55):
            launch(site.engine, 100 + n)
        launch(site.engine, 1, repo="octo-org/other", agent="reviewer")
        launch(site.engine, 2, repo="group/project", host="gitlab", agent="reviewer")
        gone = launch(site.engine, 3, repo="octo-org/other")
        SessionStore(site.engine).close(gone.id, "done")

    await asyncio.to_thread(make)
    bearer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}

    async def listed(query: str) -> list[dict[str, Any]]:
        async with site.http.get(f"{site.url}/api/sessions?{query}", headers=bearer) as resp:
            assert resp.status == 200, query
            body = await resp.json()
            return list(body["sessions"])

    assert {s["agent"] for s in await listed("agent=reviewer")} == {"reviewer"}
    assert len(await listed("agent=reviewer")) == 2
    assert {s["repo"] for s in await listed("repo=octo-org/other")} == {"octo-org/other"}
    closed = await listed("state=closed")
    assert [(s["repo"], s["close_reason"]) for s in closed] == [("octo-org/other", "done")]
    assert len(await listed("state=live&repo=octo-org/other")) == 1
    [gitlab] = await listed("repo=group/project")
    assert gitlab["thread_url"] == "https://gitlab.com/group/project/-/merge_requests/2"
    async with site.http.get(f"{site.url}/api/sessions?state=bogus", headers=bearer) as resp:
        assert resp.status == 400

    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN)
        _, html = await get_text(http, f"{site.url}/inspect/sessions")
        rows = re.findall(r'data-testid="session-row" data-session-id="([^"]+)"', html)
        assert len(rows) == 50
        older = re.search(r'href="/inspect/sessions\?([^"]+)" data-testid="page-older"', html)
        assert older
        _, rest = await get_text(
            http, f"{site.url}/inspect/sessions?{older.group(1).replace('&amp;', '&')}"
        )
        more = re.findall(r'data-testid="session-row" data-session-id="([^"]+)"', rest)
        assert len(more) == 8
        assert not set(rows) & set(more)
        assert 'data-testid="page-newer"' in rest
        _, filtered = await get_text(http, f"{site.url}/inspect/sessions?agent=reviewer&state=live")
        assert len(re.findall(r'data-testid="session-row"', filtered)) == 2
        assert '<option value="reviewer" selected>' in filtered
        status, _ = await get_text(http, f"{site.url}/inspect/sessions?before=nonsense")
        assert status == 400


async def test_deliveries_and_outbox_pages_list_rows_with_status(site: Running) -> None:
    for n in range(3):
        body = encode(issue_comment(f"@threadline {n}"))
        async with site.http.post(
            f"{site.url}/webhooks/github",
            data=body,
            headers=github_headers("issue_comment", body, delivery=f"d-list-{n}"),
        ) as resp:
            assert resp.status == 202
    session = await asyncio.to_thread(launch, site.engine, 20)
    async with site.http.post(
        f"{site.url}/api/sessions/{session.id}/close",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    ) as resp:
        assert (await resp.json())["done"] is True  # which queues its status comment
    with Session(site.engine) as db, db.begin():
        db.execute(
            update(OutboxItem).values(status="failed", attempts=8, last_error="HTTP 502 from host")
        )
    async with browser() as http:
        await sign_in(http, site.url, VIEWER_TOKEN)
        _, deliveries = await get_text(http, f"{site.url}/inspect/deliveries")
        assert deliveries.count('data-testid="delivery-row"') == 3
        assert "d-list-2" in deliveries
        _, pending = await get_text(http, f"{site.url}/inspect/deliveries?status=done")
        assert 'data-testid="no-deliveries"' in pending
        _, outbox = await get_text(http, f"{site.url}/inspect/outbox?status=failed")
        assert 'data-testid="outbox-row"' in outbox
        assert "HTTP 502 from host" in outbox
        status, _ = await get_text(http, f"{site.url}/inspect/outbox?status=nope")
        assert status == 400


# ------------------------------------------------------------------ pure parts


def test_cookie_values_expire_and_die_with_their_token() -> None:
    keys = Keys(OPERATOR_TOKEN, VIEWER_TOKEN)
    value, principal = keys.issue("operator", "alice", now=1000.0)
    assert keys.verify(value, now=1001.0) == principal
    assert keys.verify(value, now=1000.0 + 13 * 3600) is None, "expired"
    assert Keys("rotated-operator-token-123456", VIEWER_TOKEN).verify(value, now=1001.0) is None
    assert keys.role_for(OPERATOR_TOKEN) == "operator"
    assert keys.role_for(VIEWER_TOKEN) == "viewer"
    assert keys.role_for(OPERATOR_TOKEN + "x") is None
    assert keys.csrf_ok(principal, keys.csrf(principal))
    assert not keys.csrf_ok(principal, "")
    other = Principal("operator", "alice", "another-nonce", principal.expires)
    assert not keys.csrf_ok(other, keys.csrf(principal)), "CSRF is tied to the cookie session"
    assert clean_name("  <script>al ice", "operator") == "scriptalice"
    assert clean_name("", "viewer") == "viewer"


def test_a_run_without_tokens_gets_one_kept_owner_only_for_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / "threadline.env"
    env_file.write_text("# mine\nTHREADLINE_LOG_LEVEL=DEBUG\n", encoding="utf-8")
    env_file.chmod(0o644)
    bare = load_settings({}, env_file)
    first = settle_operator_token(bare)
    token = first.token
    assert token is not None
    assert len(token) >= 32
    assert first.settings.operator_token == token
    assert first.kept_in == env_file
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "owner-only"
    text = env_file.read_text(encoding="utf-8")
    assert text.startswith("# mine\nTHREADLINE_LOG_LEVEL=DEBUG\n"), "the rest is kept"
    assert f"THREADLINE_OPERATOR_TOKEN={token}" in text

    # The next run reads it back as configured: same token, so the same cookie keys.
    again = load_settings({}, env_file)
    assert again.operator_token == token
    assert settle_operator_token(again) == RunToken(again, None)
    value, _ = Keys(token, None).issue("operator", "alice")
    assert Keys.from_settings(again).verify(value) is not None, "a cookie outlives the restart"

    # Configured tokens are kept and never printed.
    viewer_only = Settings(viewer_token=VIEWER_TOKEN)
    assert settle_operator_token(viewer_only) == RunToken(viewer_only, None)

    # A file it cannot write (here: its folder is gone): a token for this run only, and
    # a warning saying so.
    missing = tmp_path / "gone" / "threadline.env"
    run_only = settle_operator_token(Settings(source_file=str(missing)))
    assert run_only.token is not None
    assert run_only.kept_in is None
    assert not missing.exists()
    assert "holds for this run only" in caplog.text

    print_login_link("http://0.0.0.0:3000", token)
    print_login_link("http://127.0.0.1:3000", None)
    assert capsys.readouterr().out == f"Open http://127.0.0.1:3000/login?token={token}\n"
    assert login_link("http://0.0.0.0:3000", "t o") == "http://127.0.0.1:3000/login?token=t+o"


def test_a_refused_form_signs_in_towards_its_page_not_its_post_only_path() -> None:
    pages = {"/playground", "/inspect/sessions", "/inspect/sessions/s-1234abcd", "/setup"}
    is_page = pages.__contains__
    assert form_page("/playground/comment", {"pr": "2", "user": "outsider"}, is_page) == (
        "/playground?pr=2&as=outsider"
    )
    assert form_page("/playground/review-reply", {}, is_page) == "/playground"
    assert (
        form_page("/inspect/sessions/s-1234abcd/close", {}, is_page)
        == "/inspect/sessions/s-1234abcd"
    )
    assert form_page("/setup/gitlab/test", {}, is_page) == "/setup", "the nearest page"
    assert form_page("/x", {}, is_page) == "/"
    assert form_page("/nowhere/at/all", {}, is_page) == "/"
    assert form_page("/playground/comment", {"pr": "//evil.example"}, is_page).startswith(
        "/playground?"
    )


@pytest.mark.parametrize(
    ("api_url", "thread", "expected"),
    [
        ("https://api.github.com", PR, "https://github.com/octo-org/hello-world/pull/12"),
        (
            "https://api.github.com",
            ThreadRef("github", "o/r", "issue", 3),
            "https://github.com/o/r/issues/3",
        ),
        (
            "https://ghe.example.com/api/v3",
            ThreadRef("github", "o/r", "pull", 4, "991"),
            "https://ghe.example.com/o/r/pull/4#discussion_r991",
        ),
        ("https://api.github.com", ThreadRef("local", "demo/app", "pull", 1), "/playground"),
        (
            "https://api.github.com",
            ThreadRef("local", "demo/app", "pull", 1, "7"),
            "/playground#thread-7",
        ),
    ],
)
def test_thread_links(api_url: str, thread: ThreadRef, expected: str | None) -> None:
    settings = Settings(github_api_url=api_url, gitlab_url="https://gitlab.example.com")
    assert thread_url(settings, thread) == expected


def test_gitlab_links_and_github_web_urls() -> None:
    settings = Settings(gitlab_url="https://gitlab.example.com")
    mr = ThreadRef("gitlab", "group/sub/project", "pull", 5, "abc123")
    assert (
        thread_url(settings, mr)
        == "https://gitlab.example.com/group/sub/project/-/merge_requests/5"
    )
    issue = ThreadRef("gitlab", "group/project", "issue", 6)
    assert thread_url(settings, issue) == "https://gitlab.example.com/group/project/-/issues/6"
    assert github_web_url("https://github.example.com/api") == "https://github.example.com"


def test_redaction_and_scrubbing() -> None:
    data = {
        "provider": {"apiKey": "k-1", "api_key": "k-2", "model": "m"},
        "headers": [{"Authorization": "Bearer x"}],
        "max_tokens": 100,
        "tokens_in": 5,
        "webhook_secret": "",
    }
    assert redact(data) == {
        "provider": {"apiKey": HIDDEN, "api_key": HIDDEN, "model": "m"},
        "headers": [{"Authorization": HIDDEN}],
        "max_tokens": 100,
        "tokens_in": 5,
        "webhook_secret": "",
    }
    scrubber = Scrubber.from_settings(
        Settings(github_webhook_secret="0123456789abcdef", operator_token="short")
    )
    assert scrubber.text("sig 0123456789abcdef end") == f"sig {HIDDEN} end"
    assert scrubber.text("short words stay") == "short words stay"


def test_the_scrubber_knows_every_configured_secret_and_its_spellings() -> None:
    from bot.agents.config import parse_config

    config = parse_config(
        "providers:\n"
        "  used: {kind: openai, apiKeyEnv: KEY_A}\n"
        "  unused: {kind: anthropic, apiKeyEnv: KEY_B}\n"
        "  local: {kind: openai, baseUrl: 'http://127.0.0.1:11434/v1'}\n",
        environ={"KEY_A": "sk-a-0123456789abcdef", "KEY_B": 'sk-b-<&"é>-0123456789'},
    )
    scrubber = Scrubber.configured(
        Settings(github_token=GITHUB_TOKEN, viewer_token=VIEWER_TOKEN), config
    )
    text = (
        f"{GITHUB_TOKEN} {VIEWER_TOKEN} sk-a-0123456789abcdef "
        "html sk-b-&lt;&amp;&quot;é&gt;-0123456789 "
        + json.dumps({"k": 'sk-b-<&"é>-0123456789'})
        + json.dumps({"k": 'sk-b-<&"é>-0123456789'}, ensure_ascii=False)
    )
    cleaned = scrubber.text(text)
    assert "sk-" not in cleaned
    assert GITHUB_TOKEN not in cleaned
    assert VIEWER_TOKEN not in cleaned
    assert "unused" not in scrubber.secrets  # a keyless provider's placeholder is no secret
    scrubber.add("a-secret-settled-later")
    assert scrubber.text("x a-secret-settled-later") == f"x {HIDDEN}"


async def test_raised_answers_are_scrubbed_too(site: Running) -> None:
    """A 404 that repeats the address asked for does not repeat a secret in it."""
    for path in (f"/inspect/sessions/{GITHUB_TOKEN}", f"/api/sessions/{GITHUB_TOKEN}"):
        async with site.http.get(
            site.url + path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        ) as resp:
            assert resp.status == 404, path
            text = await resp.text()
        assert GITHUB_TOKEN not in text, path
        assert HIDDEN in text, path


def test_items_join_deltas_per_turn() -> None:
    now = utcnow()
    events = [
        EventRow(1, now, "delta", {"turn": 1, "text": "a"}),
        EventRow(2, now + timedelta(seconds=1), "delta", {"turn": 1, "text": "b"}),
        EventRow(3, now, "delta", {"turn": 2, "text": "c"}),
        EventRow(4, now, "message", {"turn": 2, "text": "done"}),
        EventRow(5, now, "delta", {"turn": 2, "text": "d"}),
    ]
    items = build_items(events)
    assert [(i.id, i.last_id, i.text, i.parts) for i in items] == [
        (1, 2, "ab", 2),
        (3, 3, "c", 1),
        (4, 4, "done", 1),
        (5, 5, "d", 1),
    ]
    assert [c for c, _ in diff_lines("+++ b\n@@ x\n+a\n-b\n c")] == [
        "file",
        "hunk",
        "add",
        "del",
        "",
    ]
