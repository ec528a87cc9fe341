"""GitHub client: GitHubClient, the HostClient assembled from its reads, writes and change sets."""

from __future__ import annotations

import logging

from bot.hosts.github.changes import ChangeSets
from bot.hosts.github.context import ContextReads
from bot.hosts.github.reads import Reads
from bot.hosts.github.writes import Writes

log = logging.getLogger(__name__)


class GitHubClient(ContextReads, Reads, Writes, ChangeSets):
    """HostClient for one installation (or one fixed token) on github.com or GHES."""
