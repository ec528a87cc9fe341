"""Registering a GitHub App from a manifest: the parts of the flow that are not pages.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest

1. The browser posts a `manifest` field (app.yml's name, events and permissions, plus our
   webhook and redirect URLs) to WEB/settings/apps/new?state=S, or to
   WEB/organizations/ORG/settings/apps/new; the person names the App and creates it.
2. GitHub sends the browser to the manifest's redirect_url with a one-time `code` and S.
3. POST /app-manifests/{code}/conversions (no authentication; the code lasts an hour)
   answers with the App's id, slug, html_url, private key (`pem`), `webhook_secret`,
   `client_id` and `client_secret`.

Here: the manifest and the URLs (pure), the pending states (one use, 10 minutes, in this
process's memory), the conversion call, and saving what Threadline needs (id, webhook
secret, key) to the env file. The client id and secret are not kept: Threadline does
not sign users in through the App (GitHub can make a new client secret at any time).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import yaml

from bot.config import PREFIX, ConfigError, load_settings
from bot.doctor import GITHUB_PERMISSIONS
from bot.envfile import env_key, merge_env, write_private
from bot.hosts.github import ACCEPT_JSON, Transport

STATE_SECONDS = 600
MAX_PENDING_STATES = 256

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


class SetupError(Exception):
    """A set-up step failed; the message is safe to show (it holds no secret)."""


# ---------------------------------------------------------------- the manifest (pure)


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
    """The manifest to register: app.yml's events and permissions, our URLs."""
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
            self._issued.popitem(last=False)  # the oldest pending form stops working
        state = secrets.token_urlsafe(24)
        self._issued[state] = self.clock()
        return state

    def take(self, state: str) -> float | None:
        """When `state` was issued, if it is pending and fresh; it is pending no longer."""
        issued = self._issued.pop(state, None)
        if issued is None or self.clock() - issued > self.ttl:
            return None
        return issued

    def give_back(self, state: str, issued: float) -> None:
        """Make a taken state usable again (the step after it failed, and may be retried)."""
        self._issued[state] = issued

    def _prune(self) -> None:
        now = self.clock()
        for state, issued in list(self._issued.items()):
            if now - issued > self.ttl:
                del self._issued[state]


# ---------------------------------------------------------------- GitHub's answer


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
        if not isinstance(pem, str) or not pem.startswith("-----BEGIN"):
            raise SetupError("GitHub's answer has no private key")
        if "PRIVATE KEY-----" not in pem:
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


async def convert_code(
    http: aiohttp.ClientSession, *, api_url: str, code: str, timeout_seconds: float
) -> NewApp:
    """Trade the flow's code for the App's credentials (HostError when GitHub refuses).

    Messages name the path with `{code}` unfilled: until it is used, the code is as good
    as the key. A failure is mapped by bot.hosts.github like any other call there.
    """
    transport = Transport(http, api_url=api_url, timeout=timeout_seconds, clock=time.time)
    url = "/app-manifests/{code}/conversions"
    answer = await transport.call(
        "POST",
        url,
        lambda api: api.post(url, {"code": code}, data=b"", accept=ACCEPT_JSON),
        token=None,
        write=True,
    )
    return NewApp.from_answer(answer)


# ---------------------------------------------------------------- saving


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


# One writer of env files at a time in this process (two callbacks at once).
_WRITE_LOCK = threading.Lock()


def _write_key_file(folder: Path, app_id: int, pem: str) -> Path:
    """Write the key beside the env file under a name no existing file has."""
    for n in range(1, 100):
        suffix = "" if n == 1 else f"-{n}"
        path = folder / f"github-app-{app_id}{suffix}.private-key.pem"
        try:
            write_private(path, pem, replace=False)
        except FileExistsError:
            continue
        return path
    raise SetupError(f"too many github-app-{app_id}*.private-key.pem files in {folder}")


def save_app(new: NewApp, env_file: Path, environ: Mapping[str, str]) -> Saved:
    """Write the key file, then merge the variables into the env file; read it back.

    An inline THREADLINE_GITHUB_PRIVATE_KEY in the file goes (the loader refuses it
    beside _PATH). Blocking: run it in a thread."""
    with _WRITE_LOCK:
        try:
            old = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"cannot read {env_file}: {type(exc).__name__}") from exc
        present = {env_key(line) for line in old.splitlines()}
        updates: dict[str, str | None] = {APP_ID_VAR: str(new.id)}
        if new.webhook_secret is not None:
            updates[WEBHOOK_SECRET_VAR] = new.webhook_secret
        try:
            key_file = _write_key_file(env_file.parent, new.id, new.pem)
        except OSError as exc:
            raise SetupError(
                f"cannot write the key file beside {env_file}: {exc.strerror}"
            ) from exc
        updates[KEY_PATH_VAR] = str(key_file)
        removed = (INLINE_KEY_VAR,) if INLINE_KEY_VAR in present else ()
        updates.update(dict.fromkeys(removed))
        try:
            text = merge_env(old, updates, note="Written by the GitHub App set-up page")
            write_private(env_file, text, replace=True)
        except (OSError, ValueError) as exc:
            key_file.unlink(missing_ok=True)
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise SetupError(f"cannot write {env_file}: {reason}") from exc
    written = tuple(k for k, v in updates.items() if v is not None)
    overridden = tuple(k for k in (*written, INLINE_KEY_VAR) if k in environ)
    try:
        loaded = load_settings({}, env_file)
    except ConfigError as exc:
        return Saved(env_file, key_file, written, removed, overridden, None, tuple(exc.problems))
    return Saved(env_file, key_file, written, removed, overridden, loaded.github_app_id, ())
