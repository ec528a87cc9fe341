"""GitHub credentials: installation and fixed tokens as a client holds them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


def _epoch(timestamp: str) -> float:
    # GitHub's timestamps are ISO 8601 in UTC: 2016-07-11T22:14:10Z.
    return datetime.fromisoformat(timestamp).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Credentials(Protocol):
    refreshable: bool

    async def token(self, *, stale: str | None = None) -> str:
        """A token to send; `stale` is one GitHub just refused, so not that one again."""
        ...


class _InstallationCredentials:
    refreshable = True

    def __init__(self, app: _AppView, installation_id: int) -> None:
        self.app = app
        self.installation_id = installation_id

    async def token(self, *, stale: str | None = None) -> str:
        return await self.app.installation_token(self.installation_id, stale=stale)


class _FixedToken:
    refreshable = False  # a refused personal token stays refused

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_FixedToken(hidden)"

    async def token(self, *, stale: str | None = None) -> str:
        return self._token


class _AppView(Protocol):
    """What a client and its credentials need of the GitHubApp that made them."""

    app_id: int

    async def installation_token(
        self, installation_id: int, *, stale: str | None = None
    ) -> str: ...

    async def describe(self) -> dict[str, Any]: ...

    def permissions(self, installation_id: int) -> tuple[str, ...]: ...
