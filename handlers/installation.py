"""GitHub App installations: created, deleted, suspended, repositories added or removed."""

from __future__ import annotations

import logging

from bot.events import InstallationEvent
from bot.router import Context, Router

router = Router()
log = logging.getLogger(__name__)


@router.register(InstallationEvent)
async def track_installation(event: InstallationEvent, ctx: Context) -> None:
    """Record the installation's state; on removal or suspension drop its credentials."""
    info = await ctx.runtime.record_installation(event)
    log.info(
        "installation %s of %s is %s with %d repositories (%s)",
        info.installation_id,
        info.account,
        info.status,
        len(info.repositories),
        event.action,
    )
    if event.action in ("deleted", "suspend") and event.installation_id is not None:
        await ctx.runtime.installation_removed(event.host, event.installation_id)
