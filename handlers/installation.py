"""GitHub App installations: created, deleted, suspended, repositories added or removed."""

from __future__ import annotations

import logging

from bot.events import InstallationEvent
from bot.router import Context, Router

router = Router()
log = logging.getLogger(__name__)


@router.register(InstallationEvent)
async def note_installation(event: InstallationEvent, ctx: Context) -> None:
    """Log installation changes; the host adapters will drop tokens and close sessions here."""
    log.info(
        "installation %s %s for %s (+%d -%d repositories)",
        event.installation_id,
        event.action,
        event.account,
        len(event.repositories_added),
        len(event.repositories_removed),
    )
