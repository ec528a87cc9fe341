"""Keep secrets off pages: mask values under secret-looking keys, and scrub known secrets.

Two layers. `redact` walks JSON-like data (an agent's spec, a tool call's arguments)
and hides the value of any key that names a credential. `Scrubber` replaces every
configured secret (the settings marked secret) wherever it still appears in text
about to leave the server, whatever key or sentence it hid in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.config import SETTINGS, Settings

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
        found = {s.strip() for s in secrets if s and len(s.strip()) >= _MIN_SCRUB}
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def from_settings(cls, settings: Settings) -> Scrubber:
        values: list[str] = []
        for setting in SETTINGS:
            if setting.secret:
                value = getattr(settings, setting.attr, None)
                if isinstance(value, str):
                    values.append(value)
                    # A PEM key is also hidden line by line (its body may be quoted in part).
                    values.extend(line for line in value.splitlines() if len(line) >= 40)
        return cls(values)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text


SCRUBBER = web.AppKey("scrubber", Scrubber)


def scrub(app: web.Application, text: str) -> str:
    """`text` without any of the app's secrets (unchanged when no scrubber is installed)."""
    scrubber = app.get(SCRUBBER)
    return scrubber.text(text) if scrubber is not None else text
