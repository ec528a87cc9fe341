"""The runtime's small API: everything a handler may do, with the SQL and HTTP behind it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from bot.agents.config import Config
from bot.events import CommentEvent, InstallationEvent
from bot.history import CommentHistory
from bot.installations import InstallationInfo, InstallationStore
from bot.outbox import Outbox
from bot.repo_configs import RepoAnswer, RepoConfigs
from bot.sessions.service import SessionService

# A write that may wait for its delivery's settle, given the settle's connection.
Write = Callable[[Connection], Any]

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        *,
        history: CommentHistory,
        installations: InstallationStore,
        outbox: Outbox,
        config: Config | None = None,
        bot_names: tuple[str, ...] = ("threadline",),
    ) -> None:
        self.history = history
        self.installations = installations
        self.outbox = outbox
        self.config = config or Config.default()
        self.bot_names = bot_names
        self._sessions: SessionService | None = None
        self._repo_configs: RepoConfigs | None = None
        self._forget_installation: Callable[[int], None] = lambda _id: None

    def connect(
        self,
        *,
        forget_installation: Callable[[int], None],
        sessions: SessionService,
        repo_configs: RepoConfigs | None = None,
    ) -> None:
        """Hook up the host credentials and sessions once they exist."""
        self._forget_installation = forget_installation
        self._sessions = sessions
        self._repo_configs = repo_configs

    async def repo_config(self, host: str, installation_id: int | None, repo: str) -> RepoAnswer:
        """The configuration in force in `repo`: the server's, narrowed by the repository's
        own file when it has one (and problems with a newer file, if any)."""
        if self._repo_configs is None:
            return RepoAnswer(self.config, "")
        return await self._repo_configs.for_repo(host, installation_id, repo)

    @property
    def has_sessions(self) -> bool:
        """Whether this process runs sessions (it has workers)."""
        return self._sessions is not None

    @property
    def sessions(self) -> SessionService:
        if self._sessions is None:
            raise RuntimeError("sessions run only in processes with workers")
        return self._sessions

    async def record_comment(
        self,
        event: CommentEvent,
        delivery_pk: int,
        with_settle: Callable[[Write], None] | None = None,
    ) -> bool | None:
        """Keep a comment event in its thread's history; False if this delivery was kept
        already. Given `with_settle` (Context.with_settle), it is kept in the delivery's
        settle instead (no statement, commit or thread hop of its own) and the answer
        is None: not known yet."""
        if with_settle is not None:
            with_settle(self.history.record_later(event, delivery_pk))
            return None
        return await asyncio.to_thread(self.history.record, event, delivery_pk)

    async def record_installation(self, event: InstallationEvent) -> InstallationInfo:
        return await asyncio.to_thread(self.installations.record, event)

    async def installation_removed(self, host: str, installation_id: int) -> None:
        """An installation was deleted or suspended: its sessions close, its credentials go."""
        if self._sessions is not None:
            await self._sessions.close_installation(host, installation_id)
        self._forget_installation(installation_id)
        log.info("installation %s removed: sessions closed, credentials dropped", installation_id)
