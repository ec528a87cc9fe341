"""The runtime's small API: everything a handler may do, with the SQL and HTTP behind it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.events import CommentEvent, InstallationEvent
from bot.history import CommentHistory
from bot.installations import InstallationInfo, InstallationStore
from bot.outbox import Outbox, Write

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        *,
        history: CommentHistory,
        installations: InstallationStore,
        outbox: Outbox,
    ) -> None:
        self.history = history
        self.installations = installations
        self.outbox = outbox
        self._forget_installation: Callable[[int], None] = lambda _id: None
        self._wake_sender: Callable[[], None] = lambda: None

    def connect(
        self, *, forget_installation: Callable[[int], None], wake_sender: Callable[[], None]
    ) -> None:
        """Hook up the host credentials and the outbox sender once they exist."""
        self._forget_installation = forget_installation
        self._wake_sender = wake_sender

    async def record_comment(self, event: CommentEvent, delivery_pk: int) -> bool:
        """Keep a comment event in its thread's history; False if this delivery was kept already."""
        return await asyncio.to_thread(self.history.record, event, delivery_pk)

    async def record_installation(self, event: InstallationEvent) -> InstallationInfo:
        return await asyncio.to_thread(self.installations.record, event)

    async def installation_removed(self, installation_id: int) -> None:
        """An installation was deleted or suspended: its cached credentials go at once."""
        self._forget_installation(installation_id)
        log.info("installation %s removed: cached credentials dropped", installation_id)

    async def write(self, write: Write) -> int:
        """Queue a write to the host; it is sent once, in order, by the outbox sender."""
        pk = await asyncio.to_thread(self.outbox.enqueue, write)
        self._wake_sender()
        return pk
