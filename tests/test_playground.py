"""The playground host end to end: comments written on the playground page go through the
real ingress over loopback HTTP, the inbox, the handlers, a session and the outbox, and
the bot's answers land in the playground's own tables. Plus its pure parts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.cli import main
from bot.config import Settings, load_settings
from bot.diffs import parse_diff
from bot.events import CommentEvent, Ignored, PayloadError, ReviewEvent, ThreadRef, normalize
from bot.hosts.base import DiffComment, HostError, NotFound
from bot.hosts.local import LocalHost
from bot.hosts.local_seed import BASE_FILES, DEMO_PULL, DEMO_REPO, HEAD_FILES
from bot.hosts.local_store import CommentInfo, PlaygroundStore
from bot.ingress.verify import WebhookRejected, accept_local
from bot.web.playground import render_body, signed_delivery
from tests.conftest import Running, run_app, with_settings
from tests.test_sessions import eventually, strip

TOKEN = "operator-token-for-the-playground-tests"
BOT = "threadline"
PULL = ThreadRef("local", DEMO_REPO, "pull", DEMO_PULL)
SLEEP_LINE = "            time.sleep(2**attempt)"
BASE_LINES = BASE_FILES["src/uploader.py"].splitlines()


def line_of(text: str, path: str = "src/uploader.py") -> int:
    """The line number of `text` in the new version of `path`."""
    return HEAD_FILES[path].splitlines().index(text) + 1


@dataclass
class Rig:
    app: Running
    store: PlaygroundStore

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}

    async def post(self, path: str, form: dict[str, Any], status: int = 201) -> dict[str, Any]:
        async with self.app.http.post(
            f"{self.app.url}/playground/{path}",
            data={k: str(v) for k, v in form.items()},
            headers=self.auth,
            allow_redirects=False,
        ) as resp:
            answer: dict[str, Any] = await resp.json()
            assert resp.status == status, answer
            return answer

    async def comment(self, body: str, user: str = "maintainer") -> dict[str, Any]:
        return await self.post("comment", {"user": user, "body": body})

    async def review_comment(
        self, body: str, line: int, path: str = "src/uploader.py", user: str = "maintainer"
    ) -> dict[str, Any]:
        form = {"user": user, "body": body, "path": path, "line": line, "side": "RIGHT"}
        return await self.post("review-comment", form)

    async def reply(self, thread: int, body: str, user: str = "maintainer") -> dict[str, Any]:
        return await self.post("review-reply", {"user": user, "thread": thread, "body": body})

    def conversation(self) -> list[CommentInfo]:
        return self.store.thread_comments(DEMO_REPO, DEMO_PULL, None)

    def in_thread(self, thread: int) -> list[CommentInfo]:
        return self.store.thread_comments(DEMO_REPO, DEMO_PULL, thread)

    def status(self, thread: int | None = None) -> CommentInfo:
        comments = self.conversation() if thread is None else self.in_thread(thread)
        found = [c for c in comments if c.author == BOT and c.body.startswith("**Threadline**")]
        assert len(found) == 1, "one status comment per session, edited in place"
        return found[0]

    def replies(self, thread: int | None = None) -> list[str]:
        comments = self.conversation() if thread is None else self.in_thread(thread)
        return [
            strip(c.body)
            for c in comments
            if c.author == BOT and not c.body.startswith("**Threadline**")
        ]

    def sessions(self) -> list[Any]:
        return self.app.runtime.sessions.store.recent(limit=50)


APPROVALS_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "approvals.yml"


def playground_settings(settings: Settings, **changes: Any) -> Settings:
    return with_settings(
        settings,
        playground=True,
        operator_token=TOKEN,
        outbox_min_interval_seconds=0.0,
        outbox_retry_seconds=0.05,
        bot_names=(BOT,),
        **changes,
    )


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    async with run_app(playground_settings(settings)) as app:
        yield Rig(app, PlaygroundStore(app.engine))


async def test_a_session_on_the_playground_from_trigger_to_done(rig: Rig) -> None:
    made = await rig.comment("@threadline look at the retries")
    assert made["delivery"]["status"] == "queued"
    stored = rig.app.inbox.get(made["delivery"]["delivery"])
    assert stored is not None
    assert (stored.host, stored.event, stored.action) == ("local", "comment", "created")
    assert json.loads(stored.body)["comment"]["body"] == "@threadline look at the retries"

    trigger = made["comment"]
    await eventually(lambda: "waiting for comments" in rig.status().body, "the session idles")
    [session] = rig.sessions()
    assert session.thread == PULL
    assert (session.started_by, session.agent_id) == ("maintainer", "echo")
    comment = rig.store.comment(trigger)
    assert comment is not None
    assert comment.reactions == (("eyes", (BOT,)),)
    status = rig.status()
    assert "- [x] Restate it" in status.body
    assert rig.replies() == ["Got it, @maintainer: look at the retries"]

    # A review thread on a diff line: its own session, and a reply in it goes into it.
    opened = await rig.review_comment("@threadline does this drop the last error?", line=19)
    thread = opened["thread"]
    assert rig.store.thread(thread) is not None
    await eventually(lambda: len(rig.sessions()) == 2, "a session for the review thread")
    await eventually(
        lambda: rig.replies(thread) == ["Got it, @maintainer: does this drop the last error?"],
        "the agent answers in the review thread",
    )
    await eventually(lambda: "waiting for comments" in rig.status(thread).body, "idle again")
    await rig.reply(thread, "and after the third attempt?")
    await eventually(
        lambda: rig.replies(thread)[-1] == "Got it, @maintainer: and after the third attempt?",
        "the reply reached the thread's session",
    )
    by_thread = {s.thread.key: s for s in rig.sessions()}
    review = by_thread[f"local:{DEMO_REPO}/pulls/{DEMO_PULL}/threads/{thread}"]
    inputs = rig.app.runtime.sessions.store.inputs(review.id)
    assert [i.body for i in inputs] == [
        "does this drop the last error?",
        "and after the third attempt?",
    ]
    assert "and after the third attempt" not in " ".join(rig.replies()), "not in the other"

    await eventually(lambda: rig.app.runtime.sessions.store.get(review.id).state == "idle", "idle")  # type: ignore[union-attr]
    await rig.reply(thread, "/done")
    await eventually(lambda: "ended by @maintainer" in rig.status(thread).body, "closed")
    closed = rig.app.runtime.sessions.store.get(review.id)
    assert closed is not None
    assert (closed.state, closed.close_reason, closed.closed_by) == (
        "closed",
        "user_signal",
        "maintainer",
    )
    await rig.comment("/done")
    await eventually(lambda: "ended by @maintainer" in rig.status().body, "both closed")
    closing = rig.status()
    assert (closing.id, closing.edited_at is not None) == (status.id, True), "edited in place"
    assert all(s.state == "closed" for s in rig.sessions())
    kinds = [e.kind for e in rig.app.runtime.sessions.store.transcript(session.id)]
    assert kinds[0] == "launched"
    assert kinds[-1] == "closed"


async def test_an_outsider_is_refused_politely(rig: Rig) -> None:
    await rig.comment("@threadline merge this for me", user="outsider")
    await eventually(lambda: len(rig.replies()) == 1, "one refusal")
    assert rig.replies()[0].startswith("Sorry @outsider, only people with write access")
    await rig.app.drain()
    assert rig.sessions() == []


async def test_edits_and_deletes_are_delivered_too(rig: Rig) -> None:
    made = await rig.comment("a first thought")
    edited = await rig.post("edit", {"user": "maintainer", "comment": made["comment"], "body": "a"})
    gone = await rig.post("delete", {"user": "maintainer", "comment": made["comment"]})
    await rig.app.drain()
    actions = [rig.app.inbox.get(d["delivery"]["delivery"]) for d in (made, edited, gone)]
    assert [(r.action, r.status) for r in actions if r] == [
        ("created", "done"),
        ("edited", "done"),
        ("deleted", "done"),
    ]
    comment = rig.store.comment(made["comment"])
    assert comment is not None
    assert (comment.body, comment.edited_at is not None, comment.deleted_at is not None) == (
        "a",
        True,
        True,
    )
    # Someone else's comment cannot be changed, and a refusal stores no delivery.
    before = len(rig.app.inbox.list(limit=100))
    theirs = await rig.comment("mine", user="outsider")
    refused = await rig.post(
        "edit",
        {"user": "maintainer", "comment": theirs["comment"], "body": "forged"},
        status=403,
    )
    assert "may not edit" in refused["error"]
    assert len(rig.app.inbox.list(limit=100)) == before + 1


async def test_bad_input_is_refused_with_a_reason(rig: Rig) -> None:
    empty = await rig.post("comment", {"user": "maintainer", "body": "  "}, status=400)
    assert empty["error"] == "write something first"
    as_bot = await rig.post("comment", {"user": BOT, "body": "@threadline hi"}, status=400)
    assert "pick a playground user" in as_bot["error"]
    off_diff = await rig.post(
        "review-comment",
        {"user": "maintainer", "body": "here", "path": "README.md", "line": 1},
        status=422,
    )
    assert "not part of the diff" in off_diff["error"]
    assert rig.app.inbox.list() == []
    # The page shows the reason and keeps what was typed.
    async with rig.app.http.post(
        f"{rig.app.url}/playground/review-comment",
        data={"user": "maintainer", "body": "keep me", "path": "src/uploader.py", "line": "99"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        assert resp.status == 422
        page = await resp.text()
    assert "line 99 of src/uploader.py is not part of the diff" in page
    assert "keep me" in page


async def test_the_bot_s_own_comments_do_not_trigger(rig: Rig) -> None:
    secret = await asyncio.to_thread(rig.store.prepare, BOT)
    made = await asyncio.to_thread(
        rig.store.add_comment, DEMO_REPO, DEMO_PULL, BOT, "@threadline talk to myself"
    )
    payload = {
        "action": "created",
        "repository": DEMO_REPO,
        "target": "pull",
        "number": DEMO_PULL,
        "sender": {"login": BOT, "bot": True},
        "comment": {"id": made.id, "body": made.body},
    }
    headers, body = signed_delivery("comment", payload, secret)
    async with rig.app.http.post(
        f"{rig.app.url}/webhooks/local", data=body, headers=headers
    ) as resp:
        assert resp.status == 202
    await rig.app.drain()
    [row] = rig.app.inbox.list()
    assert (row.status, row.note) == ("ignored", f"written by the bot itself ({BOT})")
    assert rig.sessions() == []


async def test_a_wrong_signature_is_refused_and_nothing_is_stored(rig: Rig) -> None:
    payload = {"action": "created", "repository": DEMO_REPO, "number": 1}
    headers, body = signed_delivery("comment", payload, "not-the-secret")
    for changed in (headers, {k: v for k, v in headers.items() if "Signature" not in k}):
        async with rig.app.http.post(
            f"{rig.app.url}/webhooks/local", data=body, headers=changed
        ) as resp:
            assert resp.status == 401
            assert "signature" in (await resp.json())["error"].lower()
    assert rig.app.inbox.list() == []


async def test_the_page_needs_sign_in_and_shows_the_pull_request(rig: Rig) -> None:
    async with rig.app.http.get(f"{rig.app.url}/playground", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/login?")
    async with rig.app.http.get(
        f"{rig.app.url}/playground/state", headers={"Accept": "application/json"}
    ) as resp:
        assert resp.status == 401
    async with rig.app.http.post(
        f"{rig.app.url}/playground/comment", data={"user": "maintainer", "body": "x"}
    ) as resp:
        assert resp.status in (200, 401)  # the login page, or a JSON refusal
    assert rig.app.inbox.list() == []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with rig.app.http.get(f"{rig.app.url}/playground", headers=headers) as resp:
        assert resp.status == 200
        page = await resp.text()
    assert "Retry uploads when the archive is briefly unavailable" in page
    assert 'data-testid="line-src/uploader.py-19"' in page
    async with rig.app.http.get(f"{rig.app.url}/playground/state", headers=rig.auth) as resp:
        first = await resp.json()
    assert first["changed"] is True
    version = first["version"]
    async with rig.app.http.get(
        f"{rig.app.url}/playground/state?v={version}", headers=rig.auth
    ) as resp:
        assert await resp.json() == {"version": version, "changed": False}
    await rig.comment("hello")
    async with rig.app.http.get(
        f"{rig.app.url}/playground/state?v={version}", headers=rig.auth
    ) as resp:
        moved = await resp.json()
    assert moved["changed"] is True
    assert "hello" in moved["parts"]["conversation"]


async def test_routes_are_absent_when_the_playground_is_off(settings: Settings) -> None:
    async with run_app(with_settings(settings, operator_token=TOKEN)) as app:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for method, path in (
            ("GET", "/playground"),
            ("GET", "/playground/state"),
            ("POST", "/playground/comment"),
            ("POST", "/webhooks/local"),
        ):
            async with app.http.request(method, f"{app.url}{path}", headers=headers) as resp:
                assert resp.status == 404, path
        assert app.inbox.list() == []


async def test_a_configured_secret_is_used(settings: Settings) -> None:
    secret = "a-configured-playground-secret-0123"
    async with run_app(playground_settings(settings, playground_secret=secret)) as app:
        payload = {"action": "opened", "repository": DEMO_REPO, "number": 1}
        headers, body = signed_delivery("pull_request", payload, secret)
        async with app.http.post(f"{app.url}/webhooks/local", data=body, headers=headers) as resp:
            assert resp.status == 202
            assert (await resp.json())["status"] == "ignored"


# ---------------------------------------------------------------- no secret shown

PROVIDER_KEY = "sk-provider-key-0123456789abcdefXYZ"
KEY_VARIABLE = "PROVIDER_KEY_FOR_THE_SCRUB_TEST"


async def test_no_configured_secret_is_shown_on_any_surface(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A provider's API key (named by apiKeyEnv) and the settings' secrets, written in a
    comment, reach the transcript, the outbox and the conversation; no page, JSON answer,
    playground state or CLI transcript shows them."""
    agents = tmp_path / "threadline.yml"
    agents.write_text(
        f"providers:\n  main:\n    kind: openai\n    apiKeyEnv: {KEY_VARIABLE}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(KEY_VARIABLE, PROVIDER_KEY)
    webhook_token = settings.gitlab_webhook_token
    assert webhook_token is not None
    configured = playground_settings(settings, config=str(agents))
    secrets = (PROVIDER_KEY, webhook_token, TOKEN)
    async with run_app(configured) as app:
        rig = Rig(app, PlaygroundStore(app.engine))
        await rig.comment(f"@threadline keys: {PROVIDER_KEY} {webhook_token} {TOKEN}")
        await eventually(lambda: rig.replies(), "the bot answers")
        assert PROVIDER_KEY in rig.replies()[0], "the echo carries the key to the host"
        [session] = rig.sessions()
        surfaces = [
            "/playground",
            "/playground/state",
            "/inspect/sessions",
            f"/inspect/sessions/{session.id}",
            f"/inspect/sessions/{session.id}/transcript",
            "/inspect/deliveries",
            "/inspect/outbox",
            "/api/sessions",
            f"/api/sessions/{session.id}",
            f"/api/sessions/{session.id}/transcript",
        ]
        for path in surfaces:
            async with app.http.get(f"{app.url}{path}", headers=rig.auth) as resp:
                assert resp.status == 200, path
                text = await resp.text()
            for secret in secrets:
                assert secret not in text, f"{path} shows a secret"
            if path.startswith(("/playground", "/api/sessions/")):
                assert "[hidden]" in text, f"{path}: the secret's place says it is hidden"
        async with app.http.get(f"{app.url}/playground/state", headers=rig.auth) as resp:
            parts = (await resp.json())["parts"]
        assert "[hidden]" in parts["conversation"]

    # The CLI's transcript and session views, on the same database and settings.
    monkeypatch.setenv("THREADLINE_DATABASE_URL", configured.database_url)
    monkeypatch.setenv("THREADLINE_CONFIG", str(agents))
    monkeypatch.setenv("THREADLINE_GITLAB_WEBHOOK_TOKEN", webhook_token)
    monkeypatch.setenv("THREADLINE_OPERATOR_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for command in (
        ["sessions", "transcript", session.id],
        ["sessions", "transcript", session.id, "--format", "jsonl"],
        ["sessions", "show", session.id],
        ["sessions", "show", session.id, "--json"],
    ):
        assert main(command) == 0, command
        out = capsys.readouterr().out
        assert "[hidden]" in out, command
        for secret in secrets:
            assert secret not in out, f"{command} shows a secret"


# ---------------------------------------------------------------- the host adapter


@pytest.fixture
def local(engine: Engine) -> LocalHost:
    store = PlaygroundStore(engine)
    store.prepare(BOT)
    return LocalHost(store, BOT)


async def test_local_host_writes_and_finds_its_comments(local: LocalHost) -> None:
    posted = await local.post_comment(PULL, "status v1\n\n<!-- threadline:status.s-1 -->")
    await local.edit_comment(PULL, posted.id, "status v2\n\n<!-- threadline:status.s-1 -->")
    found = await local.find_comment(PULL, "<!-- threadline:status.s-1 -->")
    assert found is not None
    assert found.id == posted.id
    assert await local.find_comment(PULL, "<!-- threadline:other -->") is None
    await local.add_reaction(PULL, posted.id, "eyes")
    await local.add_reaction(PULL, posted.id, "eyes")  # twice is harmless
    comment = local.store.comment(int(posted.id))
    assert comment is not None
    assert comment.reactions == (("eyes", (BOT,)),)
    assert comment.body.startswith("status v2")
    with pytest.raises(HostError, match="no reaction"):
        await local.add_reaction(PULL, posted.id, "thumbs")
    with pytest.raises(NotFound):
        await local.edit_comment(PULL, "999999", "x")
    other = local.store.add_comment(DEMO_REPO, DEMO_PULL, "maintainer", "mine")
    with pytest.raises(HostError, match="may not edit") as refused:
        await local.edit_comment(PULL, str(other.id), "forged")
    assert refused.value.status == 403


async def test_local_host_reviews_and_threads(local: LocalHost) -> None:
    info = await local.pull_info(PULL)
    line = line_of(SLEEP_LINE)
    posted = await local.create_review(
        PULL,
        info.head_sha,
        [
            DiffComment(
                "src/uploader.py",
                line,
                "sleeps after the last attempt too\n\n<!-- threadline:r.0 -->",
            )
        ],
    )
    [first] = posted
    assert first.thread_id is not None
    thread = ThreadRef("local", DEMO_REPO, "pull", DEMO_PULL, first.thread_id)
    found = await local.find_comment(PULL, "<!-- threadline:r.0 -->")
    assert found == first, "a lost review is found from the conversation"
    reply = await local.post_comment(thread, "more")
    assert reply.thread_id == first.thread_id
    await local.resolve_thread(thread)
    await local.resolve_thread(thread)
    resolved = local.store.thread(int(first.thread_id))
    assert resolved is not None
    assert resolved.resolved
    with pytest.raises(HostError, match="not part of the diff"):
        await local.create_review(PULL, info.head_sha, [DiffComment("README.md", 1, "x")])
    with pytest.raises(NotFound):
        await local.resolve_thread(ThreadRef("local", DEMO_REPO, "pull", DEMO_PULL, "424242"))


async def test_local_host_reads_the_pull_request(local: LocalHost) -> None:
    info = await local.pull_info(PULL)
    assert (info.title, info.state) == (
        "Retry uploads when the archive is briefly unavailable",
        "open",
    )
    diff = await local.pull_diff(PULL)
    assert [(f.path, f.status) for f in parse_diff(diff)] == [
        ("src/uploader.py", "modified"),
        ("tests/test_uploader.py", "added"),
    ]
    files = await local.changed_files(PULL)
    assert [(f.path, f.status, f.additions, f.deletions) for f in files] == [
        ("src/uploader.py", "modified", 14, 4),
        ("tests/test_uploader.py", "added", 28, 0),
    ]
    assert files[0].patch is not None
    assert files[0].patch.startswith("@@ -1,16 +1,26 @@")
    head = await local.read_file(DEMO_REPO, "src/uploader.py", info.head_sha)
    assert b"RETRIES = 3" in head
    base = await local.read_file(DEMO_REPO, "src/uploader.py", "main")
    assert b"RETRIES" not in base
    with pytest.raises(NotFound):
        await local.read_file(DEMO_REPO, "nope.py", "main")
    assert await local.permission(DEMO_REPO, "maintainer") == "write"
    assert await local.permission(DEMO_REPO, "outsider") == "read"
    assert await local.permission(DEMO_REPO, "stranger") == "none"
    assert (await local.whoami()).login == BOT


def test_seeding_is_repeatable_and_keeps_its_secret(engine: Engine) -> None:
    store = PlaygroundStore(engine)
    secret = store.prepare(BOT)
    assert len(secret) >= 32
    assert store.prepare(BOT) == secret
    assert store.prepare(BOT, "configured") == "configured"
    assert len(store.pulls()) == 1
    assert [(u.login, u.permission, u.is_bot) for u in store.users()] == [
        ("maintainer", "write", False),
        ("outsider", "read", False),
        (BOT, "write", True),
    ]


# ---------------------------------------------------------------- pure parts


def _payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": "created",
        "repository": DEMO_REPO,
        "target": "pull",
        "number": 1,
        "sender": {"login": "maintainer", "bot": False},
        "comment": {"id": 5, "body": "@threadline hi", "url": "/playground#comment-5"},
    }
    payload.update(changes)
    return payload


