"""GitHub authentication: App JWTs, installation tokens, fixed tokens and github_from_settings."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.config import Settings, default_github_graphql_url, github_app_key
from bot.hosts.base import (
    HostError,
    RateLimited,
    Unauthorized,
)
from bot.hosts.github.client import GitHubClient
from bot.hosts.github.credentials import _epoch, _FixedToken, _InstallationCredentials
from bot.hosts.github.transport import (
    _API,
    ACCEPT_JSON,
    DEFAULT_API_URL,
    JWT_BACKDATE_SECONDS,
    JWT_LIFETIME_SECONDS,
    PER_PAGE,
    TOKEN_REFRESH_MARGIN_SECONDS,
    Clock,
    Transport,
    _path,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- authentication


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float
    permissions: tuple[str, ...] = ()


class GitHubApp:
    """A GitHub App: signs JWTs, keeps installation tokens, hands out clients."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: int,
        private_key: str,
        api_url: str = DEFAULT_API_URL,
        graphql_url: str | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.app_id = app_id
        self._key = _load_rsa_key(private_key)
        self._transport = Transport(session, api_url=api_url, timeout=timeout, clock=clock)
        self.graphql_url = graphql_url or default_github_graphql_url(api_url)
        self._clock = clock
        self._tokens: dict[int, _Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self._transport.api_url!r})"

    def jwt(self) -> str:
        """A JWT that authenticates as the App itself (for /app endpoints)."""
        issued = int(self._clock()) - JWT_BACKDATE_SECONDS
        claims = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(self.app_id)}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def client(self, installation_id: int | None) -> GitHubClient:
        if installation_id is None:
            raise ValueError("a GitHub App acts through an installation: give its id")
        return GitHubClient(
            _InstallationCredentials(self, installation_id),
            self._transport,
            graphql_url=self.graphql_url,
            app=self,
        )

    def forget(self, installation_id: int) -> None:
        """Drop the cached token of an installation (uninstalled, suspended, revoked)."""
        self._tokens.pop(installation_id, None)

    async def installation_token(self, installation_id: int, *, stale: str | None = None) -> str:
        """A token for the installation, from the cache while it has 5 minutes left.

        Concurrent callers for one installation wait on one fetch.
        """
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and cached.value != stale and self._fresh(cached):
                return cached.value
            token = await self._fetch_token(installation_id)
            self._tokens[installation_id] = token
            return token.value

    def permissions(self, installation_id: int) -> tuple[str, ...]:
        cached = self._tokens.get(installation_id)
        return cached.permissions if cached is not None else ()

    async def describe(self) -> dict[str, Any]:
        """GET /app as the App: its slug, name and owner."""
        data = await self._transport.call(
            "GET",
            "/app",
            lambda api: api.getitem("/app", accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
        )
        if not isinstance(data, dict):
            raise HostError("GitHub GET /app: answer is not an object", retryable=True)
        return data

    async def _app_list(self, url: str, *, newest_first_until: float | None = None) -> list[Any]:
        """A paginated list as the App (JWT); with `newest_first_until`, stop at older items."""
        template = url + "{?per_page}"

        async def collect(api: _API) -> list[Any]:
            items: list[Any] = []
            pages = api.getiter(
                template, {"per_page": PER_PAGE}, accept=ACCEPT_JSON, jwt=self.jwt()
            )
            async for item in pages:
                stamp = item.get("delivered_at") if isinstance(item, dict) else None
                if newest_first_until is not None and stamp and _epoch(stamp) < newest_first_until:
                    break
                items.append(item)
            return items

        return await self._transport.call("GET", url, collect, token=None)

    async def installations(self) -> list[dict[str, Any]]:
        """The App's installations.

        https://docs.github.com/en/rest/apps/apps#list-installations-for-the-authenticated-app
        """
        return await self._app_list("/app/installations")

    async def hook_deliveries(self, *, since: float) -> list[dict[str, Any]]:
        """The App webhook's deliveries since `since` (epoch seconds), newest first.

        https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
        """
        return await self._app_list("/app/hook/deliveries", newest_first_until=since)

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a past delivery again (it keeps its X-GitHub-Delivery guid).

        https://docs.github.com/en/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook
        """
        url = "/app/hook/deliveries/{delivery_id}/attempts"
        url_vars = {"delivery_id": delivery_id}
        await self._transport.call(
            "POST",
            _path(url, url_vars),
            lambda api: api.post(url, url_vars, data=b"", accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
            write=False,  # a second redelivery is deduplicated by its guid on arrival
        )

    async def hook_delivery(self, delivery_id: int) -> dict[str, Any]:
        """One delivery of the App webhook, with the request's headers and payload.

        https://docs.github.com/en/rest/apps/webhooks#get-a-delivery-for-an-app-webhook
        """
        url = "/app/hook/deliveries/{delivery_id}"
        url_vars = {"delivery_id": delivery_id}
        data = await self._transport.call(
            "GET",
            _path(url, url_vars),
            lambda api: api.getitem(url, url_vars, accept=ACCEPT_JSON, jwt=self.jwt()),
            token=None,
        )
        if not isinstance(data, dict):
            raise HostError(f"GitHub GET {url}: answer is not an object", retryable=True)
        return data

    def _fresh(self, token: _Token) -> bool:
        return self._clock() < token.expires_at - TOKEN_REFRESH_MARGIN_SECONDS

    async def _fetch_token(self, installation_id: int) -> _Token:
        url = "/app/installations/{installation_id}/access_tokens"
        url_vars = {"installation_id": installation_id}
        try:
            data = await self._transport.call(
                "POST",
                _path(url, url_vars),
                lambda api: api.post(url, url_vars, data=b"", accept=ACCEPT_JSON, jwt=self.jwt()),
                token=None,
                write=False,  # asking twice only mints a second token
            )
        except RateLimited:
            raise
        except HostError as exc:
            if exc.status in (401, 403, 404):
                # 404: uninstalled; 403: suspended; 401: the App's key was refused.
                raise Unauthorized(
                    f"GitHub refused a token for installation {installation_id}: {exc}",
                    status=exc.status or 401,
                ) from exc
            raise
        try:
            permissions = tuple(f"{k}:{v}" for k, v in sorted(data.get("permissions", {}).items()))
            token = _Token(str(data["token"]), _epoch(str(data["expires_at"])), permissions)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise HostError(
                f"GitHub POST {_path(url, url_vars)}: malformed token answer", retryable=True
            ) from exc
        log.info("new access token for GitHub installation %s", installation_id)
        return token


class GitHubToken:
    """A fixed token (personal or fine-grained) for single-repository use."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        graphql_url: str | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self._credentials = _FixedToken(token)
        self._transport = Transport(session, api_url=api_url, timeout=timeout, clock=clock)
        self.graphql_url = graphql_url or default_github_graphql_url(api_url)

    def __repr__(self) -> str:
        return f"GitHubToken(api_url={self._transport.api_url!r})"

    def client(self, installation_id: int | None = None) -> GitHubClient:
        """The one client; an installation id (from a webhook) changes nothing."""
        return GitHubClient(self._credentials, self._transport, graphql_url=self.graphql_url)

    def forget(self, installation_id: int) -> None:
        """Nothing is cached for a fixed token."""


def github_from_settings(
    session: aiohttp.ClientSession, settings: Settings, *, clock: Clock = time.time
) -> GitHubApp | GitHubToken:
    """The App when one is configured, else the token; ValueError when neither is."""
    common: dict[str, Any] = {
        "api_url": settings.github_api_url,
        "graphql_url": settings.github_graphql_endpoint,
        "timeout": settings.host_timeout_seconds,
        "clock": clock,
    }
    if settings.github_app_id is not None and settings.github_private_key is not None:
        return GitHubApp(
            session,
            app_id=settings.github_app_id,
            private_key=settings.github_private_key,
            **common,
        )
    if settings.github_token:
        return GitHubToken(session, token=settings.github_token, **common)
    raise ValueError("GitHub needs an App (id and private key) or THREADLINE_GITHUB_TOKEN")


def _load_rsa_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        return github_app_key(pem)
    except ValueError as exc:
        raise ValueError(f"the GitHub App private key {exc}") from None


# ---------------------------------------------------------------- the client
