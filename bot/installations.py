"""GitHub App installations as their lifecycle events describe them (blocking SQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db.models import Installation
from bot.events import InstallationEvent

ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"

# installation.<action> -> the installation's status afterwards
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#installation
_STATUS_AFTER = {
    "created": ACTIVE,
    "unsuspend": ACTIVE,
    "new_permissions_accepted": ACTIVE,
    "suspend": SUSPENDED,
    "deleted": DELETED,
}


@dataclass(frozen=True)
class InstallationInfo:
    host: str
    installation_id: int
    account: str
    status: str
    repositories: tuple[str, ...]
    updated_at: datetime


class InstallationStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def record(self, event: InstallationEvent) -> InstallationInfo:
        """Apply one installation or installation_repositories event; return the result."""
        assert event.installation_id is not None
        with Session(self.engine) as session, session.begin():
            row = session.get(Installation, (event.host, event.installation_id))
            if row is None:
                row = Installation(
                    host=event.host,
                    installation_id=event.installation_id,
                    account=event.account,
                    status=ACTIVE,
                    repositories=[],
                    updated_at=self.clock(),
                )
                session.add(row)
            repos = [r for r in row.repositories if r not in event.repositories_removed]
            repos += [r for r in event.repositories_added if r not in repos]
            row.repositories = sorted(repos)
            row.status = _STATUS_AFTER.get(event.action, row.status)
            row.account = event.account or row.account
            row.updated_at = self.clock()
            session.flush()
            return _info(row)

    def get(self, host: str, installation_id: int) -> InstallationInfo | None:
        with Session(self.engine) as session:
            row = session.get(Installation, (host, installation_id))
            return _info(row) if row else None


def _info(row: Installation) -> InstallationInfo:
    return InstallationInfo(
        host=row.host,
        installation_id=row.installation_id,
        account=row.account,
        status=row.status,
        repositories=tuple(row.repositories),
        updated_at=row.updated_at,
    )
