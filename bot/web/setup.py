"""First run with a real host, from the browser: the start page, registering a GitHub App
from app.yml through GitHub's manifest flow, and trying a GitLab token.

Routes: GET / (any signed-in user), and for operators only GET /setup, GET /setup/github,
GET /setup/github/callback and POST /setup/gitlab/test (CSRF-checked by bot.web.auth).

The manifest flow, as
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
describes it:

1. /setup/github shows a form that the browser posts, with a `manifest` field (app.yml's
   name, events and permissions, plus our webhook and redirect URLs), to
   WEB/settings/apps/new?state=S (or WEB/organizations/ORG/settings/apps/new), where
   the person names the App and creates it. S is random, kept here for 10 minutes.
2. GitHub sends the browser back to the redirect URL with a one-time `code` and S.
3. The callback takes S (once), trades the code for the App's id, private key and
   webhook secret (POST /app-manifests/{code}/conversions, no authentication, the code
   lasts an hour) and saves them to the env file the settings loader reads, created
   0600, the key in a PEM file of its own, also 0600. They take effect at the next start.

Credentials are written, never shown: pages name the variables and files, nothing more.
Pending states live in this process's memory, so the callback must come back to the
process that showed the form: one web process (or sticky sessions) during set-up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import yaml
from aiohttp import web

from bot.config import DEFAULT_ENV_FILE, PREFIX, ConfigError, Settings, load_settings
from bot.doctor import GITHUB_PERMISSIONS, GITLAB_SCOPES
from bot.hosts.base import HostError
from bot.hosts.github import ACCEPT_JSON, _Transport
from bot.hosts.gitlab import GitLabClient
from bot.web.auth import OPERATOR, VIEWER, Handler, principal_of, require
from bot.web.render import FEATURES, render

log = logging.getLogger(__name__)

STATE_SECONDS = 600
MAX_PENDING_STATES = 256
GITLAB_TEST_TIMEOUT_SECONDS = 15.0

# Where app.yml is in a source checkout; an installed copy falls back to APP_DEFAULTS.
APP_YML = Path(__file__).resolve().parents[2] / "app.yml"
# app.yml's content, for an installation without the file; a test keeps the two in step.
APP_DEFAULTS: Mapping[str, Any] = {
    "name": "Threadline",
    "url": "https://github.com/threadline/threadline",
    "description": "Persistent AI agent sessions in pull request, issue and review comment threads.",
    "public": False,
    "default_events": [
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
    ],
    "default_permissions": dict(GITHUB_PERMISSIONS),
}

APP_ID_VAR = PREFIX + "GITHUB_APP_ID"
WEBHOOK_SECRET_VAR = PREFIX + "GITHUB_WEBHOOK_SECRET"
KEY_PATH_VAR = PREFIX + "GITHUB_PRIVATE_KEY_PATH"
INLINE_KEY_VAR = PREFIX + "GITHUB_PRIVATE_KEY"

# https://docs.github.com/en/apps/creating-github-apps/registering-a-github-app/registering-a-github-app
# (an App's name is at most 34 characters); organization logins: letters, digits, hyphens.
MAX_APP_NAME = 34
_ORG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SetupError(Exception):
    """A set-up step failed; the message is safe to show (it holds no secret)."""


# ---------------------------------------------------------------- pure helpers


def github_web_url(api_url: str) -> str:
    """Where people use GitHub, from the REST URL: api.github.com -> github.com,
    HOST/api/v3 (GHES) -> HOST, api.SUB.ghe.com -> SUB.ghe.com; anything else as is."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path
    if path.endswith("/api/v3"):
        path = path.removesuffix("/api/v3")
    elif host.startswith("api."):
        host = host.removeprefix("api.")
    return urlunsplit((parts.scheme, host, path, "", ""))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def registration_url(web_url: str, state: str, org: str | None = None) -> str:
    """The page a manifest is posted to: the person's own account, or an organization's."""
    where = f"/organizations/{org}" if org else ""
    return f"{web_url}{where}/settings/apps/new?{urlencode({'state': state})}"


def load_app_yml(path: Path = APP_YML) -> dict[str, Any]:
    """app.yml as a mapping; APP_DEFAULTS when the file is not there (an installed copy)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(APP_DEFAULTS)
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise SetupError(f"{path} is not a mapping")
    return loaded


def build_manifest(
    app_yml: Mapping[str, Any], public_url: str, *, name: str | None = None
) -> dict[str, Any]:
    """The manifest GitHub registers: app.yml's events and permissions, our URLs."""
    return {
        "name": name or str(app_yml.get("name") or APP_DEFAULTS["name"]),
        "url": str(app_yml.get("url") or APP_DEFAULTS["url"]),
        "description": str(app_yml.get("description") or ""),
        "hook_attributes": {"url": f"{public_url}/webhooks/github", "active": True},
        "redirect_url": f"{public_url}/setup/github/callback",
        "public": bool(app_yml.get("public", False)),
        "default_events": list(app_yml.get("default_events") or []),
        "default_permissions": dict(app_yml.get("default_permissions") or {}),
    }


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


