"""Group commit for ingress: deliveries arriving together are stored in one transaction.

Each request still waits for its own delivery to be committed before it is answered;
what changes is that one commit (one fsync on SQLite) covers every delivery that
arrived while the previous commit was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bot.inbox import Inbox, StoreResult
from bot.webhooks import IncomingDelivery

log = logging.getLogger(__name__)

_Pending = tuple[IncomingDelivery, "asyncio.Future[StoreResult]"]


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
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def store(self, item: IncomingDelivery) -> StoreResult:
        """Store one delivery; returns once it is committed, raises if it could not be."""
        if self._task is None or self._task.done():
            raise RuntimeError("the delivery writer is not running")
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-writer")

    async def close(self) -> None:
        """Store what is already queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.to_thread(self.inbox.store_many, items)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One bad delivery must not sink the others: store them one by one.
            log.warning(
                "storing %d deliveries together failed (%s); storing singly", len(batch), exc
            )
            for pending in batch:
                await self._commit([pending])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)
        if self.on_stored is not None:
            self.on_stored()


def _settle(future: asyncio.Future[StoreResult], outcome: StoreResult | BaseException) -> None:
    if future.done():  # the request went away (client disconnected)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
