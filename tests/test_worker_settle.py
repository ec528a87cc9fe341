"""A handled delivery's settle: its handlers' writes go in the settle's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import Connection, Engine, event

from bot.delivery import IncomingDelivery
from bot.events import CommentEvent
from bot.history import CommentHistory
from bot.inbox import Inbox
from bot.router import Context, Router
from tests import payloads as p
from tests.test_inbox import _worker, incoming
from tests.test_sessions import eventually


class Recorder:
    """Records each comment with its settle, then fails its first `failures` calls."""

    def __init__(self, engine: Engine, failures: int = 0) -> None:
        self.history = CommentHistory(engine)
        self.failures = failures
        self.calls = 0
        self.seen_before_settle: list[int] = []
        self.on_handle: Callable[[], object] = lambda: None
        self.router = Router()
        self.router.register(CommentEvent)(self.handle)

    async def handle(self, event: CommentEvent, ctx: Context) -> None:
        self.calls += 1
        assert ctx.with_settle is not None, "the worker lets writes wait for the settle"
        fresh = await ctx.runtime.record_comment(event, ctx.delivery_pk, ctx.with_settle)
        assert fresh is None, "not known until the settle"
        self.seen_before_settle.append(len(self.history.all()))
        self.on_handle()
        if self.calls <= self.failures:
            raise ConnectionError(f"host unreachable (call {self.calls})")


async def test_a_comment_is_recorded_in_the_transaction_that_settles_it(engine: Engine) -> None:
    inbox = Inbox(engine)
    stored = inbox.store_many([incoming(1), incoming(2)])
    recorder = Recorder(engine)
    await _worker(inbox, recorder.router, engine).run_once()
    assert recorder.seen_before_settle == [0, 1], "each recorded with its settle, not before"
    kept = [(r.delivery_pk, r.body) for r in recorder.history.all()]
    assert kept == [(stored[0].pk, "comment 1"), (stored[1].pk, "comment 2")]
    assert inbox.counts() == {"done": 2}


async def test_a_retried_delivery_records_once_and_a_failed_one_keeps_its_record(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    [stored] = inbox.store_many([incoming(1)])
    recorder = Recorder(engine, failures=1)
    worker = _worker(inbox, recorder.router, engine, max_attempts=2)
    await worker.run_once()
    assert recorder.history.all() == [], "a retried attempt's writes are dropped"
    await worker.run_once()
    assert [r.delivery_pk for r in recorder.history.all()] == [stored.pk]
    assert inbox.counts() == {"done": 1}

    [failing] = inbox.store_many([incoming(2)])
    recorder.failures, recorder.calls = 1, 0
    await _worker(inbox, recorder.router, engine, max_attempts=1).run_once()
    assert inbox.counts() == {"done": 1, "failed": 1}
    assert [r.delivery_pk for r in recorder.history.all()] == [stored.pk, failing.pk]


def test_a_write_that_fails_leaves_the_settle_and_the_start_undone(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(1), incoming(2)])
    first, second = inbox.claim("w", limit=2, lease_seconds=30)
    assert inbox.start(first, "w")

    def broken(connection: Connection) -> None:
        raise RuntimeError("write failed")

    with pytest.raises(RuntimeError):
        inbox.finish_and_start([(first.pk, "done", "ok")], second, "w", writes=[broken])
    rows = [inbox.get(str(pk)) for pk in (first.pk, second.pk)]
    assert [(r.status, r.attempts) for r in rows if r] == [("processing", 1), ("processing", 0)]

    settled, started = inbox.finish_and_start([(first.pk, "done", "ok")], second, "w")
    assert (settled, started) == ([True], True)
    rows = [inbox.get(str(pk)) for pk in (first.pk, second.pk)]
    assert [(r.status, r.attempts) for r in rows if r] == [("done", 1), ("processing", 1)]


def thread_comment(number: int, n: int) -> IncomingDelivery:
    """Comment `n` on issue `number` (a thread of its own per issue)."""
    body = p.encode(p.issue_comment(f"comment {n}", number=number, comment_id=100 + n))
    return replace(incoming(n), delivery_id=f"d-{number}-{n}", body=body)


async def test_a_claim_starts_its_thread_heads_together_and_settles_them_together(
    engine: Engine,
) -> None:
    """Five threads, the first with two comments: the five heads start in one
    transaction, the follower only with its head's settle, and the rest is settled at
    the end of the batch. Each is charged one attempt and recorded once, with its
    settle."""
    inbox = Inbox(engine)
    threads = [thread_comment(1, 1), thread_comment(1, 2)]
    threads += [thread_comment(k, k + 1) for k in (2, 3, 4, 5)]
    stored = inbox.store_many(threads)
    recorder = Recorder(engine)
    commits: list[str] = []

    def count(conn: Connection) -> None:
        commits.append("commit")

    event.listen(engine, "commit", count)
    try:
        assert await _worker(inbox, recorder.router, engine).run_once() == 6
    finally:
        event.remove(engine, "commit", count)
    rows = [inbox.get(str(s.pk)) for s in stored]
    assert [(r.status, r.attempts) for r in rows if r] == [("done", 1)] * 6
    assert sorted(r.delivery_pk for r in recorder.history.all()) == [s.pk for s in stored]
    # Issue 1's second comment started with its head's settle, so it saw that record;
    # the later heads were started before and see only what was settled by then.
    assert recorder.seen_before_settle == [0, 1, 1, 1, 1, 1]
    # The look's orders, the claim and the heads' start together, the follower's start
    # with its head's settle, the batch's end: three commits for six deliveries (one
    # per start and settle before).
    assert len(commits) == 3


async def test_a_running_worker_settles_a_batch_with_its_next_claim_or_when_it_stops(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    stored = inbox.store_many([thread_comment(k, k) for k in (1, 2, 3)])
    recorder = Recorder(engine)
    # A long poll: after the empty claim that settles the batch it sleeps until stopped.
    worker = _worker(inbox, recorder.router, engine, poll_seconds=60)
    commits: list[str] = []

    def count(conn: Connection) -> None:
        commits.append("commit")

    event.listen(engine, "commit", count)
    try:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await eventually(lambda: inbox.counts() == {"done": 3}, "the batch settled")
        # The look's orders, the claim and the starts; then the settles with the next
        # (empty) claim: two commits for the three.
        assert len(commits) == 2
        stop.set()
        await asyncio.wait_for(running, 10)

        # Stopped with a batch handled: its settles are not left behind.
        more = inbox.store_many([thread_comment(k, k) for k in (4, 5)])
        stop = asyncio.Event()
        recorder.on_handle = lambda: stop.set()  # the worker stops after this batch
        await asyncio.wait_for(worker.run(stop), 10)
    finally:
        event.remove(engine, "commit", count)
    assert inbox.counts() == {"done": 5}
    recorded = sorted(r.delivery_pk for r in recorder.history.all())
    assert recorded == [s.pk for s in stored + more]
