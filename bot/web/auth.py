"""Who may see the inspector: operator and viewer tokens, signed session cookies, CSRF.

Two bootstrap tokens come from settings: THREADLINE_OPERATOR_TOKEN (read, close, purge)
and the optional THREADLINE_VIEWER_TOKEN (read only). Further tokens live in the
database (`threadline tokens create`, bot/api/tokens.py), with the same two scopes and
optionally a list of repositories; they work as Bearer tokens (not for /login), and one
limited to repositories reaches only /api/v1, which filters by them. A request proves
itself with `Authorization: Bearer <token>`, or with the cookie that signing in at
/login sets.
The cookie never holds a token: it holds the role, a display name, an expiry and a
random nonce, signed with HMAC-SHA256 under a key derived from the role's token, so
changing a token signs everyone with the old one out. Every comparison of a secret is
constant-time. A POST from a cookie session carries a CSRF token derived from the
cookie's nonce (a Bearer request has no ambient authority and needs none).

Use: `install_auth(app, settings)` once (routes /login and /logout and the
middleware); `protect(app, "/playground")` to guard another prefix; or decorate one
handler with `@require(OPERATOR)`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlencode

from aiohttp import web

from bot.api.tokens import TokenInfo, TokenStore
from bot.config import Settings
from bot.web.render import VISITOR, Visitor, render

log = logging.getLogger(__name__)

VIEWER, OPERATOR = "viewer", "operator"
_RANK = {VIEWER: 1, OPERATOR: 2}

COOKIE = "threadline_session"
SESSION_SECONDS = 12 * 3600
# A wrong token costs the guesser this long; a person does not notice it.
FAILED_LOGIN_DELAY = 0.25
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

# Open to everyone: the hosts' webhooks, health checks, signing in.
DEFAULT_PROTECTED = ("/inspect", "/api/")
API_V1 = "/api/v1"

_NAME = re.compile(r"[^A-Za-z0-9_.@-]+")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """Who made a request: a role, a display name, and the cookie session's nonce
    (None when the request carried a Bearer token)."""

    role: str
    who: str
    nonce: str | None = None
    expires: int = 0
    # The repositories a database token is limited to (None: all of them).
    repos: tuple[str, ...] | None = None

    @property
    def can_act(self) -> bool:
        """May close and purge sessions."""
        return self.role == OPERATOR

    @property
    def actor(self) -> str:
        """How transcripts name this person: `operator:alice`."""
        return f"{self.role}:{self.who}"

    def at_least(self, role: str) -> bool:
        return _RANK.get(self.role, 0) >= _RANK[role]

    def may_touch(self, repo: str) -> bool:
        """Whether this principal's repository limit lets it see or act in `repo`."""
        return self.repos is None or repo in self.repos


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(token: str, purpose: bytes) -> bytes:
    return hmac.new(
        token.encode("utf-8"), b"threadline inspector " + purpose, hashlib.sha256
    ).digest()


def clean_name(text: str | None, default: str) -> str:
    """A display name fit for transcripts: letters, digits and _.@- only, at most 40."""
    name = _NAME.sub("", (text or "").strip())[:40]
    return name or default


