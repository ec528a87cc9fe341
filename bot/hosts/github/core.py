"""GitHub client core: credentials, transport and the _call/_get/_list/_write/_graphql helpers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.hosts.base import (
    CHECK_RUNS,
    COMMIT_STATUSES,
    REACTIONS,
    RESOLVE_THREADS,
    HostError,
    NotFound,
    Unauthorized,
)
from bot.hosts.github.credentials import _AppView, _Credentials
from bot.hosts.github.shapes import _quote_path, _split
from bot.hosts.github.transport import (
    _API,
    ACCEPT_JSON,
    PER_PAGE,
    GraphQLErrors,
    T,
    Transport,
    UrlVars,
    _path,
    fill,
)

log = logging.getLogger(__name__)


class ClientCore:
    """HostClient for one installation (or one fixed token) on github.com or GHES."""

    host = "github"

    def __init__(
        self,
        credentials: _Credentials,
        transport: Transport,
        *,
        graphql_url: str,
        app: _AppView | None = None,
    ) -> None:
        self._credentials = credentials
        self._transport = transport
        self._graphql_url = graphql_url
        self._app = app
        self._login: str | None = None  # ours, as GitHub shows it on what we write
        # Check runs can only be written by a GitHub App; a token writes commit statuses.
        # https://docs.github.com/en/rest/checks/runs
        states = CHECK_RUNS if app is not None else COMMIT_STATUSES
        self.capabilities = frozenset({RESOLVE_THREADS, REACTIONS, states})

    def __repr__(self) -> str:
        return f"GitHubClient({self._credentials.__class__.__name__}, {self._transport.api_url!r})"

    # -------------------------------------------------------------- plumbing

    async def _call(
        self,
        method: str,
        url: str,
        url_vars: UrlVars,
        action: Callable[[_API], Awaitable[T]],
        *,
        write: bool | None = None,
    ) -> T:
        path = functools.partial(_path, url, url_vars)  # for messages: only when needed
        token = await self._credentials.token()
        try:
            return await self._transport.call(method, path, action, token=token, write=write)
        except Unauthorized:
            if not self._credentials.refreshable:
                raise
            log.info(
                "GitHub refused the installation token (%s %s); fetching a new one",
                method,
                path(),
            )
        token = await self._credentials.token(stale=token)
        return await self._transport.call(method, path, action, token=token, write=write)

    async def _get(self, url: str, url_vars: UrlVars) -> Any:
        # Expanded here once; gidgethub leaves a URL without variables as it is.
        full = fill(self._transport.api_url, url, url_vars)
        return await self._call(
            "GET", url, url_vars, lambda api: api.getitem(full, accept=ACCEPT_JSON)
        )

    async def _list(self, url: str, url_vars: UrlVars, *, key: str | None = None) -> list[Any]:
        """Every item of a paginated list (per_page=100, following Link: rel="next")."""
        template = url + "{?per_page}"
        paged = {**url_vars, "per_page": PER_PAGE}

        async def collect(api: _API) -> list[Any]:
            items = api.getiter(template, paged, accept=ACCEPT_JSON, iterable_key=key)
            return [item async for item in items]

        return await self._call("GET", template, paged, collect)

    async def _write(self, method: str, url: str, url_vars: UrlVars, data: dict[str, Any]) -> Any:
        full = fill(self._transport.api_url, url, url_vars)
        if method == "POST":
            return await self._call(
                method, url, url_vars, lambda api: api.post(full, data=data, accept=ACCEPT_JSON)
            )
        return await self._call(
            method, url, url_vars, lambda api: api.patch(full, data=data, accept=ACCEPT_JSON)
        )

    async def _get_raw(
        self, url: str, url_vars: UrlVars, accept: str
    ) -> tuple[Mapping[str, str], bytes]:
        return await self._call(
            "GET", url, url_vars, lambda api: api.get_raw(url, url_vars, accept=accept)
        )

    async def _graphql(self, query: str, variables: dict[str, Any], *, write: bool) -> Any:
        url = self._graphql_url

        async def run(api: _API) -> Any:
            answer = await api.post(
                url, {}, data={"query": query, "variables": variables}, accept=ACCEPT_JSON
            )
            if not isinstance(answer, dict):
                raise GraphQLErrors([{"message": "answer is not a JSON object"}])
            if answer.get("errors"):
                raise GraphQLErrors(list(answer["errors"]))
            return answer.get("data") or {}

        return await self._call("POST", url, {}, run, write=write)

    # -------------------------------------------------------------- comments

    async def _branch_sha(self, repo: str, branch: str) -> str | None:
        """The commit a branch points at; None when there is no such branch.

        https://docs.github.com/en/rest/git/refs#get-a-reference (the exact ref, else 404)
        """
        url = "/repos/{owner}/{repo}/git/ref/{+ref}"
        try:
            data = await self._get(url, {**_split(repo), "ref": "heads/" + _quote_path(branch)})
        except NotFound:
            return None
        try:
            return str(data["object"]["sha"])
        except (KeyError, TypeError) as exc:
            raise HostError(f"GitHub answered branch {branch} of {repo} without a commit") from exc