def _env_key(line: str) -> str | None:
    """The variable a line of an env file sets, read as bot.config.parse_env_file reads it."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    key, sep, _ = stripped.removeprefix("export ").lstrip().partition("=")
    return key.strip() if sep else None


def env_value(value: str) -> str:
    """`value` written so that bot.config.parse_env_file reads back exactly `value`."""
    if "\n" in value or "\r" in value:
        raise SetupError("a value with a line break cannot go on one env file line")
    bare = value == value.strip() and not (
        len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
    )
    if bare and value:
        return value
    quote = "'" if '"' in value[:1] + value[-1:] else '"'
    return f"{quote}{value}{quote}"


def merge_env(text: str, updates: Mapping[str, str | None]) -> str:
    """`text` with each variable of `updates` set (in place where it was, else appended)
    or, for None, removed; every other line, comments included, is kept as it was."""
    for name in updates:
        if not _ENV_KEY.fullmatch(name):
            raise SetupError(f"{name!r} is not a variable name")
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        key = _env_key(line)
        if key is None or key not in updates:
            out.append(line)
            continue
        new = updates[key]
        if new is not None and key not in done:
            export = "export " if line.strip().startswith("export ") else ""
            out.append(f"{export}{key}={env_value(new)}")
        done.add(key)  # a later line would win over ours: drop it
    added = [(k, v) for k, v in updates.items() if v is not None and k not in done]
    if added:
        if out and out[-1].strip():
            out.append("")
        out.append(f"# Written by the GitHub App set-up page ({time.strftime('%Y-%m-%d %H:%M')})")
        out.extend(f"{key}={env_value(value)}" for key, value in added)
    return "\n".join(out) + "\n" if out else ""


# ---------------------------------------------------------------- files


_WRITE_LOCK = threading.Lock()


def _write_private(path: Path, data: str, *, replace: bool) -> None:
    """Write `data` to `path` through a file created 0600 (never widened, never chmod-ed
    afterwards). `replace`: swap it in atomically; else fail if `path` exists."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # FileExistsError rather than overwrite
    finally:
        temp.unlink(missing_ok=True)


def env_file_of(settings: Settings) -> Path:
    """The env file the settings loader read, or the one it reads by default (./threadline.env)."""
    return Path(settings.source_file or DEFAULT_ENV_FILE).expanduser().resolve()


def writable_problem(env_file: Path) -> str | None:
    """Why the env file (and a key file beside it) cannot be written, or None."""
    folder = env_file.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"Threadline may not create files in {folder}"
    if env_file.exists() and not os.access(env_file, os.R_OK):
        return f"Threadline may not read {env_file}"
    return None


@dataclass(frozen=True)
class NewApp:
    """What GitHub answered for the registered App (the secrets are never shown)."""

    id: int
    slug: str
    name: str
    html_url: str
    pem: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)

    @classmethod
    def from_answer(cls, answer: object) -> NewApp:
        # https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest
        if not isinstance(answer, dict):
            raise SetupError("GitHub's answer is not a JSON object")
        pem, app_id = answer.get("pem"), answer.get("id")
        if not isinstance(app_id, int) or app_id <= 0:
            raise SetupError("GitHub's answer has no App id")
        if (
            not isinstance(pem, str)
            or not pem.startswith("-----BEGIN")
            or "PRIVATE KEY-----" not in pem
        ):
            raise SetupError("GitHub's answer has no private key")
        secret = answer.get("webhook_secret")
        return cls(
            id=app_id,
            slug=str(answer.get("slug") or ""),
            name=str(answer.get("name") or answer.get("slug") or ""),
            html_url=str(answer.get("html_url") or ""),
            pem=pem if pem.endswith("\n") else pem + "\n",
            webhook_secret=secret if isinstance(secret, str) and secret else None,
        )


@dataclass(frozen=True)
class Saved:
    """Where the App's credentials went, and how the settings loader reads them now."""

    env_file: Path
    key_file: Path
    written: tuple[str, ...]
    removed: tuple[str, ...]
    overridden: tuple[str, ...]  # also set in the environment, which wins over the file
    loaded_app_id: int | None
    problems: tuple[str, ...]  # what the loader says about the file (never a value)