class Keys:
    """The tokens of one process and everything derived from them."""

    def __init__(
        self,
        operator_token: str | None,
        viewer_token: str | None,
        lookup: Callable[[str], TokenInfo | None] | None = None,
    ) -> None:
        self._tokens = {OPERATOR: operator_token, VIEWER: viewer_token}
        self._lookup = lookup  # the database's tokens (TokenStore.lookup)
        self._session_keys = {
            role: _derive(token, b"session v1") for role, token in self._tokens.items() if token
        }
        self._csrf_keys = {
            role: _derive(token, b"csrf v1") for role, token in self._tokens.items() if token
        }

    @classmethod
    def from_settings(cls, settings: Settings, tokens: TokenStore | None = None) -> Keys:
        return cls(
            settings.operator_token,
            settings.viewer_token,
            tokens.lookup if tokens is not None else None,
        )

    def bearer(self, token: str) -> Principal | None:
        """Who a Bearer token is: a bootstrap token (named after its role) or a live
        database token (named as created); None for anything else, revoked included."""
        return self.bootstrap(token) or self.stored(token)

    def bootstrap(self, token: str) -> Principal | None:
        """The principal of a bootstrap token (compared in memory, no I/O), or None."""
        role = self.role_for(token)
        return Principal(role, role) if role is not None else None

    def stored(self, token: str) -> Principal | None:
        """The principal of a live database token (one indexed query by the token's
        hash; not cached, so a revoked token is refused from its next request), or None."""
        found = self._lookup(token) if self._lookup is not None else None
        if found is None or found.scope not in _RANK:
            return None
        return Principal(found.scope, found.name, repos=found.repos)

    @property
    def configured(self) -> bool:
        return bool(self._session_keys)

    def role_for(self, token: str) -> str | None:
        """The role `token` grants, or None; both tokens are always compared."""
        given = token.encode("utf-8")
        found = None
        for role in (VIEWER, OPERATOR):  # operator last: the same token grants operator
            known = self._tokens[role]
            if known is not None and hmac.compare_digest(given, known.encode("utf-8")):
                found = role
        return found

    def issue(self, role: str, who: str, *, now: float | None = None) -> tuple[str, Principal]:
        """A signed cookie value for a new session of `role`, and its principal."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(18)
        payload = _b64(
            json.dumps(
                {"r": role, "w": who, "e": expires, "n": nonce}, separators=(",", ":")
            ).encode()
        )
        signature = _b64(
            hmac.new(self._session_keys[role], payload.encode(), hashlib.sha256).digest()
        )
        return f"{payload}.{signature}", Principal(role, who, nonce, expires)

    def verify(self, value: str, *, now: float | None = None) -> Principal | None:
        """The principal of a cookie value, or None when it is forged, stale or its token
        has changed."""
        payload, dot, signature = value.rpartition(".")
        if not dot or len(value) > 1024:
            return None
        try:
            claims = json.loads(_unb64(payload))
            given = _unb64(signature)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        role, who, expires, nonce = (claims.get(k) for k in ("r", "w", "e", "n"))
        key = self._session_keys.get(role) if isinstance(role, str) else None
        if key is None:
            return None
        expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            return None
        if not (
            isinstance(role, str)
            and isinstance(who, str)
            and isinstance(expires, int)
            and isinstance(nonce, str)
        ):
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return Principal(role, who, nonce, expires)

    def csrf(self, principal: Principal) -> str:
        if principal.nonce is None or principal.role not in self._csrf_keys:
            return ""
        key = self._csrf_keys[principal.role]
        return _b64(hmac.new(key, principal.nonce.encode(), hashlib.sha256).digest())

    def csrf_ok(self, principal: Principal, given: str | None) -> bool:
        if principal.nonce is None:
            return True  # a Bearer request: nothing ambient to forge
        expected = self.csrf(principal)
        return bool(given) and bool(expected) and hmac.compare_digest(given or "", expected)


KEYS = web.AppKey("auth_keys", Keys)
PROTECTED = web.AppKey("auth_protected", list[str])
_PRINCIPAL = web.RequestKey("threadline_principal", Principal)
_NOBODY = Principal("", "")  # remembered on a request that proved nothing


# ------------------------------------------------------------------ reading a request


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request: web.Request) -> Principal | None:
    """Who `request` comes from (Bearer token first, then the cookie), or None."""
    if _PRINCIPAL in request:
        known = request[_PRINCIPAL]
        return None if known is _NOBODY else known
    keys = request.app[KEYS]
    principal = None
    token = _bearer(request)
    if token is not None:
        principal = keys.bearer(token)
    elif COOKIE in request.cookies:
        principal = keys.verify(request.cookies[COOKIE])
    request[_PRINCIPAL] = principal or _NOBODY
    return principal


def principal_of(request: web.Request) -> Principal | None:
    """Who is signed in, for pages that show it; None when nobody (or no auth installed)."""
    if KEYS not in request.app:
        return None
    return authenticate(request)


def _visitor(request: web.Request) -> Visitor:
    """The page context's view of who is signed in (bot.web.render.VISITOR)."""
    found = principal_of(request)
    return Visitor(found, request.app[KEYS].csrf(found) if found is not None else "")


def csrf_token(request: web.Request) -> str:
    """The CSRF value for forms on this page (empty without a cookie session)."""
    found = principal_of(request)
    return request.app[KEYS].csrf(found) if found is not None else ""


async def check_csrf(request: web.Request, principal: Principal) -> bool:
    """Does this POST carry the CSRF token of its cookie session (form field or header)?"""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return request.app[KEYS].csrf_ok(principal, given)


def _wants_json(request: web.Request) -> bool:
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


# Where sign-in sends the browser when `next` is missing or not a path on this site.
HOME = "/"
_UNQUOTE_ROUNDS = 4  # enough for any real link; more layers are refused outright


