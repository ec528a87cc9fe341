"""How this worker reaches a session's repository over git: the clone URL and the token.

The URL comes from the configured host, never from an event's payload, so the token
only goes where the settings say the host is (`Credential.check` enforces the same).
The playground's repositories are served by Threadline's own web server (`/git`).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from bot.config import Settings
from bot.hosts import Hosts
from bot.hosts.github import GitHubApp
from bot.hosts.local_git import GIT_USER, clone_url, git_password
from bot.hosts.local_store import PlaygroundStore
from bot.workspaces.git import Credential
from bot.workspaces.sessions import GitAccess
from bot.workspaces.store import WorkspaceError

NO_GIT = "{host}: Threadline has no git access there (no token configured)"


def github_web_url(api_url: str) -> str:
    """Where GitHub serves git: github.com for api.github.com, HOST for GHES' HOST/api/v3,
    else the API's own address (a test's fake serves both)."""
    base = api_url.rstrip("/")
    parts = urlsplit(base)
    if parts.hostname == "api.github.com":
        return "https://github.com"
    return base.removesuffix("/api/v3")


def own_url(settings: Settings) -> str:
    """Where this Threadline's web server is reached: the public URL, else the address
    it listens on (a wildcard address through loopback)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (read, not bound)
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def playground_access(settings: Settings, store: PlaygroundStore, repo: str) -> GitAccess:
    """The playground's repository, served by this Threadline's web server (/git): its
    password derives from the playground's secret (configured, or settled in the
    database at the web server's first start)."""
    secret = settings.playground_secret or await asyncio.to_thread(store.webhook_secret)
    if secret is None:
        raise WorkspaceError("the playground has no secret yet (its web server never started)")
    web = own_url(settings)
    password = git_password(secret)
    return GitAccess(clone_url(web, repo), Credential.basic(web, GIT_USER, password))


async def git_access(
    settings: Settings, hosts: Hosts, host: str, repo: str, installation_id: int | None
) -> GitAccess:
    """The clone URL of `repo` on `host` and the token that may be sent there."""
    if host == "github" and hosts.github is not None:
        web = github_web_url(settings.github_api_url)
        if isinstance(hosts.github, GitHubApp):
            if installation_id is None:
                raise WorkspaceError("a GitHub App fetch needs the installation it is for")
            token = await hosts.github.installation_token(installation_id)
        elif settings.github_token:
            token = settings.github_token  # a personal token: any user name goes with it
        else:
            raise WorkspaceError(NO_GIT.format(host=host))
        return GitAccess(f"{web}/{repo}.git", Credential.github(web, token))
    if host == "gitlab" and settings.gitlab_token:
        web = settings.gitlab_url.rstrip("/")
        return GitAccess(f"{web}/{repo}.git", Credential.gitlab(web, settings.gitlab_token))
    if host == "local" and hosts.local is not None:
        return await playground_access(settings, hosts.local.store, repo)
    raise WorkspaceError(NO_GIT.format(host=host))