def test_normalize_local_comments_and_reviews() -> None:
    event = normalize("local", "comment", _payload())
    assert isinstance(event, CommentEvent)
    assert event.thread == PULL
    assert (event.comment_id, event.body, event.actor.login) == (
        "5",
        "@threadline hi",
        "maintainer",
    )
    reply = normalize(
        "local",
        "comment",
        _payload(
            comment={"id": 9, "body": "x", "thread": 4, "in_reply_to": 8, "path": "a.py", "line": 3}
        ),
    )
    assert isinstance(reply, CommentEvent)
    assert reply.thread.key == f"local:{DEMO_REPO}/pulls/1/threads/4"
    assert (reply.in_reply_to, reply.path, reply.line) == ("8", "a.py", 3)
    review = normalize(
        "local",
        "review",
        _payload(action="submitted", review={"id": 2, "state": "APPROVED", "commit_id": "abc"}),
    )
    assert isinstance(review, ReviewEvent)
    assert (review.state, review.commit_id, review.review_id) == ("approved", "abc", "2")
    assert normalize("local", "ping", {}) == Ignored("ping")
    assert isinstance(normalize("local", "push", {}), Ignored)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"repository": ""}, "no repository"),
        ({"number": "1"}, "number must be"),
        ({"number": True}, "number must be"),
        ({"target": "commit"}, "target must be"),
        ({"sender": {}}, "sender.login"),
        ({"comment": "hi"}, "comment must be an object"),
        ({"comment": {"body": "no id"}}, "comment.id"),
        ({"comment": {"id": 1, "thread": [1]}}, "comment.thread"),
    ],
)
def test_normalize_local_refuses_broken_payloads(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        normalize("local", "comment", _payload(**changes))


def test_accept_local_checks_the_signature_first() -> None:
    headers, body = signed_delivery("comment", _payload(), "s3cret")
    incoming = accept_local(headers, body, "s3cret")
    assert (incoming.host, incoming.event, incoming.action, incoming.handled) == (
        "local",
        "comment",
        "created",
        True,
    )
    assert "X-Threadline-Signature-256" not in incoming.headers
    with pytest.raises(WebhookRejected) as wrong:
        accept_local(headers, body, "other")
    assert wrong.value.status == 401
    with pytest.raises(WebhookRejected) as tampered:
        accept_local(headers, body + b" ", "s3cret")
    assert tampered.value.status == 401
    no_id = {k: v for k, v in headers.items() if k != "X-Threadline-Delivery"}
    with pytest.raises(WebhookRejected, match="X-Threadline-Delivery"):
        accept_local(no_id, body, "s3cret")


def test_the_playground_beyond_loopback_needs_an_operator_token(tmp_path: Path) -> None:
    assert Settings(playground=True).serving_problems() == []
    assert Settings(playground=True, host="::1").serving_problems() == []
    assert Settings(playground=True, host="localhost").serving_problems() == []
    [problem] = Settings(playground=True, host="0.0.0.0").serving_problems()  # noqa: S104
    assert "THREADLINE_OPERATOR_TOKEN" in problem
    guarded = Settings(playground=True, host="0.0.0.0", operator_token="t" * 20)  # noqa: S104
    assert guarded.serving_problems() == []
    assert Settings(host="0.0.0.0").serving_problems() == []  # noqa: S104
    empty = tmp_path / "threadline.env"
    empty.write_text("")
    parsed = load_settings({"THREADLINE_PLAYGROUND": "yes"}, env_file=empty)
    assert parsed.playground is True


def test_comment_bodies_render_safely() -> None:
    html = str(
        render_body(
            "**Threadline** `s-1`\n\n- [x] Read\n- [ ] Write\n\n<sub>`/done` ends it</sub>\n\n"
            "<!-- threadline:status.s-1 -->\n<img src=x onerror=alert(1)> @maintainer"
        )
    )
    assert "<strong>Threadline</strong> <code>s-1</code>" in html
    assert '<li class="task">☑ Read</li><li class="task">☐ Write</li>' in html
    assert "<sub><code>/done</code> ends it</sub>" in html
    assert "threadline:status" not in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_an_approval_in_the_playground_opens_a_pull_request(settings: Settings) -> None:
    async with run_app(playground_settings(settings, config=str(APPROVALS_EXAMPLE))) as app:
        rig = Rig(app, PlaygroundStore(app.engine))
        await rig.comment("/agent fixer add a changelog entry")
        await eventually(lambda: "**Awaiting approval**" in rig.status().body, "the gate", 30)
        await rig.comment("/approve", user="outsider")
        await eventually(lambda: any("Sorry @outsider" in r for r in rig.replies()), "refused")
        await rig.comment("/approve")
        await eventually(
            lambda: any(s.state == "closed" for s in rig.sessions()), "the session ends", 30
        )
        # One answer to the approval, linking the new pull request; no near-duplicate.
        await eventually(lambda: any("opened #2" in r for r in rig.replies()), "the answer")
        await eventually(lambda: "[#2](/playground?pr=2)" in rig.status().body, "linked")
        closed = next(s for s in rig.sessions() if s.state == "closed")
        footer = f"<sub>[Transcript](/inspect/sessions/{closed.id})</sub>"
        await eventually(lambda: footer in rig.status().body, "the footer links the inspector")
        # The thread's writes go out in order: every reply came before the closed status.
        [opened] = [r for r in rig.replies() if "Approved by" in r]
        assert opened == "Approved by @maintainer: opened #2 (/playground?pr=2)."
        pull = rig.store.pull(DEMO_REPO, 2)
        assert pull is not None
        assert "+- Uploads are retried while the archive is briefly down." in pull.diff

        # The playground lists its pull requests and shows the one the approval opened.
        page = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/html"}
        async with app.http.get(f"{app.url}/playground", headers=page) as resp:
            listing = await resp.text()
        assert 'href="/playground?pr=2">#2 Changelog: add a changelog entry</a>' in listing
        async with app.http.get(f"{app.url}/playground?pr=2", headers=page) as resp:
            assert resp.status == 200
            shown = await resp.text()
        assert "playground/demo#2" in shown
        assert "+- Uploads are retried while the archive is briefly down." in shown
        assert 'name="pr" value="2"' in shown
        async with app.http.get(f"{app.url}/playground?pr=9", headers=page) as resp:
            assert resp.status == 404

        # Writing on it: the comment lands on #2, and the browser goes back to #2.
        async with app.http.post(
            f"{app.url}/playground/comment",
            data={"user": "maintainer", "body": "looks right", "pr": "2"},
            headers=page,
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert "pr=2" in resp.headers["Location"]
        assert [c.body for c in rig.store.thread_comments(DEMO_REPO, 2, None)] == ["looks right"]
        async with app.http.get(f"{app.url}/playground/state?pr=2", headers=rig.auth) as resp:
            state = await resp.json()
        assert "looks right" in state["parts"]["conversation"]


async def test_an_answer_with_nothing_to_approve_gets_a_short_reply(rig: Rig) -> None:
    await rig.comment("/approve")
    await eventually(
        lambda: rig.replies() == ["Nothing is waiting for approval in this thread."], "answered"
    )
    await rig.comment("/approve", user="outsider")  # an outsider's answer changes nothing
    await rig.comment("@threadline hello")
    await eventually(lambda: len(rig.sessions()) == 1, "a session")
    assert rig.replies().count("Nothing is waiting for approval in this thread.") == 1


async def test_a_deleted_line_is_commented_on_the_left_side(rig: Rig) -> None:
    """As on GitHub: a deleted line is numbered in the old file and commented on with
    side LEFT; the delivery says so, the thread's session answers in it, the page shows
    the thread after that line, and the bot can open a LEFT thread too."""
    old_line = BASE_LINES.index("    response.raise_for_status()") + 1
    form = {
        "user": "maintainer",
        "body": "@threadline why does this go?",
        "path": "src/uploader.py",
        "line": old_line,
        "side": "LEFT",
    }
    opened = await rig.post("review-comment", form)
    thread = opened["thread"]
    info = rig.store.thread(thread)
    assert info is not None
    assert (info.path, info.line, info.side) == ("src/uploader.py", old_line, "LEFT")
    stored = rig.app.inbox.get(opened["delivery"]["delivery"])
    assert stored is not None
    event = normalize("local", "comment", json.loads(stored.body))
    assert isinstance(event, CommentEvent)
    assert (event.path, event.line, event.side) == ("src/uploader.py", old_line, "LEFT")
    await eventually(
        lambda: rig.replies(thread) == ["Got it, @maintainer: why does this go?"],
        "the thread's session answers in the thread on the deleted line",
    )

    # A number that is no deleted or unchanged line of the old file is refused on the left.
    await rig.post("review-comment", {**form, "line": 999}, status=422)

    # The page: the thread follows the deleted line, outside the diff's scrolling runs.
    async with rig.app.http.get(
        f"{rig.app.url}/playground", headers={**rig.auth, "Accept": "text/html"}
    ) as resp:
        page = await resp.text()
    deleted = page.index(f'data-testid="line-src/uploader.py-{old_line}-old"')
    shown = page.index(f'id="thread-{thread}"')
    assert deleted < shown
    between = page[deleted:shown]
    assert "</table>" in between
    assert 'class="threads-here"' in between
    assert "(old)" in page[shown : shown + 400]

    # The bot's review thread on a deleted line (post_review_thread with side LEFT).
    host = LocalHost(rig.store, BOT)
    pull = await host.pull_info(PULL)
    [posted] = await host.create_review(
        PULL, pull.head_sha, [DiffComment("src/uploader.py", old_line, "gone on purpose?", "LEFT")]
    )
    assert posted.thread_id is not None
    made = rig.store.thread(int(posted.thread_id))
    assert made is not None
    assert (made.line, made.side) == (old_line, "LEFT")
