"""Group commit for ingress: deliveries arriving together are stored in one transaction.

Each request still waits for its own delivery to be committed before it is answered;
what changes is that one commit covers every delivery that arrived while the previous
commit was running. A thread of its own does the storing: it takes whatever is waiting
as soon as a commit ends, without a round trip through the event loop, and hands the
results back to the loop in one call per batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from bot.inbox import Inbox, StoreResult
from bot.webhooks import IncomingDelivery

log = logging.getLogger(__name__)

_Pending = tuple[IncomingDelivery, "asyncio.Future[StoreResult]"]
_STOP = None


class DeliveryWriter:
    def __init__(
        self,
        inbox: Inbox,
        *,
        max_batch: int = 200,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self.on_stored = on_stored
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def store(self, item: IncomingDelivery) -> StoreResult:
        """Store one delivery; returns once it is committed, raises if it could not be."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the delivery writer is not running")
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        self._queue.put((item, future))
        return await future

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="delivery-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Store what is already queued, then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)  # finish this batch, then stop
                    break
                batch.append(more)
            outcomes = self._commit(batch)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._settle, batch, outcomes)

    def _commit(self, batch: list[_Pending]) -> list[StoreResult | BaseException]:
        try:
            return list(self.inbox.store_many([item for item, _ in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # One bad delivery must not sink the others: store them one by one.
            log.warning(
                "storing %d deliveries together failed (%s); storing singly", len(batch), exc
            )
            return [self._commit([pending])[0] for pending in batch]

    def _settle(self, batch: list[_Pending], outcomes: list[StoreResult | BaseException]) -> None:
        stored = False
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request went away (client disconnected)
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
                stored = True
        if stored and self.on_stored is not None:
            self.on_stored()
