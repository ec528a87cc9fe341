"""Poll mode: read the GitHub App's deliveries through GitHub's API into the inbox.

For a server GitHub cannot reach (a laptop, a machine behind NAT): every few seconds,
one process lists the App webhook's recent deliveries (`GET /app/hook/deliveries`),
and for each delivery id (guid) the inbox does not hold yet reads that delivery
(`GET /app/hook/deliveries/{id}`: the request's headers and payload) and stores it,
as if it had been pushed. A delivery that is pushed as well is stored once: the inbox
keys deliveries by host and delivery id.

The API returns the payload parsed, not the signed bytes, so a polled delivery has no
signature to check: its trust rests on the API call, made as the App (its JWT) to the
configured GitHub over TLS.
https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
https://docs.github.com/en/rest/apps/webhooks#get-a-delivery-for-an-app-webhook
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.hosts.base import HostError
from bot.inbox import Inbox
from bot.ingress.verify import WebhookRejected, accept_github_polled
from bot.metrics import DELIVERIES, ERRORS
from bot.redeliver import delivered_at, stored_guids
from bot.slots import Slots

log = logging.getLogger(__name__)

JOB_SLOT = "job:github-poll"
# How far back the first look of a process goes: deliveries made while it was stopped.
LOOKBACK_SECONDS = 24 * 3600.0
# Later looks start this long before the newest delivery seen, so one that GitHub lists
# a little late (its clock, its log's lag) is still found.
OVERLAP_SECONDS = 120.0


class DeliveryLog(Protocol):
    async def hook_deliveries(self, *, since: float) -> list[dict[str, Any]]: ...

    async def hook_delivery(self, delivery_id: int) -> dict[str, Any]: ...


@dataclass
class PollRound:
    """What one look saw and did."""

    seen: int = 0
    stored: list[str] = field(default_factory=list)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)


class Poller:
    """Feeds the App's deliveries into `inbox`, in whichever process takes each slot."""

    def __init__(
        self,
        source: DeliveryLog,
        inbox: Inbox,
        *,
        interval: float,
        on_stored: Callable[[], None] | None = None,
        lookback: float = LOOKBACK_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.inbox = inbox
        self.interval = interval
        self.on_stored = on_stored
        self.lookback = lookback
        self.clock = clock
        self.slots = Slots(inbox.engine)
        self.since: float | None = None

    async def tick(self) -> PollRound | None:
        """One look, if this process won this interval's slot; None when another did."""
        if not await asyncio.to_thread(self.slots.take, JOB_SLOT, self.interval * 0.9):
            return None
        try:
            return await self.look()
        except HostError as exc:
            ERRORS.labels("poll_failed").inc()
            log.warning("poll mode could not list GitHub's deliveries: %s", exc)
            return None

    async def look(self) -> PollRound:
        """List recent deliveries and store those the inbox does not hold, oldest first."""
        since = self.clock() - self.lookback if self.since is None else self.since
        entries = await self.source.hook_deliveries(since=since)
        result = PollRound(seen=len(entries))
        first: dict[str, dict[str, Any]] = {}
        for entry in sorted(entries, key=delivered_at):
            if entry.get("guid") and str(entry["guid"]) not in first:
                first[str(entry["guid"])] = entry
        held = await asyncio.to_thread(stored_guids, self.inbox.engine, first)
        complete = True
        for guid, entry in first.items():
            if guid in held:
                continue
            try:
                await self._store(entry, result)
            except (HostError, WebhookRejected, KeyError, TypeError, ValueError) as exc:
                complete = False  # look at it again next time
                ERRORS.labels("poll_failed").inc()
                result.errors.append(f"{guid}: {exc}")
                log.warning("poll mode could not store GitHub delivery %s: %s", guid, exc)
        if complete and entries:
            self.since = max(delivered_at(e) for e in entries) - OVERLAP_SECONDS
        if result.stored:
            log.info("poll mode: %d deliveries listed, %d stored", result.seen, len(result.stored))
            if self.on_stored is not None:
                self.on_stored()
        return result

    async def _store(self, entry: dict[str, Any], result: PollRound) -> None:
        detail = await self.source.hook_delivery(int(entry["id"]))
        request = detail["request"]
        incoming = accept_github_polled(request["headers"], request["payload"])
        [stored] = await asyncio.to_thread(self.inbox.store_many, [incoming])
        answer = "duplicate" if stored.duplicate else "polled"
        DELIVERIES.labels("github", incoming.event, answer).inc()
        if stored.duplicate:  # pushed since the list was read
            result.duplicates += 1
        else:
            result.stored.append(incoming.delivery_id)