def _bad_char(ch: str) -> bool:
    """Whitespace or a control character (C0, DEL, C1, line and paragraph separators):
    browsers drop tabs and newlines from URLs, so `/%09/evil.example` becomes `//evil...`."""
    return ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029"


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else HOME.

    A path here starts with one `/` (not `//` or `/\\`, which browsers read as another
    host), holds no backslash, whitespace or control character, and stays so after
    percent-decoding (repeatedly: `%2509` is a tab after two rounds)."""
    if not target:
        return HOME
    text = target
    for _ in range(_UNQUOTE_ROUNDS):
        if not text.startswith("/") or text.startswith("//") or "\\" in text:
            return HOME
        if any(_bad_char(ch) for ch in text):
            return HOME
        decoded = unquote(text)
        if decoded == text:
            return target
        text = decoded
    return HOME


def json_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error as JSON: {"error": {"code", "message"}} under /api/v1 (its one error
    shape), {"error": message} on the older /api routes."""
    body: dict[str, object] = {"error": message}
    if _under(request.path, (API_V1,)):
        body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def refuse(request: web.Request, principal: Principal | None) -> web.StreamResponse:
    """401 JSON (API), a redirect to /login (pages), or 403 when signed in but not allowed."""
    if principal is not None:
        if _wants_json(request):
            return json_error(request, 403, "forbidden", "this needs the operator role")
        return web.Response(
            status=403, text="Forbidden: this needs the operator role.", content_type="text/plain"
        )
    if _wants_json(request):
        return json_error(
            request,
            401,
            "unauthorized",
            "authentication required: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="threadline"'},
        )
    return see_other(f"/login?{urlencode({'next': request.path_qs})}")


def see_other(location: str) -> web.Response:
    """A 303 to `location` (returned, not raised, so a cookie can go with it)."""
    return web.Response(status=303, headers={"Location": location})


# ------------------------------------------------------------------ guarding routes


async def _resolve_bearer(request: web.Request) -> None:
    """Settle a Bearer token's principal; `authenticate` then finds it remembered on the
    request. A bootstrap token is settled in memory; a database token is one query, run
    off the event loop (the hop is skipped for the bootstrap tokens: under load, a wait
    for a free thread costs more than the comparison)."""
    token = _bearer(request)
    if token is not None and _PRINCIPAL not in request:
        keys = request.app[KEYS]
        principal = keys.bootstrap(token) or await asyncio.to_thread(keys.stored, token)
        request[_PRINCIPAL] = principal or _NOBODY


# The form fields a page's POST carries that say which page it came from (the pages send
# no Referer): the playground's pull request and the person written as.
_PAGE_FIELDS = (("pr", "pr"), ("user", "as"))


def form_page(path: str, form: Mapping[str, str], is_page: Callable[[str], bool]) -> str:
    """The page a form posted to `path` was on: the nearest parent path that `is_page`
    (`/playground/comment` -> `/playground`, `/inspect/sessions/X/close` ->
    `/inspect/sessions/X`), with the form's page fields as the query. Never the POST-only
    path itself, where sign-in's redirect would end in 405."""
    parent = path.rstrip("/")
    while parent:
        parent = parent.rpartition("/")[0]
        if parent and is_page(parent):
            break
    parent = parent or HOME
    query = {name: form[field] for field, name in _PAGE_FIELDS if form.get(field)}
    return safe_next(f"{parent}?{urlencode(query)}" if query else parent)


_PAGES = web.RequestKey("threadline_form_pages", frozenset[str])


async def _gets(app: web.Application, request: web.Request) -> frozenset[str]:
    """The parent paths of `request` that answer GET in `app` (settled once a request:
    the middleware's guard and a handler's may both ask, and only the first may clone)."""
    if _PAGES in request:
        return request[_PAGES]
    found: set[str] = set()
    parent = request.path.rstrip("/")
    while parent:
        parent = parent.rpartition("/")[0]
        if parent:
            try:
                probe = request.clone(method="GET", rel_url=parent)
            except RuntimeError:  # the body was read already: sign-in then goes home
                break
            match = await app.router.resolve(probe)
            if match.http_exception is None:
                found.add(parent)
    request[_PAGES] = frozenset(found)
    return request[_PAGES]


async def _form_of(request: web.Request) -> dict[str, str]:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {}
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _form_not_taken(
    request: web.Request, pages: frozenset[str], *, signed_in: bool
) -> web.Response:
    """The answer to a page's form that cannot be taken (signed out, or a stale CSRF
    value): a page that says so, keeps what was written (shown, and put back into the
    form by the page's script after signing in), and signs in towards the form's page."""
    form = await _form_of(request)
    draft = form.get("body", "").strip()
    return _login_page(
        request,
        status=403 if signed_in else 401,
        next_page=form_page(request.path, form, pages.__contains__),
        draft=draft,
        expired=not signed_in,
        stale=signed_in,
    )


