"""First run with a real host, from the browser: the start page, registering a GitHub App
(bot.web.manifest has the flow), and trying a GitLab token.

Routes: GET / (anyone signed in), and for operators only GET /setup, GET /setup/github
(the form the browser posts to GitHub), GET /setup/github/callback (where GitHub sends
the browser back) and POST /setup/gitlab/test (CSRF-checked by bot.web.auth).

The registered App's credentials are written to the env file the settings loader reads
and take effect at the next start; pages name the variables and files, never a value.
Pending states live in this process's memory, so GitHub's redirect must come back to
the process that showed the form: one web process (or sticky sessions) during set-up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.doctor import GITLAB_SCOPES
from bot.envfile import env_file_of, writable_problem
from bot.hosts.base import HostError
from bot.hosts.gitlab import GitLabClient
from bot.web.auth import OPERATOR, VIEWER, Handler, principal_of, require
from bot.web.manifest import (
    APP_YML,
    STATE_SECONDS,
    PendingStates,
    SetupError,
    build_manifest,
    convert_code,
    github_web_url,
    load_app_yml,
    registration_url,
    save_app,
)
from bot.web.render import FEATURES, render

log = logging.getLogger(__name__)

GITLAB_TEST_TIMEOUT_SECONDS = 15.0
# https://docs.github.com/en/apps/creating-github-apps/registering-a-github-app/registering-a-github-app
# (an App's name is at most 34 characters); organization logins: letters, digits, hyphens.
MAX_APP_NAME = 34
_ORG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def unreachable_reason(url: str) -> str | None:
    """Why a host probably cannot deliver webhooks to `url`, or None when it may."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return "it is this machine's own name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return "it is a loopback address"
    if address.is_private or address.is_link_local or address.is_unspecified:
        return "it is a private address"
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _place(url: str) -> tuple[str, str, int, tuple[str, ...]] | None:
    """(scheme, host, port, path segments) of an http(s) URL, or None when it is not
    one we would send a token to: no user part, query, fragment or dot segments."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if parts.query or parts.fragment or "\\" in parts.path:
        return None
    segments = tuple(s for s in parts.path.split("/") if s)
    if any(s in (".", "..") or unquote(s) in (".", "..") for s in segments):
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme], segments


def within(configured: str, wanted: str) -> bool:
    """Whether `wanted` is the GitLab at `configured` (same scheme, host and port, and a
    path at or under its path), so the configured token may be sent there."""
    home, there = _place(configured), _place(wanted)
    if home is None or there is None:
        return False
    return home[:3] == there[:3] and there[3][: len(home[3])] == home[3]


# ---------------------------------------------------------------- the app's part


@dataclass
class Setup:
    """What the set-up routes share in one process."""

    settings: Settings
    app_yml: dict[str, Any]
    states: PendingStates = field(default_factory=PendingStates)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    http: aiohttp.ClientSession | None = None

    @property
    def web_url(self) -> str:
        return github_web_url(self.settings.github_api_url)

    def public_url(self, request: web.Request) -> str:
        """THREADLINE_PUBLIC_URL, else the address this page was opened at."""
        return self.settings.public_url or f"{request.scheme}://{request.host}"


SETUP = web.AppKey("setup", Setup)


def _hosts_context(request: web.Request) -> dict[str, Any]:
    """What the start page and /setup show about each host (never a secret)."""
    setup = request.app[SETUP]
    settings = setup.settings
    public = setup.public_url(request)
    if settings.github_app_id and settings.github_private_key:
        github = f"a GitHub App (id {settings.github_app_id})"
    elif settings.github_token:
        github = "a token"
    elif settings.github_webhook_secret:
        github = "webhooks only (no App or token to answer with)"
    else:
        github = None
    gitlab = (
        ("a token" + (" and a webhook secret token" if settings.gitlab_webhook_token else ""))
        if settings.gitlab_token
        else ("webhooks only (no token to answer with)" if settings.gitlab_webhook_token else None)
    )
    return {
        "public_url": public,
        "public_url_set": settings.public_url is not None,
        "unreachable": unreachable_reason(public),
        # Poll mode (bot.poll) is offered wherever GitHub cannot push (loopback included).
        "polling": f"{settings.github_poll_seconds:g}" if settings.github_poll_seconds > 0 else "",
        "github": github,
        "github_web": setup.web_url,
        "gitlab": gitlab,
        "gitlab_url": settings.gitlab_url,
        "gitlab_scopes": GITLAB_SCOPES,
        "env_file": str(env_file_of(settings)),
        # An example for GitLab's secret token field; generated per page, never kept.
        "suggested_secret": secrets.token_hex(20),
    }


async def start_page(request: web.Request) -> web.StreamResponse:
    return render(request, "start.html", **_hosts_context(request))


async def setup_page(request: web.Request) -> web.StreamResponse:
    return render(request, "setup.html", **_hosts_context(request))


async def github_page(request: web.Request) -> web.StreamResponse:
    """The registration form, with a fresh state."""
    setup = request.app[SETUP]
    org = request.query.get("org", "").strip() or None
    name = request.query.get("name", "").strip() or None
    problems = []
    if org is not None and not _ORG.fullmatch(org):
        problems.append("An organization name has letters, digits and hyphens only (at most 39).")
    if name is not None and len(name) > MAX_APP_NAME:
        problems.append(f"GitHub App names are at most {MAX_APP_NAME} characters.")
    env_file = env_file_of(setup.settings)
    blocked = writable_problem(env_file)
    if blocked:
        problems.append(f"The credentials could not be saved: {blocked}.")
    context = _hosts_context(request)
    manifest = build_manifest(setup.app_yml, context["public_url"], name=name)
    action = None
    if not problems:
        action = registration_url(setup.web_url, setup.states.issue(), org)
    response = render(
        request,
        "setup_github.html",
        status=400 if problems else 200,
        manifest=manifest,
        manifest_json=json.dumps(manifest, separators=(",", ":")),
        action=action,
        org=org or "",
        app_name=name or "",
        problems=problems,
        configured_app_id=setup.settings.github_app_id,
        **context,
    )
    # The form posts to GitHub: allow that one other target.
    csp = response.headers.get("Content-Security-Policy", "")
    response.headers["Content-Security-Policy"] = csp.replace(
        "form-action 'self'", f"form-action 'self' {origin_of(setup.web_url)}"
    )
    return response


def _error_page(
    request: web.Request, status: int, title: str, message: str, **extra: Any
) -> web.Response:
    return render(request, "setup_error.html", status=status, title=title, message=message, **extra)


async def github_callback(request: web.Request) -> web.StreamResponse:
    """GitHub sent the browser back: check the state, trade the code, save, confirm."""
    setup = request.app[SETUP]
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if not code or not state:
        return _error_page(
            request,
            400,
            "Not a GitHub App registration",
            "This address is where GitHub sends you back after registering an App; it needs "
            "the code and state GitHub adds. Start again from the set-up page.",
        )
    issued = setup.states.take(state)
    if issued is None:
        log.warning("GitHub App set-up: unknown or expired state from %s", request.remote)
        return _error_page(
            request,
            400,
            "This registration link has expired",
            f"The set-up page that sent you to GitHub was not issued by this server, was "
            f"used already, or is older than {STATE_SECONDS // 60} minutes. Nothing was "
            "saved. If GitHub did register an App, delete it in GitHub's developer "
            "settings, then start again.",
        )
    env_file = env_file_of(setup.settings)
    blocked = writable_problem(env_file)
    if blocked:
        setup.states.give_back(state, issued)  # the code is not spent yet: fix, then reload
        return _error_page(
            request,
            500,
            "The credentials cannot be saved",
            f"{blocked}. Fix that and reload this page (within an hour) to try again.",
        )
    if setup.http is None:
        raise RuntimeError("the set-up routes' HTTP session is not open")
    try:
        new = await convert_code(
            setup.http,
            api_url=setup.settings.github_api_url,
            code=code,
            timeout_seconds=setup.settings.host_timeout_seconds,
        )
    except HostError as exc:
        if exc.retryable:  # a spent code just answers 404 next time
            setup.states.give_back(state, issued)
        log.warning("GitHub App set-up: the code was not accepted: %s", exc)
        return _error_page(
            request,
            502,
            "GitHub did not hand over the App's credentials",
            _conversion_advice(exc),
            detail=str(exc),
        )
    except SetupError as exc:
        return _error_page(request, 502, "GitHub's answer was not usable", str(exc))
    try:
        saved = await asyncio.to_thread(save_app, new, env_file, setup.environ)
    except SetupError as exc:
        log.error("GitHub App %s registered, but its credentials were not saved: %s", new.id, exc)
        return _error_page(
            request,
            500,
            "The App was registered, but its credentials were not saved",
            f"{exc}. GitHub shows a private key and the webhook secret once only, so "
            f"open the App's settings on GitHub, generate a new private key and set a new "
            "webhook secret, and configure them as the README's GitHub App steps say.",
            app=new,
        )
    log.info(
        "GitHub App %s (%s) registered; credentials written to %s", new.id, new.slug, saved.env_file
    )
    return render(
        request, "setup_github_done.html", app=new, saved=saved, **_hosts_context(request)
    )


def _conversion_advice(exc: HostError) -> str:
    if exc.status == 404:
        return (
            "GitHub does not know this code: it was used already or is more than an hour "
            "old. Nothing was saved. Delete the App in GitHub's developer settings if it "
            "was registered, then start again."
        )
    if exc.retryable:
        return "GitHub did not answer in time. Nothing was saved; reload this page to try again."
    return (
        "Nothing was saved. If GitHub registered the App, its page in GitHub's developer "
        "settings lets you generate a private key and set a webhook secret by hand."
    )


async def gitlab_test(request: web.Request) -> web.StreamResponse:
    """Try a GitLab URL and token with `whoami`: the form's token at the form's URL, or
    the configured token, which is only ever sent to the configured URL."""
    setup = request.app[SETUP]
    form = await request.post()
    configured = setup.settings.gitlab_url
    url = str(form.get("url") or "").strip().rstrip("/") or configured
    typed = str(form.get("token") or "").strip()
    token = typed or setup.settings.gitlab_token
    context = {"tested_url": url, **_hosts_context(request)}

    def refuse(error: str) -> web.Response:
        return render(request, "setup_gitlab.html", status=400, error=error, **context)

    if not url.lower().startswith(("http://", "https://")):
        return refuse("The GitLab URL must start with http:// or https://.")
    if not token:
        return refuse("Enter a token (none is configured).")
    if not typed and not within(configured, url):
        # The configured token is a credential for that GitLab only: never hand it to
        # another address (a stolen token, or this server made to call anywhere).
        return refuse(
            f"The configured token is only sent to the configured GitLab ({configured}). "
            "To try another address, enter a token for it. Nothing was sent."
        )
    client = GitLabClient(
        url, token, timeout=min(setup.settings.host_timeout_seconds, GITLAB_TEST_TIMEOUT_SECONDS)
    )
    try:
        who = await client.whoami()
    except HostError as exc:
        # The adapter keeps the token out of its messages; make sure of it here too.
        return render(
            request,
            "setup_gitlab.html",
            status=200,
            error=str(exc).replace(token, "[token]"),
            **context,
        )
    finally:
        client.close()
    lacking = [s for s in GITLAB_SCOPES if who.scopes and s not in who.scopes]
    return render(request, "setup_gitlab.html", who=who, lacking=lacking, error=None, **context)


def add_setup_routes(app: web.Application, settings: Settings, *, app_yml: Path = APP_YML) -> None:
    """Register the start page and /setup/* (bot.web.auth must be installed on `app`)."""
    app[SETUP] = Setup(settings, load_app_yml(app_yml))
    if FEATURES not in app:
        app[FEATURES] = {}
    app[FEATURES]["setup"] = True

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=settings.host_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            app[SETUP].http = http
            yield
            app[SETUP].http = None

    app.cleanup_ctx.append(http_session)
    app.router.add_get("/", require(VIEWER)(start_page))
    app.router.add_get("/setup", require(OPERATOR)(setup_page))
    app.router.add_get("/setup/github", require(OPERATOR)(github_page))
    app.router.add_get(
        "/setup/github/callback", _resume_same_site(require(OPERATOR)(github_callback))
    )
    app.router.add_post("/setup/gitlab/test", require(OPERATOR)(gitlab_test))


def _resume_same_site(handler: Handler) -> Handler:
    """GitHub's redirect back is a cross-site navigation, so the browser leaves out our
    SameSite=Strict sign-in cookie. Answer a request without one with a page that loads
    the same address again from here (a same-site navigation, which carries the cookie)
    before asking anyone to sign in. Only once: `resumed=1` marks the second visit."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if "resumed" not in request.query and principal_of(request) is None:
            target = request.rel_url.update_query({"resumed": "1"})
            return render(request, "setup_resume.html", target=str(target))
        return await handler(request)

    return wrapped
