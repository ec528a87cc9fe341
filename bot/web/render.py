"""Server-rendered pages: one Jinja2 environment and `render(request, name, **context)`.

Templates live in bot/web/templates (package data) and extend base.html. Autoescaping
is on for every template, so a value from a transcript or a webhook can never become
markup; `|pretty`, `|when`, `|iso` and `|href` (only http(s) or local
link targets) are the filters the pages share.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

# Which optional parts of the site are on (e.g. {"playground": True, "setup": True}):
# the nav shows their links. Whoever enables a part sets its flag on the app; a page
# can also pass `features=` to render() to override.
FEATURES = web.AppKey("features", dict[str, bool])


@dataclass(frozen=True)
class Visitor:
    """Who is signed in on a page (None: nobody) and the CSRF value for its forms."""

    principal: Any
    csrf: str


# How a page learns who is looking at it. bot.web.auth sets it when it installs sign-in;
# without it every page renders as for nobody. (A hook, not an import: auth renders its
# own pages through this module.)
VISITOR: web.AppKey[Callable[[web.Request], Visitor]] = web.AppKey("visitor")

# Every page: no caching of what may be private, no framing, no referrer leaks (the
# /login?token= link must not travel on in a Referer header).
PAGE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'",
}


def _pretty(value: Any) -> str:
    """JSON, indented, for a <pre> block (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _when(value: datetime | None) -> str:
    """A timestamp in UTC to the second; '-' for none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def _href(value: Any) -> str:
    """A link target fit for href: http(s) or a path on this site; anything else
    (javascript:, data:) becomes '#'."""
    text = str(value or "")
    if text.startswith(("https://", "http://")) or (
        text.startswith("/") and not text.startswith("//")
    ):
        return text
    return "#"


def _dollars(micros: Any) -> str:
    """Micro-dollars as US dollars, as `sessions show` prints them."""
    return f"US$ {int(micros or 0) / 1_000_000:.6f}"


@functools.cache
def environment() -> jinja2.Environment:
    """The process's template environment, built on first use (not at import)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["href"] = _href
    env.filters["dollars"] = _dollars
    return env


def page_context(request: web.Request) -> dict[str, Any]:
    """What every page may use: who is signed in, their CSRF token, which links to show."""
    visitor = request.app[VISITOR](request) if VISITOR in request.app else Visitor(None, "")
    features: dict[str, bool] = request.app.get(FEATURES, {})
    return {
        "principal": visitor.principal,
        "csrf": visitor.csrf,
        "features": dict(features),
        "path": request.path,
    }


def render_text(request: web.Request, name: str, **context: Any) -> str:
    template = environment().get_template(name)
    return template.render({**page_context(request), **context})


def render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render template `name` with `context` (plus the page context) as an HTML response.

    Any configured secret still in the page is replaced by [hidden] on the way out, by
    the app's scrubber (bot.web.redact.install_scrubber), like every other answer.
    """
    return web.Response(
        text=render_text(request, name, **context),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )
