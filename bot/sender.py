"""The outbox's sender: claims rows, keeps their lease while a write is in flight, and
sends each through its host adapter exactly once (see bot/outbox.py for the rules)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from bot import metrics
from bot.clock import utcnow, worker_name
from bot.db.calls import StoreCalls
from bot.db.outage import Outage
from bot.hosts.base import (
    CommitState,
    DiffComment,
    HostClient,
    HostError,
    NotFound,
    Posted,
    RateLimited,
)
from bot.log import bind
from bot.loops import nap
from bot.outbox import (
    COMMENT,
    COMMIT_STATE,
    MAX_RETRY_DELAY,
    REACTION,
    RESOLVE,
    REVIEW,
    SUPERSEDED,
    UNPACED_HOSTS,
    UPSERT,
    Claim,
    Outbox,
    OutboxRow,
    marker,
    with_marker,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


ClientFor = Callable[[str, int | None], HostClient]
FailureHook = Callable[[OutboxRow, str], Awaitable[None]]
DEFAULT_LEASE_SECONDS = 15.0


class LeaseLost(Exception):
    """The row's lease could not be renewed: another sender may have taken it over."""


class Sender:
    """Sends outbox rows through the host adapters, one at a time per pacing slot."""

    def __init__(
        self,
        outbox: Outbox,
        client_for: ClientFor,
        *,
        min_interval: float = 1.0,
        max_attempts: int = 8,
        retry_seconds: float = 60.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = 1.0,
        ambiguous_wait: float = 60.0,
        send_timeout: float = 120.0,
        on_failed: FailureHook | None = None,
        name: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.calls = StoreCalls.for_engine(outbox.engine)  # inline on SQLite
        self.client_for = client_for
        self.min_interval = min_interval
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        # A request we gave up on may still be carried out by the host a little later;
        # look for its marker only after that could have happened.
        self.ambiguous_wait = ambiguous_wait
        # The longest one send (a token, a marker lookup of a few pages, one write) may
        # take while its lease is renewed; then it is given up as an unclear outcome.
        self.send_timeout = send_timeout
        self.on_failed = on_failed
        self.name = name or "sender-" + worker_name()
        self.wakeup = asyncio.Event()
        self._next: Claim | None = None  # what the last send's settle claimed
        self._next_at: datetime | None = None  # when the last empty claim said to look again

    def backoff(self, attempts: int) -> float:
        return float(min(self.retry_seconds * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        finally:
            await self._give_back()

    async def _give_back(self) -> None:
        """A row the last settle claimed but that will not be sent now (stopping) goes
        back at once, not after its lease lapses (which would also make the next sender
        look for it on the host first)."""
        claimed, self._next = self._next, None
        if claimed is not None and claimed.row is not None:
            with contextlib.suppress(Exception):  # else its lease lapses, as after a crash
                await self.calls(self.outbox.give_back, claimed.row, self.name)

    async def _run(self, stop: asyncio.Event) -> None:
        outage = Outage(log, f"outbox sender {self.name}")
        while not stop.is_set():
            if self._next is None:  # (a settle that claimed the next row cleared it)
                self.wakeup.clear()  # before looking: a wake during the look is kept
            try:
                sent = await self.send_once()
                outage.ok()
            except Exception as exc:
                outage.failed(exc, "claim a write")
                sent = False
            if sent:
                continue
            wait = self.poll_seconds
            upcoming, self._next_at = self._next_at, None  # from the claim that found nothing
            if upcoming is not None:
                wait = min(wait, max((upcoming - utcnow()).total_seconds(), 0.005))
            await nap(self.wakeup, stop, wait)

    async def send_once(self) -> bool:
        """Claim and send one row (or the one the last send's settle claimed); False when
        nothing could be sent now."""
        claimed, self._next = self._next, None
        if claimed is None:
            claimed = await self.calls(
                self.outbox.claim_to_send,
                self.name,
                min_interval=self.min_interval,
                lease_seconds=self.lease_seconds,
            )
        row = claimed.row
        if row is None:
            self._next_at = claimed.next_at
            return False
        with bind(thread=row.thread.key, installation=row.installation_id):
            await self._send(row, claimed)
        return True

    async def _send(self, row: OutboxRow, claimed: Claim) -> None:
        if claimed.superseded:
            await self.calls(self.outbox.settle, row, self.name, SUPERSEDED, sent_at=utcnow())
            return
        timer = metrics.Timer()
        # The slot was taken when the row was claimed; spacing is also counted from the
        # end of this write, so a slow write does not let the next one crowd it.
        hold = self.min_interval if row.host not in UNPACED_HOSTS else 0.0
        try:
            try:
                result = await self._leased(row, self._perform(row, claimed))
                metrics.SEND_SECONDS.labels(row.host, row.kind).observe(timer.seconds())
            except BaseException:
                if hold > 0:
                    await self.calls(self.outbox.hold_installation, row.pacing_key, hold)
                raise
        except LeaseLost:
            log.warning("outbox row %s: lease lost mid-send; left to whoever took it", row.pk)
            return
        except HostError as exc:
            await self._failed_attempt(row, exc)
            return
        except Exception as exc:
            # A bug or an unexpected library error: count it as an attempt, keep the row,
            # and since nobody knows how far the write got, look for it before writing.
            log.exception("outbox row %s (%s) raised unexpectedly", row.pk, row.kind)
            await self._failed_attempt(
                row, HostError(f"{type(exc).__name__}: {exc}", retryable=True, ambiguous=True)
            )
            return
        # The settle claims the next row in its transaction; a wake from here on is kept.
        self.wakeup.clear()
        settled, self._next = await self.calls(
            self.outbox.sent_and_claim,
            row,
            self.name,
            result,
            hold=hold,
            min_interval=self.min_interval,
            lease_seconds=self.lease_seconds,
        )
        if settled:
            metrics.OUTBOX_SENDS.labels(row.host, row.kind, "sent").inc()
            log.info("outbox row %s %s sent to %s", row.pk, row.kind, row.thread.key)
        else:
            log.warning("outbox row %s: lease lost before it was settled", row.pk)

    async def _leased(self, row: OutboxRow, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` (the host calls of one send) while renewing `row`'s lease.

        It is cancelled when the lease is lost (LeaseLost) or after `send_timeout`
        (an unclear outcome: the write may have happened).
        """
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        held_until = loop.time() + self.lease_seconds
        # The keeper starts when the first renewal is due: most sends are over long
        # before that, and then cost no task of their own.
        keeper: asyncio.Task[None] | None = None

        def keep() -> None:
            nonlocal keeper
            if not task.done():
                keeper = asyncio.create_task(self._keep_lease(row, task, held_until))

        first = loop.call_later(self.lease_seconds / 3, keep)
        try:
            done, _ = await asyncio.wait([task], timeout=self.send_timeout)
        finally:
            first.cancel()
            if keeper is not None:
                keeper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
            if keeper is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        if not done:
            raise HostError(
                f"the send took longer than {self.send_timeout:g} s",
                retryable=True,
                ambiguous=True,
            )
        if task.cancelled():
            raise LeaseLost(row.pk)
        return task.result()

    async def _keep_lease(
        self, row: OutboxRow, task: asyncio.Future[Any], held_until: float
    ) -> None:
        """Extend the lease (held until `held_until`, loop time) now and then every third
        of a lease while `task` runs.

        `task` is cancelled once the lease is gone, or would run out before it could be
        confirmed again (the database is unreachable from here): another sender may
        take the row over then, and must find this one stopped, not still writing.
        """
        loop = asyncio.get_running_loop()
        period = self.lease_seconds / 3
        while True:
            asked = loop.time()
            try:
                kept = await self.calls(self.outbox.renew, row, self.name, self.lease_seconds)
            except Exception:
                log.warning("outbox row %s: could not renew its lease", row.pk, exc_info=True)
                if loop.time() + period < held_until:
                    await asyncio.sleep(period)
                    continue
                kept = False
            if not kept:
                task.cancel()
                return
            held_until = asked + self.lease_seconds
            await asyncio.sleep(period)

    async def _failed_attempt(self, row: OutboxRow, exc: HostError) -> None:
        error = f"{type(exc).__name__}: {exc}" + (f" (HTTP {exc.status})" if exc.status else "")
        # A rate limit is no failed attempt: the host refused the write and said when to
        # come back (the installation's slot is pushed back to then). It costs no
        # attempt, however long it lasts; the row stays pending, its last error says why.
        limited = isinstance(exc, RateLimited)
        if limited:
            hold = exc.retry_after if exc.retry_after is not None else self.backoff(row.attempts)
            await self.calls(self.outbox.hold_installation, row.pacing_key, hold)
        if exc.retryable and (limited or row.attempts < self.max_attempts):
            delay = exc.retry_after if exc.retry_after is not None else self.backoff(row.attempts)
            if exc.ambiguous:
                delay = max(delay, self.ambiguous_wait)
            await self.calls(
                self.outbox.retry_later,
                row,
                self.name,
                error,
                delay,
                exc.ambiguous,
                charged=not limited,
            )
            metrics.count_send(row.host, row.kind, "retry")
            log.warning(
                "outbox row %s attempt %d failed (%s); retry in %.0fs",
                row.pk,
                row.attempts,
                error,
                delay,
            )
            return
        await self.calls(self.outbox.fail, row, self.name, error)
        metrics.count_send(row.host, row.kind, "failed")
        log.error(
            "outbox row %s %s to %s failed for good: %s", row.pk, row.kind, row.thread.key, error
        )
        if self.on_failed is not None:
            await self.on_failed(row, error)

    async def _perform(self, row: OutboxRow, claimed: Claim) -> dict[str, Any]:
        """The host calls of one write; `claimed`: its claim, with what it found known of
        an edited-in-place comment."""
        client = self.client_for(row.host, row.installation_id)
        p = row.payload
        if row.kind == COMMENT:
            if row.maybe_sent and (found := await client.find_comment(row.thread, marker(row.key))):
                return _posted(found, recovered=True)
            return _posted(await client.post_comment(row.thread, with_marker(p["body"], row.key)))
        if row.kind == UPSERT:
            return await self._upsert(client, row, claimed)
        if row.kind == REACTION:
            await client.add_reaction(row.thread, p["comment_id"], p["content"])
            return {}
        if row.kind == REVIEW:
            comments = [
                DiffComment(**{**c, "body": with_marker(c["body"], f"{row.key}.{n}")})
                for n, c in enumerate(p["comments"])
            ]
            if row.maybe_sent:
                found = await client.find_comment(row.thread, marker(f"{row.key}.0"))
                if found is not None:
                    return {"recovered": True, "first": _posted(found)}
            posted = await client.create_review(row.thread, p["commit_sha"], comments, p["body"])
            return {"comments": [_posted(c) for c in posted]}
        if row.kind == RESOLVE:
            await client.resolve_thread(row.thread)
            return {}
        if row.kind == COMMIT_STATE:
            await client.set_commit_state(row.thread.repo, CommitState(**p))
            return {}
        raise HostError(f"unknown outbox kind {row.kind!r}")

    async def _upsert(self, client: HostClient, row: OutboxRow, claimed: Claim) -> dict[str, Any]:
        """Edit the comment in place once its id is known; else post it, at most once.

        The marker is the coalesce key, the same in every version, so any version finds
        a comment that an earlier one posted.
        """
        key = row.coalesce_key
        assert key is not None
        known = claimed.posted
        body = with_marker(row.payload["body"], key)
        if known is not None and known.comment_id is not None:
            try:
                await client.edit_comment(row.thread, known.comment_id, body)
                return {"id": known.comment_id, "url": known.url, "edited": True}
            except NotFound:
                pass  # someone deleted the comment: post it again
        elif known is not None or row.maybe_sent:
            # Some version (this one, an older one, or a sender that died) tried to post
            # it and its id was never saved: it may be there already.
            found = await client.find_comment(row.thread, marker(key))
            if found is not None:
                await client.edit_comment(row.thread, found.id, body)
                return _posted(found, recovered=True)
        if not claimed.marked:  # the claim wrote the record for a first post
            await self.calls(self.outbox.posting, key, row.thread)
        posted = await client.post_comment(row.thread, body)
        return _posted(posted)  # its id is remembered with the row's settle


def _posted(posted: Posted, *, recovered: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"id": posted.id, "url": posted.url}
    if posted.thread_id is not None:
        result["thread_id"] = posted.thread_id
    if recovered:
        result["recovered"] = True
    return result
