"""The worker: claims stored deliveries, normalizes them and routes them to the handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from bot.clock import utcnow, worker_name
from bot.events import Ignored as IgnoredEvent
from bot.events import PayloadError, drop_reason, normalize
from bot.inbox import DONE, IGNORED, DeliveryRow, Inbox
from bot.ingress.verify import WebhookRejected, decode_payload
from bot.log import delivery_var
from bot.loops import nap
from bot.router import Context, Router
from bot.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0


class PermanentError(Exception):
    """Retrying cannot help: the stored payload itself is unusable."""


@dataclass(frozen=True)
class Outcome:
    status: str  # done | ignored
    note: str


class Dispatcher:
    """Turns one stored delivery into an event and runs its handlers."""

    def __init__(self, router: Router, runtime: Runtime, bot_names: tuple[str, ...]) -> None:
        self.router = router
        self.runtime = runtime
        self.bot_names = bot_names

    async def dispatch(self, row: DeliveryRow) -> Outcome:
        try:
            data = decode_payload(row.headers.get("Content-Type"), row.body)
            event = normalize(row.host, row.event, data)
        except (WebhookRejected, PayloadError, ValueError, TypeError) as exc:
            reason = exc.reason if isinstance(exc, WebhookRejected) else str(exc)
            raise PermanentError(f"cannot normalize {row.event}: {reason}") from exc
        if isinstance(event, IgnoredEvent):
            return Outcome(IGNORED, event.reason)
        dropped = drop_reason(event, self.bot_names)
        if dropped:
            return Outcome(IGNORED, dropped)
        handlers = self.router.handlers_for(event)
        if not handlers:
            return Outcome(IGNORED, f"no handler for {type(event).__name__} {event.action}")
        context = Context(delivery_pk=row.pk, delivery_id=row.delivery_id, runtime=self.runtime)
        for handler in handlers:
            await handler(event, context)
        names = ", ".join(f"{h.__module__}.{h.__name__}" for h in handlers)
        return Outcome(DONE, f"{type(event).__name__} {event.action} -> {names}")


class Worker:
    """Claims deliveries in batches and settles each one: done, ignored, retried or failed."""

    def __init__(
        self,
        inbox: Inbox,
        dispatcher: Dispatcher,
        *,
        lease_seconds: float,
        poll_seconds: float,
        max_attempts: int,
        retry_seconds: float,
        batch: int = 20,
        name: str | None = None,
    ) -> None:
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.batch = batch
        self.name = name or worker_name()
        self.wakeup = asyncio.Event()

    def retry_delay(self, attempts: int) -> float:
        return float(min(self.retry_seconds * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; a batch in progress is finished first."""
        log.info("worker %s started", self.name)
        while not stop.is_set():
            self.wakeup.clear()  # before looking: a wake during the look is kept
            try:
                handled = await self.run_once()
            except Exception:
                # The database is unreachable or similar: keep the worker alive and try later.
                log.exception("worker %s could not claim deliveries", self.name)
                handled = 0
            if handled:
                continue
            await nap(self.wakeup, stop, self.poll_seconds)
        log.info("worker %s stopped", self.name)

    async def run_once(self) -> int:
        """Claim one batch and settle it; return how many deliveries were claimed.

        The whole batch stays leased while its deliveries are handled one after
        another: a delivery waiting its turn must not look abandoned to other workers.
        """
        rows = await asyncio.to_thread(
            self.inbox.claim, self.name, limit=self.batch, lease_seconds=self.lease_seconds
        )
        if not rows:
            return 0
        held = {row.pk for row in rows}  # claimed, not yet settled, still ours
        heartbeat = asyncio.create_task(self._heartbeat(held))
        try:
            for row in rows:
                if row.pk not in held:
                    log.warning(
                        "delivery %s: taken over before its turn; left to that worker", row.pk
                    )
                    continue
                await self.process(row)
                held.discard(row.pk)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return len(rows)

    async def process(self, row: DeliveryRow) -> None:
        token = delivery_var.set(f"{row.host}:{row.delivery_id}")
        try:
            await self._process(row)
        finally:
            delivery_var.reset(token)

    async def _process(self, row: DeliveryRow) -> None:
        if row.attempts > self.max_attempts:
            # Only a worker that died mid-delivery leaves attempts past the limit.
            error = f"gave up after {row.attempts - 1} attempts (workers stopped while handling it)"
            await asyncio.to_thread(self.inbox.fail, row.pk, self.name, error)
            log.error("delivery %s failed: %s", row.pk, error)
            return
        started = utcnow()
        try:
            outcome = await self.dispatcher.dispatch(row)
        except PermanentError as exc:
            await asyncio.to_thread(self.inbox.fail, row.pk, self.name, str(exc))
            log.error("delivery %s failed for good: %s", row.pk, exc)
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if row.attempts >= self.max_attempts:
                await asyncio.to_thread(self.inbox.fail, row.pk, self.name, error)
                log.exception("delivery %s failed after %d attempts", row.pk, row.attempts)
            else:
                delay = self.retry_delay(row.attempts)
                await asyncio.to_thread(self.inbox.retry_later, row.pk, self.name, error, delay)
                log.warning(
                    "delivery %s attempt %d failed (%s); retrying in %.0fs",
                    row.pk,
                    row.attempts,
                    error,
                    delay,
                    exc_info=True,
                )
            return
        settled = await asyncio.to_thread(
            self.inbox.finish, row.pk, self.name, outcome.status, outcome.note
        )
        elapsed = (utcnow() - started).total_seconds() * 1000
        if settled:
            log.info("delivery %s %s in %.1f ms: %s", row.pk, outcome.status, elapsed, outcome.note)
        else:
            log.warning("delivery %s: lease lost before it was settled", row.pk)

    async def _heartbeat(self, held: set[int]) -> None:
        """Renew the leases in `held` every third of a lease; drop those another worker took."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not held:
                continue
            kept = await asyncio.to_thread(
                self.inbox.renew, sorted(held), self.name, self.lease_seconds
            )
            for pk in held - kept:
                log.warning("delivery %s: lease was taken over by another worker", pk)
            held &= kept
