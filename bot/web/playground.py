"""The playground pages: small pull request conversations served from our own database.

`GET /playground` shows pull request #1 of `playground/demo` (`?pr=N` another one, such
as those an approval opened; the page lists them all): its diff (click a line
number to open a review thread), the conversation with reactions and edit marks,
review threads with reply boxes, reviews and commit statuses. People write as a user
they pick (maintainer or outsider). Every write goes two ways, as on a real host: into
the playground's tables, and as a signed delivery into the same ingress the hosts use
(verify -> store in the inbox -> answer), so the workers, handlers, sessions and outbox
treat it like any other. The bot answers through `LocalHost` (bot/hosts/local.py).

The page polls `GET /playground/state?pr=N&v=<version>`; the answer carries the new HTML of
its live parts (conversation, files) only when the pull request changed, so the 👀 reaction and the status comment's edits show
up without a reload. The routes exist only with THREADLINE_PLAYGROUND on, behind the
inspector's sign-in; writing needs the operator role. Its repositories are served over
git at /git (bot/web/playground_git.py), which checks a password of its own instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import Engine

from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts.local_seed import DEMO_PULL, DEMO_REPO, MAINTAINER
from bot.hosts.local_store import (
    CommentInfo,
    PlaygroundError,
    PlaygroundStore,
    PullInfoRow,
    ThreadInfo,
    UserInfo,
    pull_url,
)
from bot.ingress.verify import sign_local
from bot.web.auth import OPERATOR, protect, require, see_other
from bot.web.playground_git import install_playground_git
from bot.web.playground_view import REVIEW_STATES, view_model
from bot.web.playground_view import render_body as render_body
from bot.web.redact import SCRUBBER
from bot.web.render import FEATURES, render, render_text
from bot.web.run_token import login_link

log = logging.getLogger(__name__)

Ingest = Callable[[web.Application, Mapping[str, str], bytes], Awaitable[web.Response]]

MAX_BODY_CHARS = 65536  # GitHub's limit for a comment body
LIVE_PARTS = ("conversation", "files")  # the parts of the page that refresh themselves


@dataclass
class Playground:
    """The playground of one web app: its store, and the secret settled at startup."""

    store: PlaygroundStore
    bot_login: str
    ingest: Ingest
    configured_secret: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    repo: str = DEMO_REPO


PLAYGROUND = web.AppKey("playground", Playground)


def install_playground(
    app: web.Application, settings: Settings, engine: Engine, *, ingest: Ingest
) -> None:
    """Add the /playground routes (guarded like the inspector) and seed on startup.

    Call after `install_auth`; `ingest` stores a delivery the way /webhooks/local does.
    """
    app[PLAYGROUND] = Playground(
        PlaygroundStore(engine),
        settings.bot_names[0],
        ingest,
        configured_secret=settings.playground_secret,
    )
    protect(app, "/playground")
    features: dict[str, bool] = {}
    if FEATURES in app:  # other parts may have set theirs already
        features = app[FEATURES]
    app[FEATURES] = {**features, "playground": True}

    async def prepare(app: web.Application) -> None:
        playground = app[PLAYGROUND]
        playground.secret = await asyncio.to_thread(
            playground.store.prepare, playground.bot_login, playground.configured_secret
        )
        if SCRUBBER in app:  # a generated secret is as secret as a configured one
            app[SCRUBBER].add(playground.secret)

    app.on_startup.append(prepare)
    app.router.add_get("/playground", page)
    app.router.add_get("/playground/state", state)
    app.router.add_post("/playground/comment", post_comment)
    app.router.add_post("/playground/review-comment", post_review_comment)
    app.router.add_post("/playground/review-reply", post_review_reply)
    app.router.add_post("/playground/edit", post_edit)
    app.router.add_post("/playground/delete", post_delete)
    app.router.add_post("/playground/review", post_review)
    install_playground_git(
        app,
        app[PLAYGROUND].store,
        Path(settings.workspace_dir) / "playground",
        lambda: app[PLAYGROUND].secret,
    )


def playground_link(url: str, token: str | None) -> str:
    """Where to open the playground: through sign-in when this run made its own token."""
    if token is None:
        return f"{url}/playground"
    return f"{login_link(url, token)}&{urlencode({'next': '/playground'})}"


# ---------------------------------------------------------------- deliveries


def signed_delivery(
    event: str, payload: dict[str, Any], secret: str
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one playground delivery, signed as /webhooks/local checks."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "threadline-playground",
        "X-Threadline-Event": event,
        "X-Threadline-Delivery": str(uuid.uuid4()),
        "X-Threadline-Signature-256": sign_local(body, secret),
    }
    return headers, body


def comment_payload(
    action: str, comment: CommentInfo, sender: UserInfo, thread: ThreadInfo | None
) -> dict[str, Any]:
    """The `comment` event for `comment` (see bot.events.normalize_local for the shape)."""
    return {
        "action": action,
        "repository": comment.repo,
        "target": "pull",
        "number": comment.number,
        "sender": {"login": sender.login, "bot": sender.is_bot},
        "comment": {
            "id": comment.id,
            "body": comment.body,
            "url": comment.url,
            "thread": comment.thread_id,
            "in_reply_to": comment.in_reply_to,
            "path": thread.path if thread else None,
            "line": thread.line if thread else None,
            "side": thread.side if thread else None,
        },
    }


def thread_of(comment: CommentInfo) -> ThreadRef:
    return ThreadRef(
        "local",
        comment.repo,
        "pull",
        comment.number,
        None if comment.thread_id is None else str(comment.thread_id),
    )


class Refused(Exception):
    """A playground write that cannot be done; the message says why (shown to the person)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _deliver(request: web.Request, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    playground = request.app[PLAYGROUND]
    if playground.secret is None:
        raise Refused("the playground is still starting; try again", 503)
    headers, body = signed_delivery(event, payload, playground.secret)
    answer = await playground.ingest(request.app, headers, body)
    data: dict[str, Any] = json.loads(answer.text or "{}")
    if answer.status >= 300:
        raise Refused(
            f"the comment was saved, but its delivery was refused: {data.get('error')}",
            answer.status,
        )
    return data


# ---------------------------------------------------------------- pages


def _as(request: web.Request, people: list[UserInfo]) -> str:
    wanted = request.query.get("as", MAINTAINER)
    return wanted if any(u.login == wanted for u in people) else MAINTAINER


def _pr(values: Mapping[str, str]) -> int:
    """The pull request a page or a form is about (`pr`; the seeded one when not given)."""
    raw = values.get("pr", "").strip()
    if not raw:
        return DEMO_PULL
    if not raw.isdigit() or int(raw) < 1:
        raise Refused(f"pr must be a pull request number, not {raw!r}", status=404)
    return int(raw)


def _listed(pulls: list[PullInfoRow], repo: str) -> list[dict[str, Any]]:
    return [
        {"number": p.number, "title": p.title, "state": p.state, "url": pull_url(p.number)}
        for p in pulls
        if p.repo == repo
    ]


async def _model(request: web.Request, number: int | None = None) -> dict[str, Any]:
    playground = request.app[PLAYGROUND]
    if number is None:
        try:
            number = _pr(request.query)
        except Refused as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
    # The version first: a change made after it is read (a status comment's edit lands at
    # any time) then shows as a newer version at the page's next poll. Read after the
    # conversation, it could name a change the conversation did not have yet, and the
    # page would keep the old text with a version that never moves again.
    version = await asyncio.to_thread(playground.store.version, playground.repo, number)
    conversation = await asyncio.to_thread(playground.store.conversation, playground.repo, number)
    if conversation is None and number != DEMO_PULL:
        raise web.HTTPNotFound(text=f"the playground has no pull request #{number}")
    if conversation is None:
        raise web.HTTPServiceUnavailable(text="the playground is still being set up; reload")
    pulls = await asyncio.to_thread(playground.store.pulls)
    model = view_model(conversation)
    return {
        **model,
        "version": version,
        "as_user": _as(request, model["people"]),
        "pulls": _listed(pulls, playground.repo),
    }


async def page(request: web.Request) -> web.StreamResponse:
    return render(request, "playground.html", **await _model(request), error=None, draft="")


async def state(request: web.Request) -> web.StreamResponse:
    """The live part of the page, only when it changed since version `v`."""
    playground = request.app[PLAYGROUND]
    try:
        number = _pr(request.query)
    except Refused as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    version = await asyncio.to_thread(playground.store.version, playground.repo, number)
    if request.query.get("v") == version:
        return web.json_response({"version": version, "changed": False})
    model = await _model(request, number)
    parts = {part: render_text(request, f"playground_{part}.html", **model) for part in LIVE_PARTS}
    return web.json_response({"version": model["version"], "changed": True, "parts": parts})


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


async def _person(request: web.Request, form: Mapping[str, str]) -> UserInfo:
    login = form.get("user", "")
    user = await asyncio.to_thread(request.app[PLAYGROUND].store.user, login)
    if user is None or user.is_bot:
        raise Refused(f"pick a playground user to write as (not {login!r})")
    return user


def _text(form: Mapping[str, str], name: str = "body") -> str:
    text = form.get(name, "").replace("\r\n", "\n").strip()
    if not text:
        raise Refused("write something first")
    if len(text) > MAX_BODY_CHARS:
        raise Refused(f"a comment holds at most {MAX_BODY_CHARS} characters")
    return text


def _number(form: Mapping[str, str], name: str) -> int:
    try:
        return int(form.get(name, ""))
    except ValueError:
        raise Refused(f"{name} must be a number") from None


async def _answer(
    request: web.Request,
    form: Mapping[str, str],
    act: Callable[[], Awaitable[dict[str, Any]]],
) -> web.StreamResponse:
    """Run one write; answer JSON, or send the browser back to the page (or show why not)."""
    try:
        done = await act()
    except (Refused, PlaygroundError) as exc:
        status = exc.status
        if _wants_json(request):
            return web.json_response({"error": str(exc)}, status=status)
        try:
            number = _pr(form)
        except Refused:
            number = DEMO_PULL
        model = await _model(request, number)
        return render(
            request,
            "playground.html",
            status=status,
            **model,
            error=str(exc),
            draft=form.get("body", ""),
        )
    if _wants_json(request):
        return web.json_response(done, status=201)
    anchor = f"#comment-{done['comment']}" if "comment" in done else ""
    query = {"as": form.get("user", MAINTAINER)}
    if done.get("pr", DEMO_PULL) != DEMO_PULL:
        query["pr"] = str(done["pr"])
    return see_other(f"/playground?{urlencode(query)}{anchor}")


@require(OPERATOR)
async def post_comment(request: web.Request) -> web.StreamResponse:
    """A comment in the pull request's conversation."""
    form = await _form(request)

    async def act() -> dict[str, Any]:
        playground = request.app[PLAYGROUND]
        user, body, number = await _person(request, form), _text(form), _pr(form)
        made = await asyncio.to_thread(
            playground.store.add_comment, playground.repo, number, user.login, body
        )
        delivery = await _deliver(request, "comment", comment_payload("created", made, user, None))
        return {"comment": made.id, "delivery": delivery, "pr": number}

    return await _answer(request, form, act)


@require(OPERATOR)
async def post_review_comment(request: web.Request) -> web.StreamResponse:
    """A new review thread on one line of the diff, with its first comment."""
    form = await _form(request)

    async def act() -> dict[str, Any]:
        playground = request.app[PLAYGROUND]
        user, body, number = await _person(request, form), _text(form), _pr(form)
        line, side = _number(form, "line"), form.get("side", "RIGHT")
        thread, made = await asyncio.to_thread(
            lambda: playground.store.open_thread(
                playground.repo,
                number,
                user.login,
                path=form.get("path", ""),
                line=line,
                body=body,
                side=side,
            )
        )
        payload = comment_payload("created", made, user, thread)
        delivery = await _deliver(request, "comment", payload)
        return {"comment": made.id, "thread": thread.id, "delivery": delivery, "pr": number}

    return await _answer(request, form, act)


@require(OPERATOR)
async def post_review_reply(request: web.Request) -> web.StreamResponse:
    """A reply in an existing review thread."""
    form = await _form(request)

    async def act() -> dict[str, Any]:
        playground = request.app[PLAYGROUND]
        user, body, number = await _person(request, form), _text(form), _pr(form)
        thread_id = _number(form, "thread")
        made = await asyncio.to_thread(
            lambda: playground.store.add_comment(
                playground.repo, number, user.login, body, thread_id=thread_id
            )
        )
        thread = await asyncio.to_thread(playground.store.thread, thread_id)
        payload = comment_payload("created", made, user, thread)
        delivery = await _deliver(request, "comment", payload)
        return {"comment": made.id, "thread": thread_id, "delivery": delivery, "pr": number}

    return await _answer(request, form, act)


async def _change(request: web.Request, form: Mapping[str, str], action: str) -> dict[str, Any]:
    playground = request.app[PLAYGROUND]
    user = await _person(request, form)
    comment_id = _number(form, "comment")
    if action == "edited":
        body = _text(form)
        changed = await asyncio.to_thread(
            lambda: playground.store.edit_comment(comment_id, body, by=user.login)
        )
    else:
        changed = await asyncio.to_thread(
            lambda: playground.store.delete_comment(comment_id, by=user.login)
        )
    thread = (
        None
        if changed.thread_id is None
        else await asyncio.to_thread(playground.store.thread, changed.thread_id)
    )
    delivery = await _deliver(request, "comment", comment_payload(action, changed, user, thread))
    return {"comment": changed.id, "delivery": delivery, "pr": changed.number}


@require(OPERATOR)
async def post_edit(request: web.Request) -> web.StreamResponse:
    """Edit one's own comment (a queued input changes with it)."""
    form = await _form(request)
    return await _answer(request, form, lambda: _change(request, form, "edited"))


@require(OPERATOR)
async def post_delete(request: web.Request) -> web.StreamResponse:
    """Delete one's own comment (a queued input is taken back)."""
    form = await _form(request)
    return await _answer(request, form, lambda: _change(request, form, "deleted"))


@require(OPERATOR)
async def post_review(request: web.Request) -> web.StreamResponse:
    """Approve the pull request, or request changes."""
    form = await _form(request)

    async def act() -> dict[str, Any]:
        playground = request.app[PLAYGROUND]
        user = await _person(request, form)
        wanted = form.get("state", "")
        if wanted not in REVIEW_STATES:
            raise Refused(f"a review is approved or changes_requested, not {wanted!r}")
        body = form.get("body", "").strip()[:MAX_BODY_CHARS]
        number = _pr(form)
        pull = await asyncio.to_thread(playground.store.pull, playground.repo, number)
        if pull is None:
            raise Refused(f"the playground has no pull request #{number}", status=404)
        review, _ = await asyncio.to_thread(
            lambda: playground.store.create_review(
                playground.repo,
                number,
                user.login,
                state=wanted,
                body=body,
                commit_sha=pull.head_sha,
            )
        )
        payload = {
            "action": "submitted",
            "repository": playground.repo,
            "target": "pull",
            "number": number,
            "sender": {"login": user.login, "bot": False},
            "review": {
                "id": review.id,
                "state": review.state,
                "body": review.body,
                "commit_id": review.commit_sha,
            },
        }
        delivery = await _deliver(request, "review", payload)
        return {"review": review.id, "delivery": delivery, "pr": number}

    return await _answer(request, form, act)
