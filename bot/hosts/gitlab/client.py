"""GitLab client: GitLabClient, the HostClient assembled from its reads, writes and change sets."""

from __future__ import annotations

import logging

from bot.config import Settings
from bot.hosts.gitlab.changes import ChangeSets
from bot.hosts.gitlab.context import ContextReads
from bot.hosts.gitlab.errors import CAPABILITIES
from bot.hosts.gitlab.reads import Reads
from bot.hosts.gitlab.writes import Writes

log = logging.getLogger(__name__)


class GitLabClient(ContextReads, Reads, Writes, ChangeSets):
    """`HostClient` for one GitLab instance and one token (personal, project or group)."""

    host: str = "gitlab"
    capabilities: frozenset[str] = CAPABILITIES

    @classmethod
    def from_settings(cls, settings: Settings) -> GitLabClient:
        if not settings.gitlab_token:
            raise ValueError("THREADLINE_GITLAB_TOKEN is not set")
        return cls(
            settings.gitlab_url, settings.gitlab_token, timeout=settings.host_timeout_seconds
        )