async def _guard(request: web.Request, role: str) -> web.StreamResponse | None:
    """None when the request may go on (a POST must also carry its CSRF token)."""
    await _resolve_bearer(request)
    principal = authenticate(request)
    posted = request.method not in ("GET", "HEAD", "OPTIONS")
    # A page's form that may not be taken is answered with a page towards the form's
    # page; which parents are pages is settled now, before the body is read (a request
    # cannot be cloned after). A few route lookups, no I/O.
    pages = (
        await _gets(request.app, request)
        if posted and not _wants_json(request)
        else frozenset[str]()
    )
    if principal is None and posted and not _wants_json(request):
        return await _form_not_taken(request, pages, signed_in=False)
    if principal is None or not principal.at_least(role):
        return refuse(request, principal)
    if principal.repos is not None and not _under(request.path, (API_V1,)):
        # The inspector's pages and old routes do not filter by repository.
        return json_error(
            request, 403, "forbidden", f"this token is limited to repositories: use {API_V1}"
        )
    if posted and not await check_csrf(request, principal):
        if _wants_json(request):
            return json_error(request, 403, "csrf", "missing or wrong CSRF token")
        return await _form_not_taken(request, pages, signed_in=True)
    return None


def require(role: str) -> Callable[[Handler], Handler]:
    """Decorate a handler so only `role` (or higher) reaches it; POSTs need CSRF too."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = await _guard(request, role)
            return refused if refused is not None else await handler(request)

        return guarded

    return wrap


def protect(app: web.Application, *prefixes: str) -> None:
    """Require a viewer (or operator) for every path under `prefixes` (before the app starts)."""
    app[PROTECTED].extend(p for p in prefixes if p not in app[PROTECTED])


def _under(path: str, prefixes: Iterable[str]) -> bool:
    for prefix in prefixes:
        bare = prefix.rstrip("/")
        if path == bare or path.startswith(bare + "/"):
            return True
    return False


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Protected prefixes need at least a viewer; a POST there needs its CSRF token."""
    prefixes: list[str] = request.app[PROTECTED]
    if _under(request.path, prefixes):
        refused = await _guard(request, VIEWER)
        if refused is not None:
            return refused
    return await handler(request)


# ------------------------------------------------------------------ signing in and out


def _set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


async def _sign_in(request: web.Request, token: str, name: str | None) -> Principal | None:
    keys = request.app[KEYS]
    role = keys.role_for(token)
    if role is None:
        log.warning("failed sign-in to the inspector from %s", request.remote)
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return None
    return Principal(role, clean_name(name, role))


def _login_page(
    request: web.Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_page: str | None = None,
    draft: str = "",
    expired: bool = False,
    stale: bool = False,
) -> web.Response:
    return render(
        request,
        "login.html",
        status=status,
        error=error,
        next=next_page or safe_next(request.query.get("next")),
        configured=request.app[KEYS].configured,
        draft=draft,
        expired=expired,
        stale=stale,
    )


async def login_status(request: web.Request) -> web.StreamResponse:
    """Whether this browser is still signed in, for open pages that check now and then
    (200 with the role, or 401): a page whose sign-in ended says so instead of going
    quiet."""
    await _resolve_bearer(request)
    principal = authenticate(request)
    if principal is None:
        return web.json_response({"signedIn": False}, status=401)
    return web.json_response({"signedIn": True, "role": principal.role, "who": principal.who})


async def login_get(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token")
    if token is None:
        return _login_page(request)
    principal = await _sign_in(request, token, request.query.get("name"))
    if principal is None:
        return _login_page(request, error="That token is not valid.", status=401)
    value, issued = request.app[KEYS].issue(principal.role, principal.who)
    # A page, not a redirect: the browser follows the refresh as a same-site navigation
    # (so the Strict cookie goes with it) and the token leaves the address bar.
    target = safe_next(request.query.get("next"))
    response = render(request, "signed_in.html", target=target, principal=issued)
    _set_cookie(request, response, value)
    return response


async def login_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token, name, target = (form.get(k) for k in ("token", "name", "next"))
    if not isinstance(token, str) or not token:
        return _login_page(request, error="Enter a token.", status=400)
    principal = await _sign_in(request, token, name if isinstance(name, str) else None)
    if principal is None:
        return _login_page(request, error="That token is not valid.", status=401)
    value, _ = request.app[KEYS].issue(principal.role, principal.who)
    response = see_other(safe_next(target if isinstance(target, str) else None))
    _set_cookie(request, response, value)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """Forget the cookie. (A forged sign-out does no harm, so no CSRF check.)"""
    response = see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def install_auth(
    app: web.Application,
    settings: Settings,
    protected: Iterable[str] = DEFAULT_PROTECTED,
    *,
    tokens: TokenStore | None = None,
) -> None:
    """Add the middleware and the /login and /logout routes; protect `protected`.
    With `tokens`, the database's API tokens are accepted as Bearer tokens too."""
    app[KEYS] = Keys.from_settings(settings, tokens)
    app[PROTECTED] = list(protected)
    app[VISITOR] = _visitor
    app.middlewares.append(auth_middleware)
    app.router.add_get("/login", login_get)
    app.router.add_get("/login/status", login_status)
    app.router.add_post("/login", login_post)
    app.router.add_get("/logout", logout)
    app.router.add_post("/logout", logout)
