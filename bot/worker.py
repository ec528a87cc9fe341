"""The worker: claims stored deliveries, normalizes them and routes them to the handlers.

One thread's deliveries are handled in order, whichever workers claim them. Ingress
only verifies and stores, so the worker works out each delivery's thread and the
event's own time after normalizing it and writes both onto the row (before claiming,
for every waiting delivery nobody has worked out yet; after claiming, for any of the
batch still without). A delivery then starts only once every earlier delivery of its
thread is finished (`Inbox.start`); one that must wait is parked and claimed again a
moment later, backing off while it keeps waiting. A claim takes only a thread's first
waiting delivery and the run behind it (`Inbox.claim`), so parking is rare: a worker
handles one thread's run in sequence, and other workers leave that thread alone. New
deliveries are held `order_hold_seconds` before they are claimed,
so that an earlier event which arrives a little later still goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot import metrics
from bot.clock import utcnow, worker_name
from bot.db.calls import StoreCalls
from bot.db.outage import Outage
from bot.events import Event, PayloadError, drop_reason, event_time, normalize, order_key
from bot.events import Ignored as IgnoredEvent
from bot.inbox import DONE, IGNORED, NO_THREAD, DeliveryRow, Inbox, Order
from bot.ingress.verify import WebhookRejected, decode_payload
from bot.log import bind
from bot.loops import nap
from bot.router import Context, Router
from bot.runtime import Runtime, Write

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_DELAY = 3600.0
PARK_SECONDS = 0.1  # a parked delivery is claimable again this long (plus the hold) later,
PARK_MAX_SECONDS = 5.0  # doubling each time this worker parks it again, up to this
PARKS_KEPT = 10_000  # deliveries whose parks a worker counts, at most
ORDER_LOOKAHEAD = 200  # waiting deliveries whose thread one look works out, at most
LOOKED_KEPT = 2 * ORDER_LOOKAHEAD  # normalized deliveries a worker keeps for its claims
# On SQLite, while a worker's claims stay this small (no backlog), its claims and
# settles run on the event loop's thread, as other short store calls do (bot/db/
# calls.py: the hop to a thread cost more than the call). A claim or look past
# QUIET_MOST sends the next ones to a thread until the claims are small again (the
# first claim of a sudden burst still runs inline).
QUIET_MOST = 4
ORDER_RETRIES = 5  # looks a delivery held back by unknown ones may take before it parks
OUT_OF_ORDER = "arrived out of order (a later delivery of its thread was handled first)"


# A handled delivery not settled yet: (row, status, note, started, its log context).
Unsettled = tuple[DeliveryRow, str, str, datetime, contextvars.Context]


class PermanentError(Exception):
    """Retrying cannot help: the stored payload itself is unusable."""


@dataclass(frozen=True)
class Outcome:
    status: str  # done | ignored
    note: str


@dataclass(frozen=True)
class Prepared:
    """A stored delivery normalized: what to do with it, and its place in its thread."""

    order: Order
    event: Event | None = None  # to handle
    ignored: Outcome | None = None  # settled without handling
    error: str | None = None  # the stored payload is unusable


class Dispatcher:
    """Turns one stored delivery into an event and runs its handlers."""

    def __init__(self, router: Router, runtime: Runtime, bot_names: tuple[str, ...]) -> None:
        self.router = router
        self.runtime = runtime
        self.bot_names = bot_names

    def prepare(self, row: DeliveryRow) -> Prepared:
        """Normalize `row` (pure, no I/O). A delivery that will not be handled (ignored
        or unusable) belongs to no thread: it waits for nothing and holds back nothing."""
        time: datetime = row.received_at
        try:
            data = decode_payload(row.headers.get("Content-Type"), row.body)
            event = normalize(row.host, row.event, data)
            time = event_time(row.host, row.event, data) or time
        except (WebhookRejected, PayloadError, ValueError, TypeError) as exc:
            reason = exc.reason if isinstance(exc, WebhookRejected) else str(exc)
            error = f"cannot normalize {row.event}: {reason}"
            return Prepared(Order(row.pk, NO_THREAD, time), error=error)
        except Exception as exc:
            # A bug in a pure function: the same bytes would fail the same way again,
            # and a batch (or every worker's look at waiting deliveries) must go on.
            log.exception("delivery %s: normalizing it failed", row.pk)
            error = f"cannot normalize {row.event}: {type(exc).__name__}: {exc}"
            return Prepared(Order(row.pk, NO_THREAD, time), error=error)
        unthreaded = Order(row.pk, NO_THREAD, time)
        if isinstance(event, IgnoredEvent):
            return Prepared(unthreaded, ignored=Outcome(IGNORED, event.reason))
        dropped = drop_reason(event, self.bot_names)
        if dropped:
            return Prepared(unthreaded, ignored=Outcome(IGNORED, dropped))
        if not self.router.handlers_for(event):
            reason = f"no handler for {type(event).__name__} {event.action}"
            return Prepared(unthreaded, ignored=Outcome(IGNORED, reason))
        return Prepared(Order(row.pk, order_key(event), time), event=event)

    async def dispatch(self, row: DeliveryRow) -> Outcome:
        """Normalize `row` and run its handlers."""
        return await self.handle(row, self.prepare(row))

    async def handle(
        self,
        row: DeliveryRow,
        prepared: Prepared,
        with_settle: Callable[[Write], None] | None = None,
    ) -> Outcome:
        """Run `prepared`'s handlers; `with_settle`: see Context."""
        if prepared.error is not None:
            raise PermanentError(prepared.error)
        if prepared.ignored is not None:
            return prepared.ignored
        event = prepared.event
        assert event is not None
        handlers = self.router.handlers_for(event)
        context = Context(row.pk, row.delivery_id, self.runtime, with_settle)
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
        hold_seconds: float = 0.0,
    ) -> None:
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.batch = batch
        self.hold_seconds = hold_seconds
        self.name = name or worker_name()
        self.wakeup = asyncio.Event()
        self.parks: dict[int, int] = {}  # delivery -> times this worker parked it in a row
        # Handled deliveries whose settle goes with this worker's next statement (see
        # _settle), and their handlers' writes that go with it.
        self._unsettled: list[Unsettled] = []
        self._writes: list[Write] = []
        self._batching = False
        # Deliveries this worker's looks normalized, kept for when it claims them (a
        # delivery's body never changes, so neither does what it normalizes to).
        self._looked: dict[int, Prepared] = {}
        self._calls = StoreCalls.for_engine(inbox.engine)  # inline on SQLite
        self._quiet = True  # the last claim and look were small (see QUIET_MOST)
        self._last_looked = 0

    def retry_delay(self, attempts: int) -> float:
        return float(min(self.retry_seconds * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; a batch in progress is finished first."""
        log.info("worker %s started", self.name)
        outage = Outage(log, f"worker {self.name}")
        try:
            while not stop.is_set():
                woken = self.wakeup.is_set()
                self.wakeup.clear()  # before looking: a wake during the look is kept
                try:
                    # What the batch handled is settled with the next claim (one commit for
                    # both), or below when the worker stops.
                    handled = await self.run_once(settle=False)
                    if handled and handled < self.batch and not self.wakeup.is_set():
                        # The claim took everything due, and nothing was stored since
                        # (no wake): settle now and wait, rather than look and claim again
                        # at once for nothing (deliveries of other processes are found at
                        # the next poll, as after any empty claim).
                        await self._call(self._flush)
                        handled = 0
                    outage.ok()
                except Exception as exc:
                    # The database is unreachable or similar: keep the worker alive and try later.
                    outage.failed(exc, "claim deliveries")
                    handled = 0
                if handled:
                    continue
                pause = self.poll_seconds
                if woken and self.hold_seconds:
                    # A new delivery is held before it can be claimed: look again once
                    # its hold is over, not a whole poll later.
                    pause = min(pause, self.hold_seconds)
                await nap(self.wakeup, stop, pause)
        finally:
            # The last batch's settles, had no claim taken them (stopped, or cancelled).
            if self._unsettled or self._writes:
                try:
                    await asyncio.to_thread(self._flush)
                except Exception as exc:  # handled, not settled: taken over after the lease
                    outage.failed(exc, "settle the last batch")
        log.info("worker %s stopped", self.name)

    async def run_once(self, *, settle: bool = True) -> int:
        """Claim one batch and settle it; return how many deliveries were claimed.
        `settle=False` leaves the last settles of the batch to the next claim (`run`).

        The whole batch stays leased while its deliveries are handled one after
        another: a delivery waiting its turn must not look abandoned to other workers.
        The batch is handled in its threads' order; a delivery whose turn has not come
        (an earlier one of its thread is still waiting elsewhere) is parked.
        """
        for _ in range(2):
            ordered, prepared, late, started = await self._call(self._look_and_claim)
            self._quiet = len(ordered) <= QUIET_MOST and self._last_looked <= QUIET_MOST
            if ordered or self._last_looked < ORDER_LOOKAHEAD:
                break
            # It ran on the loop's thread and met a backlog to order before claiming
            # (`_look_and_claim`): again, in a thread now (no longer quiet).
        if not ordered:
            return 0
        held = {row.pk for row in ordered}  # claimed, not yet settled, still ours
        blocked: set[str] = set()  # threads of this batch where a delivery had to wait
        heartbeat = asyncio.create_task(self._heartbeat(held))
        self._batching = True
        try:
            for row in ordered:
                if row.pk not in held:
                    log.warning(
                        "delivery %s: taken over before its turn; left to that worker", row.pk
                    )
                    continue
                waits = bool(row.thread_key) and row.thread_key in blocked
                if waits:  # an earlier one of its thread, here in this batch, is waiting
                    await asyncio.to_thread(self._park, row)
                elif not await self.process(
                    row, prepared[row.pk], late=row.pk in late, started=row.pk in started
                ):
                    blocked.add(row.thread_key or "")
                held.discard(row.pk)
        finally:
            self._batching = False
            if settle and (self._unsettled or self._writes):
                await asyncio.to_thread(self._flush)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return len(ordered)

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking `func` as the store's calls run (inline on SQLite) while claims
        are small, else in a thread."""
        if self._quiet:
            return await self._calls(func, *args)
        return await asyncio.to_thread(func, *args)

    def _look_and_claim(
        self,
    ) -> tuple[list[DeliveryRow], dict[int, Prepared], set[int], set[int]]:
        """Blocking SQL, one thread call (each hop costs CPU of its own): the look, the
        claim, the order of deliveries stored after the look, which of the batch
        arrived late, and the start of the batch's thread heads, together (see
        `_heads`). The batch comes back in its threads' order.

        When more deliveries wait unordered than one look takes, all of them are
        ordered before the claim (`_look_through`): one no look had reached could be
        an earlier delivery of a thread the claim takes, and the batch's delivery
        would start ahead of it (its start waits for unknown threads only within its
        hold window). On the loop's thread (a quiet worker, on SQLite) only the first
        look is written and nothing is claimed: `run_once` asks again in a thread."""
        looked = self._look()
        claim = True
        if len(looked) >= ORDER_LOOKAHEAD:
            if self._quiet and self._calls.inline:
                claim = False
            else:
                looked = self._look_through(looked)
        inbox = self.inbox
        pending, writes = self._unsettled, self._writes
        finished = _finished(pending)
        ordered: list[DeliveryRow] = []
        prepared: dict[int, Prepared] = {}
        late: set[int] = set()
        started: set[int] = set()
        # One transaction (one commit) for the last batch's settles, the look's orders,
        # the claim and the starts.
        with inbox.engine.begin() as conn:
            settled = inbox.finish_in(conn, finished, self.name, writes=writes)
            inbox.set_order_in(conn, looked)
            rows = (
                inbox.claim_in(
                    conn,
                    self.name,
                    limit=self.batch,
                    lease_seconds=self.lease_seconds,
                    hold_seconds=self.hold_seconds,
                )
                if claim
                else []
            )
            if rows:
                prepared = {row.pk: self._prepared(row) for row in rows}
                unknown = [prepared[row.pk].order for row in rows if row.thread_key is None]
                inbox.set_order_in(conn, unknown)  # stored after the look before the claim
                ordered = sorted((_with_order(row, prepared[row.pk]) for row in rows), key=_place)
                late = inbox.late_in(conn, ordered)
                heads = self._heads(ordered, prepared)
                started = inbox.start_many_in(
                    conn, heads, self.name, hold_seconds=self.hold_seconds, late=late
                )
        # Committed: what was pending is settled (or its lease was lost meanwhile). Had
        # the transaction failed, it would still be pending, for the next try.
        self._unsettled, self._writes = [], []
        _log_settles(pending, settled)
        for pk in started:
            self.parks.pop(pk, None)
        return ordered, prepared, late, started

    def _heads(
        self, ordered: list[DeliveryRow], prepared: dict[int, Prepared]
    ) -> list[DeliveryRow]:
        """The deliveries of a claim to start at once, in one transaction (one commit
        for the batch where each start had its own): those to be handled that come
        first of their thread in the batch. A delivery behind another of its thread
        starts only when that one is settled (`_start`), and one that will fail
        without handling (unusable, or out of attempts) is left to its own path.

        Started together, they are handled one after another as before; a worker that
        dies meanwhile leaves the rest started and unsettled, as it leaves the one in
        hand, and another worker takes them over when their leases run out (each is
        charged that attempt). What this worker handles is settled with its next
        statement: at the latest the next claim (`run`) or the end of the batch."""
        heads: list[DeliveryRow] = []
        seen: set[str] = set()
        for row in ordered:
            key = row.thread_key or ""
            if key in seen:
                continue
            if key:
                seen.add(key)
            if prepared[row.pk].event is not None and row.attempts < self.max_attempts:
                heads.append(row)
        return heads

    def order_waiting(self, received_by: datetime | None = None) -> int:
        """Work out the thread of waiting deliveries nobody has yet (blocking SQL)."""
        return self.inbox.set_order(self._look(received_by))

    def _look_through(self, looked: list[Order]) -> list[Order]:
        """Write `looked` (a full look) and look again, until a look finds fewer waiting
        deliveries than it takes; those received since this began are left, as a look
        leaves those stored after it (blocking SQL). The last look's orders, to write."""
        by = self.inbox.clock()
        while len(looked) >= ORDER_LOOKAHEAD:
            self.inbox.set_order(looked)
            looked = self._look(received_by=by)
        return looked

    def _look(self, received_by: datetime | None = None) -> list[Order]:
        """Read and normalize waiting deliveries nobody has ordered yet (blocking SQL,
        reads only): their orders, to write."""
        rows = self.inbox.unordered(limit=ORDER_LOOKAHEAD, received_by=received_by)
        self._last_looked = len(rows)
        if len(self._looked) > LOOKED_KEPT:  # claimed by others, or given up on
            self._looked.clear()
        looked = {row.pk: self.dispatcher.prepare(row) for row in rows}
        self._looked.update(looked)
        return [p.order for p in looked.values()]

    def _prepared(self, row: DeliveryRow) -> Prepared:
        """`row` normalized: as a look of this worker found it, or now."""
        return self._looked.pop(row.pk, None) or self.dispatcher.prepare(row)

    async def process(
        self,
        row: DeliveryRow,
        prepared: Prepared | None = None,
        *,
        late: bool = False,
        started: bool = False,
    ) -> bool:
        """Settle one claimed delivery; `late`: it arrived out of order (Inbox.late);
        `started`: its handling was begun already (`_heads`). False when it was parked
        to wait its turn (or its lease was lost meanwhile)."""
        prepared = prepared or self.dispatcher.prepare(row)
        event = prepared.event
        with bind(
            delivery=f"{row.host}:{row.delivery_id}",
            thread=prepared.order.thread_key or None,
            installation=event.installation_id if event is not None else None,
        ):
            went = await self._process(row, prepared, late, begun=started)
        if not self._batching and self._unsettled:  # called alone: settle it now
            await asyncio.to_thread(self._flush)
        return went

    async def _process(
        self, row: DeliveryRow, prepared: Prepared, late: bool, *, begun: bool
    ) -> bool:
        writes: list[Write] = []  # the handlers' writes that wait for the settle
        if prepared.ignored is not None:  # nothing to handle, so no attempt to charge
            await self._settle(row, prepared.ignored, utcnow(), writes, late=False)
            return True
        if row.attempts >= self.max_attempts:
            # Only workers that died while handling it leave it unsettled this often.
            error = f"gave up after {row.attempts} attempts (workers stopped while handling it)"
            await asyncio.to_thread(self._fail, row, error)
            log.error("delivery %s failed: %s", row.pk, error)
            _count(row, "failed")
            return True
        if not begun and not await asyncio.to_thread(self._start, row, late):
            return False
        if late:
            log.warning(
                "delivery %s arrived out of order: a later delivery of %s was handled "
                "first; handling it now",
                row.pk,
                row.thread_key,
            )
        attempts = row.attempts + 1
        started = utcnow()
        timer = metrics.Timer()
        try:
            try:
                outcome = await self.dispatcher.handle(row, prepared, writes.append)
            finally:
                metrics.HANDLING_SECONDS.labels(row.host).observe(timer.seconds())
        except PermanentError as exc:
            await asyncio.to_thread(self._fail, row, str(exc))
            log.error("delivery %s failed for good: %s", row.pk, exc)
            _count(row, "failed")
            return True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempts >= self.max_attempts:
                await asyncio.to_thread(self._fail, row, error, writes)
                log.exception("delivery %s failed after %d attempts", row.pk, attempts)
                _count(row, "failed")
            else:
                _count(row, "retry")
                delay = self.retry_delay(attempts)
                await asyncio.to_thread(self._retry_later, row, error, delay)
                log.warning(
                    "delivery %s attempt %d failed (%s); retrying in %.0fs",
                    row.pk,
                    attempts,
                    error,
                    delay,
                    exc_info=True,
                )
            return True
        await self._settle(row, outcome, started, writes, late=late)
        return True

    def _fail(self, row: DeliveryRow, error: str, writes: list[Write] | None = None) -> None:
        """Fail `row` (blocking SQL); what its handlers wrote before is kept, as the
        writes of a delivery settled as done are."""
        self._flush(writes or [])
        self.inbox.fail(row.pk, self.name, error)

    def _retry_later(self, row: DeliveryRow, error: str, delay: float) -> None:
        self._flush()
        self.inbox.retry_later(row.pk, self.name, error, delay)

    def _start(self, row: DeliveryRow, late: bool) -> bool:
        """Start `row` if its turn has come, else park it (blocking SQL); see Inbox.start.
        What this worker has handled and not yet settled is settled first."""
        hold = self.hold_seconds
        pending, self._unsettled = self._unsettled, []
        writes, self._writes = self._writes, []
        finished = _finished(pending)
        settled, started = self.inbox.finish_and_start(
            finished, row, self.name, writes=writes, hold_seconds=hold, late=late
        )
        _log_settles(pending, settled)
        if started:
            self.parks.pop(row.pk, None)
            return True
        if row.thread_key:
            # It may be held back only by deliveries whose thread is not known yet
            # (stored since the last look, or more than one look takes): work those
            # out and ask again.
            window = row.received_at + timedelta(seconds=hold)
            for _ in range(ORDER_RETRIES):
                if not self.order_waiting(received_by=window):
                    break
                if self.inbox.start(row, self.name, hold_seconds=hold, late=late):
                    self.parks.pop(row.pk, None)
                    return True
        self._park(row)
        return False

    def _park(self, row: DeliveryRow) -> None:
        """Give `row` back to wait for an earlier delivery of its thread (blocking SQL).
        Each park in a row waits twice as long; logged at DEBUG only, as a busy thread
        may park many deliveries many times."""
        self._flush()
        times = self.parks.get(row.pk, 0)
        if len(self.parks) >= PARKS_KEPT:
            self.parks.clear()
        self.parks[row.pk] = times + 1
        delay = min(PARK_SECONDS * 2**times, PARK_MAX_SECONDS)
        why = f"waiting for an earlier delivery of {row.thread_key}"
        if self.inbox.park(row.pk, self.name, why, delay):
            log.debug("delivery %s parked for %.1fs: %s", row.pk, delay, why)
        else:
            log.warning("delivery %s: lease lost before its turn", row.pk)

    async def _settle(
        self,
        row: DeliveryRow,
        outcome: Outcome,
        started: datetime,
        writes: list[Write],
        *,
        late: bool,
    ) -> None:
        """Settle a handled delivery with this worker's next statement, in the same
        thread call (one hop fewer per delivery): the next delivery's start, a park, a
        failure, a retry, the next claim (`run`: one commit for a batch's last settles
        and the next batch) or the end of the batch. It is always committed before the
        next delivery of its thread starts (whose start, in the same thread, waits for
        it), so a worker that dies leaves it as it would have: handled, not settled,
        taken over when its lease runs out. The handlers' `writes`
        (Context.with_settle) are committed in the same transaction."""
        note = f"{OUT_OF_ORDER}; {outcome.note}" if late else outcome.note
        # The log context (delivery, thread, installation) goes along for the settle's line.
        self._unsettled.append((row, outcome.status, note, started, contextvars.copy_context()))
        self._writes += writes

    def _flush(self, more: list[Write] | None = None) -> None:
        """Settle what was handled since the last statement, with its handlers' writes
        and `more` (blocking SQL)."""
        pending, self._unsettled = self._unsettled, []
        writes, self._writes = self._writes + (more or []), []
        if not pending and not writes:
            return
        finished = _finished(pending)
        settled, _ = self.inbox.finish_and_start(finished, None, self.name, writes=writes)
        _log_settles(pending, settled)

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


def _finished(pending: list[Unsettled]) -> list[tuple[int, str, str]]:
    """The settles of `pending` as `Inbox.finish_in` takes them: (pk, status, note)."""
    return [(row.pk, status, note) for row, status, note, _, _ in pending]


def _log_settles(pending: list[Unsettled], settled: list[bool]) -> None:
    now = utcnow()
    for (row, status, note, started, context), ok in zip(pending, settled, strict=True):
        elapsed = (now - started).total_seconds() * 1000
        context.run(_settled, row, status, note, elapsed, ok)


def _settled(row: DeliveryRow, status: str, note: str, elapsed: float, settled: bool) -> None:
    """Log and count a settle (run in the handled delivery's log context)."""
    if settled:
        log.info("delivery %s %s in %.1f ms: %s", row.pk, status, elapsed, note)
        _count(row, status)
    else:
        log.warning("delivery %s: lease lost before it was settled", row.pk)


def _count(row: DeliveryRow, outcome: str) -> None:
    metrics.DELIVERIES_HANDLED.labels(row.host, outcome).inc()
    if outcome in ("failed", "retry"):
        metrics.ERRORS.labels(f"delivery_{outcome}").inc()


def _with_order(row: DeliveryRow, prepared: Prepared) -> DeliveryRow:
    """`row` with its place in its thread, as just written when it had none."""
    if row.thread_key is not None:
        return row
    order = prepared.order
    return replace(row, thread_key=order.thread_key, event_time=order.event_time)


def _place(row: DeliveryRow) -> tuple[datetime, datetime, int]:
    return row.order
