"""Host adapters: GitHub (gidgethub), GitLab (python-gitlab) and the playground (`local`,
our own database), behind one small interface.

`Hosts` is made once per process from the settings and holds the one shared aiohttp
session; `Hosts.client(host, installation_id)` hands out a client for one installation
(GitHub App), the configured token (GitHub token mode), the GitLab token, or the
playground when THREADLINE_PLAYGROUND is on.
"""

from __future__ import annotations

import aiohttp
from sqlalchemy import Engine

from bot.config import Settings
from bot.hosts.base import HostClient, HostError, NoCredentials
from bot.hosts.github import GitHubApp, GitHubToken, github_from_settings
from bot.hosts.gitlab import GitLabClient
from bot.hosts.local import LocalHost


class Hosts:
    def __init__(
        self,
        *,
        github: GitHubApp | GitHubToken | None = None,
        gitlab: GitLabClient | None = None,
        local: LocalHost | None = None,
    ) -> None:
        self.github = github
        self.gitlab = gitlab
        self.local = local

    @classmethod
    def from_settings(
        cls, settings: Settings, session: aiohttp.ClientSession, *, engine: Engine | None = None
    ) -> Hosts:
        """The adapters the settings give credentials for (none is fine: nothing is written).

        The playground's adapter needs the database (`engine`) its threads live in.
        """
        github = None
        if (settings.github_app_id and settings.github_private_key) or settings.github_token:
            github = github_from_settings(session, settings)
        gitlab = None
        if settings.gitlab_token:
            gitlab = GitLabClient(
                settings.gitlab_url, settings.gitlab_token, timeout=settings.host_timeout_seconds
            )
        local = None
        if settings.playground and engine is not None:
            local = LocalHost.over(engine, settings.bot_names[0])
        return cls(github=github, gitlab=gitlab, local=local)

    def client(self, host: str, installation_id: int | None) -> HostClient:
        if host == "github" and self.github is not None:
            if isinstance(self.github, GitHubApp) and installation_id is None:
                raise HostError("a GitHub App write needs the installation it is for")
            return self.github.client(installation_id)
        if host == "gitlab" and self.gitlab is not None:
            return self.gitlab
        if host == "local" and self.local is not None:
            return self.local
        raise NoCredentials(f"no credentials for {host}: Threadline cannot ask or write there")

    def close(self) -> None:
        """Release the GitLab client's connection pool (the aiohttp session is the caller's)."""
        if self.gitlab is not None:
            self.gitlab.close()

    def forget(self, installation_id: int) -> None:
        """Drop what is cached for an installation (it was deleted or suspended)."""
        if self.github is not None:
            self.github.forget(installation_id)
