"""Keep secrets off pages: mask values under secret-looking keys, and scrub known secrets.

Two layers. `redact` walks JSON-like data (an agent's spec, a tool call's arguments)
and hides the value of any key that names a credential. `Scrubber` replaces every
configured secret wherever it still appears in text about to leave the server,
whatever key or sentence it hid in.

The secret list is built once per process, by `Scrubber.configured(settings, config)`:
every setting marked secret (webhook secrets, host tokens, the App's private key, the
operator and viewer tokens, the playground's secret) and every provider's API key read
through `apiKeyEnv`. The web app scrubs in one place, `install_scrubber`'s middleware,
which every finished response passes (pages, /api JSON, the playground's state and
answers, errors); the inspector's event stream, written piece by piece, passes each
message through the same scrubber, and so does the CLI's transcript output.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.config import SETTINGS, Settings

if TYPE_CHECKING:
    from bot.agents.config import Config
    from bot.web.auth import Handler

HIDDEN = "[hidden]"
# Key names whose values are credentials: api_key, apiKey, access_token, password,
# webhook_secret, private_key, authorization. Not max_tokens or tokens_in (counts).
_SECRET_KEY = re.compile(
    r"(api_?key|secret|password|passwd|token|authorization|private_?key|cookie)$"
)
# Shorter values would also match ordinary words; settings warn below 16 characters.
_MIN_SCRUB = 8


def secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name.lower().replace("-", "_")))


def redact(value: Any) -> Any:
    """`value` with every credential-named key's value replaced by [hidden]."""
    if isinstance(value, dict):
        return {
            k: (HIDDEN if isinstance(k, str) and secret_key(k) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class Scrubber:
    """Replaces known secret values in outgoing text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Also scrub `secrets` (e.g. the playground's secret, settled at startup)."""
        found = set(self.secrets)
        for secret in secrets:
            value = (secret or "").strip()
            if len(value) >= _MIN_SCRUB:
                found.update(_spellings(value))
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def from_settings(cls, settings: Settings) -> Scrubber:
        return cls.configured(settings)

    @classmethod
    def configured(cls, settings: Settings, config: Config | None = None) -> Scrubber:
        """Every configured secret: the settings marked secret, the API key of every
        provider in the agents file (read from its `apiKeyEnv` variable), and what agents'
        MCP servers get from variables (headers and environment)."""
        values: list[str] = []
        for setting in SETTINGS:
            if setting.secret:
                value = getattr(settings, setting.attr, None)
                if isinstance(value, str):
                    values.append(value)
                    # A PEM key is also hidden line by line (its body may be quoted in part).
                    values.extend(line for line in value.splitlines() if len(line) >= 40)
        if config is not None:
            values.extend(provider.api_key for provider in config.providers.values())
            for agent in config.agents.values():  # MCP servers' credentials (mcpServers)
                for server in agent.mcp_servers:
                    values.extend(server.env.values())
                    values.extend(v.removeprefix("Bearer ") for v in server.headers.values())
        return cls(values)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text


def _spellings(secret: str) -> set[str]:
    """The secret as it may appear in a page or a JSON answer: as is, HTML-escaped, and
    inside a JSON string (with and without non-ASCII escaped)."""
    found = {secret, html.escape(secret)}
    for ascii_only in (True, False):
        inner = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        found.update((inner, html.escape(inner)))
    return found


SCRUBBER = web.AppKey("scrubber", Scrubber)
# What the middleware reads back and rewrites; anything else (images, files) passes.
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")


def scrub(app: web.Application, text: str) -> str:
    """`text` without any of the app's secrets (unchanged when no scrubber is installed)."""
    scrubber = app.get(SCRUBBER)
    return scrubber.text(text) if scrubber is not None else text


def install_scrubber(app: web.Application, scrubber: Scrubber) -> None:
    """Scrub every finished response of `app` with `scrubber` (install it first, so it
    wraps every other middleware and handler)."""
    app[SCRUBBER] = scrubber
    app.middlewares.insert(0, _scrub_middleware)


@web.middleware
async def _scrub_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    scrubber = request.app[SCRUBBER]
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # raised answers carry text too
        _scrub_response(exc, scrubber)
        raise
    if isinstance(response, web.Response):
        _scrub_response(response, scrubber)
    return response


def _scrub_response(response: web.Response, scrubber: Scrubber) -> None:
    body = response.body
    if not scrubber.secrets or not isinstance(body, bytes) or not body:
        return
    if not response.content_type.startswith(_TEXT_TYPES):
        return
    charset = response.charset or "utf-8"
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return
    clean = scrubber.text(text)
    if clean != text:
        response.body = clean.encode(charset)