def _key_file_for(folder: Path, app_id: int, pem: str) -> Path:
    """Write the key beside the env file under a name no existing file has."""
    for n in range(1, 100):
        suffix = "" if n == 1 else f"-{n}"
        path = folder / f"github-app-{app_id}{suffix}.private-key.pem"
        try:
            _write_private(path, pem, replace=False)
        except FileExistsError:
            continue
        return path
    raise SetupError(f"too many github-app-{app_id}*.private-key.pem files in {folder}")


def save_app(new: NewApp, env_file: Path, environ: Mapping[str, str]) -> Saved:
    """Write the key file, then merge the variables into the env file; read it back."""
    with _WRITE_LOCK:
        try:
            old = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"cannot read {env_file}: {type(exc).__name__}") from exc
        present = {_env_key(line) for line in old.splitlines()}
        updates: dict[str, str | None] = {APP_ID_VAR: str(new.id)}
        if new.webhook_secret is not None:
            updates[WEBHOOK_SECRET_VAR] = new.webhook_secret
        try:
            key_file = _key_file_for(env_file.parent, new.id, new.pem)
        except OSError as exc:
            raise SetupError(
                f"cannot write the private key beside {env_file}: {exc.strerror}"
            ) from exc
        updates[KEY_PATH_VAR] = str(key_file)
        removed = (INLINE_KEY_VAR,) if INLINE_KEY_VAR in present else ()
        updates.update(dict.fromkeys(removed))
        try:
            _write_private(env_file, merge_env(old, updates), replace=True)
        except OSError as exc:
            key_file.unlink(missing_ok=True)
            raise SetupError(f"cannot write {env_file}: {exc.strerror}") from exc
    written = tuple(k for k, v in updates.items() if v is not None)
    overridden = tuple(k for k in (*written, INLINE_KEY_VAR) if k in environ)
    try:
        loaded = load_settings({}, env_file)
    except ConfigError as exc:
        return Saved(env_file, key_file, written, removed, overridden, None, tuple(exc.problems))
    return Saved(env_file, key_file, written, removed, overridden, loaded.github_app_id, ())


# ---------------------------------------------------------------- pending states


class PendingStates:
    """The `state` values this process handed out, each usable once within `ttl` seconds."""

    def __init__(
        self,
        *,
        ttl: float = STATE_SECONDS,
        limit: int = MAX_PENDING_STATES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._issued: OrderedDict[str, float] = OrderedDict()

    def issue(self) -> str:
        self._prune()
        while len(self._issued) >= self.limit:
            self._issued.popitem(last=False)  # the oldest pending page stops working
        state = secrets.token_urlsafe(24)
        self._issued[state] = self.clock()
        return state

    def take(self, state: str) -> float | None:
        """When `state` was issued, if it is pending and fresh; it is pending no longer."""
        self._prune()
        return self._issued.pop(state, None)

    def give_back(self, state: str, issued: float) -> None:
        """Make a taken state usable again (the step after it failed, and may be retried)."""
        self._issued[state] = issued

    def _prune(self) -> None:
        now = self.clock()
        for state, issued in list(self._issued.items()):
            if now - issued <= self.ttl:
                break
            del self._issued[state]


# ---------------------------------------------------------------- the GitHub call


async def convert_code(
    http: aiohttp.ClientSession, *, api_url: str, code: str, timeout_seconds: float
) -> NewApp:
    """Trade the manifest flow's code for the App's credentials.

    https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest: no
    authentication; the code works once, within an hour. Messages name the path with
    `{code}` unfilled: until it is used, the code is as good as the key.
    """
    transport = _Transport(http, api_url=api_url, timeout=timeout_seconds, clock=time.time)
    url = "/app-manifests/{code}/conversions"
    answer = await transport.call(
        "POST",
        url,
        lambda api: api.post(url, {"code": code}, data=b"", accept=ACCEPT_JSON),
        token=None,
        write=True,
    )
    return NewApp.from_answer(answer)


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
            f'webhook secret, and configure them as the README\'s "Connect GitHub" says.',
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
    """Try a GitLab URL and token (the form's, else the configured ones) with `whoami`."""
    setup = request.app[SETUP]
    form = await request.post()
    url = str(form.get("url") or "").strip().rstrip("/") or setup.settings.gitlab_url
    token = str(form.get("token") or "").strip() or setup.settings.gitlab_token
    context = {"tested_url": url, **_hosts_context(request)}
    if not url.startswith(("http://", "https://")):
        return render(
            request,
            "setup_gitlab.html",
            status=400,
            error="The GitLab URL must start with http:// or https://.",
            **context,
        )
    if not token:
        return render(
            request,
            "setup_gitlab.html",
            status=400,
            error="Enter a token (none is configured).",
            **context,
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
