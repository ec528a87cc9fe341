"""Group commit for ingress: deliveries arriving together are stored in one transaction.

Each request still waits for its own delivery to be committed before it is answered;
what changes is that one commit covers every delivery that arrived while the previous
commit was running. The event loop gathers the deliveries verified in one pass over
its ready callbacks and hands them to a thread of its own in one piece; while that
thread commits, the next deliveries gather, and they go the moment the commit ends.
At most one batch is in the thread at a time, so each commit is as large as the load
makes it, and the thread wakes once per batch, not once per delivery. The thread keeps
one database connection for its whole life instead of taking one from the pool per
batch (the pool's bookkeeping cost more than a batch's own Python, bench/README.md).
On SQLite that connection leaves checkpoints to a `Checkpointer` thread
(bot/db/checkpoint.py), so no delivery's commit also copies the log back.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from bot.db.checkpoint import Checkpointer, defer_checkpoints
from bot.delivery import IncomingDelivery
from bot.inbox import Inbox, StoreResult

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
        self.checkpointer = Checkpointer(inbox.engine)
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._running = False  # the thread takes batches (cheaper to ask than is_alive)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gathered: list[_Pending] = []
        self._handoff_due = False  # a handoff is scheduled on the loop
        self._in_thread = False  # a batch is being committed
        self._connection: Any = None  # the thread's own, taken on first use
        self._drained = asyncio.Event()  # set when nothing is gathered or in the thread

    async def store(self, item: IncomingDelivery) -> StoreResult:
        """Store one delivery; returns once it is committed, raises if it could not be."""
        loop = self._loop
        if loop is None or not self._running:
            raise RuntimeError("the delivery writer is not running")
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._gathered.append((item, future))
        if not self._handoff_due and not self._in_thread:
            self._handoff_due = True
            loop.call_soon(self._hand_off)
        return await future

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="delivery-writer", daemon=True)
        self._running = True
        self.checkpointer.start()
        self._thread.start()

    async def close(self) -> None:
        """Store what has already gathered, then stop."""
        if self._thread is None:
            return
        if self._thread.is_alive() and (self._gathered or self._in_thread):
            self._drained.clear()
            await self._drained.wait()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self.checkpointer.stop)

    def _hand_off(self) -> None:
        """On the loop: send what has gathered to the thread, one batch at a time."""
        self._handoff_due = False
        if self._in_thread or not self._gathered:
            return
        batch = self._gathered[: self.max_batch]
        del self._gathered[: self.max_batch]
        self._in_thread = True
        self._queue.put(batch)

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is _STOP:
                    return
                outcomes = self._commit(batch)
                self.checkpointer.written()
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._settle, batch, outcomes)
        finally:
            self._running = False
            if self._connection is not None:
                self._connection.close()

    def _commit(self, batch: list[_Pending]) -> list[StoreResult | BaseException]:
        items = [item for item, _ in batch]
        try:
            return list(self._store(items))
        except Exception as exc:
            # The connection may have been what failed (the database restarted, say):
            # once more on a new one before anyone is answered 503.
            log.warning("storing %d deliveries failed (%s); trying again", len(items), exc)
        try:
            return list(self._store(items))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # One bad delivery must not sink the others: store them one by one.
            log.warning(
                "storing %d deliveries together failed (%s); storing singly", len(batch), exc
            )
            return [self._commit([pending])[0] for pending in batch]

    def _store(self, items: list[IncomingDelivery]) -> list[StoreResult]:
        if self._connection is None:
            self._connection = self.inbox.ingress_connection()
            if self.checkpointer.enabled:
                defer_checkpoints(self._connection.dbapi_connection)
        try:
            return self.inbox.store_many(items, connection=self._connection)
        except Exception as exc:
            engine = self.inbox.engine
            lost = isinstance(
                exc, engine.dialect.loaded_dbapi.Error
            ) and engine.dialect.is_disconnect(exc, self._connection.dbapi_connection, None)
            self._connection.invalidate()  # the next attempt starts on a new connection
            self._connection = None
            if lost:
                # The server went away (a restart, say): the pool's idle connections
                # went with it, whether or not their sockets show it yet. As SQLAlchemy
                # does for its own statements, trust none of them: they are closed, those
                # in use are dropped when they come back, and the next one is new.
                engine.dispose()
            raise

    def _settle(self, batch: list[_Pending], outcomes: list[StoreResult | BaseException]) -> None:
        self._in_thread = False
        self._hand_off()  # what gathered during the commit goes now
        if not self._in_thread:
            self._drained.set()
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
