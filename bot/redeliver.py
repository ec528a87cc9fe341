"""Redelivery reconcile: ask GitHub to send again what it failed to deliver to us.

GitHub keeps a log of the App webhook's deliveries. One that never got a 2xx from us
(we were down, the database refused it, a proxy dropped it) and whose guid we never
stored is asked for again, within the window GitHub allows redelivery in. Each guid is
asked for at most `max_redeliveries` times (GitHub logs each redelivery as an attempt,
so the count survives restarts). Only one process runs a round at a time: each round
first takes the job's time slot.
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.db.models import Delivery
from bot.hosts.base import HostError
from bot.slots import Slots

log = logging.getLogger(__name__)

JOB_SLOT = "job:github-redelivery"
# GitHub lets deliveries of the past 3 days be redelivered; stay a little inside that.
WINDOW_SECONDS = 3 * 24 * 3600 - 600


class HookLog(Protocol):
    async def hook_deliveries(self, *, since: float) -> list[dict[str, Any]]: ...

    async def redeliver(self, delivery_id: int) -> None: ...


@dataclass
class Round:
    """What one reconcile round saw and did."""

    seen: int = 0
    missing: int = 0
    redelivered: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def stored_guids(engine: Engine, guids: Iterable[str]) -> set[str]:
    wanted = list(guids)
    found: set[str] = set()
    with Session(engine) as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                session.execute(
                    select(Delivery.delivery_id).where(
                        Delivery.host == "github", Delivery.delivery_id.in_(chunk)
                    )
                ).scalars()
            )
    return found


def delivered_at(entry: dict[str, Any]) -> float:
    stamp = str(entry.get("delivered_at") or "")
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


async def reconcile(
    app: HookLog,
    engine: Engine,
    *,
    max_redeliveries: int = 3,
    window_seconds: float = WINDOW_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Round:
    """One round: list recent deliveries, redeliver the failed ones we never stored."""
    result = Round()
    entries = await app.hook_deliveries(since=clock() - window_seconds)
    result.seen = len(entries)
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry.get("guid"):
            attempts[str(entry["guid"])].append(entry)
    failed = {
        guid: tries
        for guid, tries in attempts.items()
        if not any(200 <= int(t.get("status_code") or 0) < 300 for t in tries)
    }
    stored = await asyncio.to_thread(stored_guids, engine, failed)
    for guid, tries in failed.items():
        if guid in stored:
            continue
        result.missing += 1
        if sum(1 for t in tries if t.get("redelivery")) >= max_redeliveries:
            result.given_up.append(guid)
            continue
        latest = max(tries, key=delivered_at)
        try:
            await app.redeliver(int(latest["id"]))
        except HostError as exc:
            result.errors.append(f"{guid}: {exc}")
            continue
        result.redelivered.append(guid)
    if result.redelivered or result.given_up or result.errors:
        log.info(
            "redelivery reconcile: %d deliveries seen, %d missing, %d redelivered, %d given up, "
            "%d errors",
            result.seen,
            result.missing,
            len(result.redelivered),
            len(result.given_up),
            len(result.errors),
        )
    return result


class Reconciler:
    """Runs `reconcile` every `interval` seconds in whichever process takes the slot first."""

    def __init__(self, app: HookLog, engine: Engine, *, interval: float) -> None:
        self.app = app
        self.engine = engine
        self.interval = interval
        self.slots = Slots(engine)

    async def tick(self) -> Round | None:
        """Run a round if this process won this interval's slot; None when another did."""
        if not await asyncio.to_thread(self.slots.take, JOB_SLOT, self.interval * 0.9):
            return None
        try:
            return await reconcile(self.app, self.engine)
        except HostError as exc:
            log.warning("redelivery reconcile could not list deliveries: %s", exc)
            return None
