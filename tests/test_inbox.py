"""The inbox and the worker against a real database: claims, leases, retries, failure, replay."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.clock import utcnow
from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.delivery import IncomingDelivery
from bot.events import CommentEvent, normalize
from bot.history import CommentHistory
from bot.inbox import Inbox
from bot.installations import InstallationStore
from bot.outbox import Outbox
from bot.router import Context, Router
from bot.runtime import Runtime
from bot.worker import Dispatcher, Worker
from tests import payloads as p


def incoming(n: int, *, event: str = "issue_comment", handled: bool = True) -> IncomingDelivery:
    body = p.encode(p.issue_comment(f"comment {n}", comment_id=100 + n))
    return IncomingDelivery(
        host="github",
        delivery_id=f"d-{n}",
        event=event,
        action="created",
        headers={"Content-Type": "application/json", "X-GitHub-Event": event},
        body=body,
        handled=handled,
    )


def test_store_many_dedupes_within_and_across_batches(engine: Engine) -> None:
    inbox = Inbox(engine)
    first = inbox.store_many([incoming(1), incoming(2), incoming(1)])
    assert [r.duplicate for r in first] == [False, False, True]
    assert first[2].pk == first[0].pk
    again = inbox.store_many([incoming(2), incoming(3, event="star", handled=False)])
    assert [(r.duplicate, r.status) for r in again] == [(True, "pending"), (False, "ignored")]
    assert inbox.counts() == {"pending": 2, "ignored": 1}


def test_each_stored_delivery_gets_its_own_row_id(engine: Engine) -> None:
    # On SQLite a batch is one INSERT with no RETURNING; the ids are worked out from
    # the last row id, so check each one against the row it names.
    inbox = Inbox(engine)
    inbox.store_many([incoming(n) for n in range(3)])
    batch = [incoming(n) for n in range(10, 60)] + [incoming(99, event="star", handled=False)]
    results = inbox.store_many(batch)
    assert not any(r.duplicate for r in results)
    for item, result in zip(batch, results, strict=True):
        row = inbox.get(str(result.pk))
        assert row is not None
        assert (row.delivery_id, row.status) == (item.delivery_id, result.status)
    assert results[-1].status == "ignored"


def test_a_batch_with_redeliveries_tells_new_from_stored(engine: Engine) -> None:
    inbox = Inbox(engine)
    [first] = inbox.store_many([incoming(1)])
    inbox.store_many([incoming(5)])
    [third] = inbox.store_many([incoming(3)])  # the id just below the batch's new ones
    batch = [incoming(n) for n in (0, 1, 2, 3, 4, 2)]
    results = inbox.store_many(batch)
    assert [r.duplicate for r in results] == [False, True, False, True, False, True]
    assert (results[1].pk, results[3].pk) == (first.pk, third.pk)
    assert results[5].pk == results[2].pk
    for item, result in zip(batch, results, strict=True):
        row = inbox.get(str(result.pk))
        assert row is not None
        assert row.delivery_id == item.delivery_id
    assert inbox.counts() == {"pending": 6}


def test_a_kept_connection_is_left_in_transactions(engine: Engine) -> None:
    # Ingress's writer keeps one connection; storing must leave it as it found it,
    # so that later work on it (or on the pool, once it goes back) is transactional.
    inbox = Inbox(engine)
    raw = engine.raw_connection()
    try:
        inbox.store_many([incoming(1)], connection=raw)
        cursor = raw.cursor()
        cursor.execute("UPDATE deliveries SET note = 'not kept'")
        raw.rollback()
    finally:
        raw.close()
    row = inbox.get("d-1")
    assert row is not None
    assert row.note is None


def test_ingress_waits_for_a_write_lock_held_elsewhere(engine: Engine) -> None:
    # Ingress's own connection skips SQLite's coarse busy handler and tries again in
    # short steps; on PostgreSQL the row lock is simply waited for.
    inbox = Inbox(engine)
    inbox.store_many([incoming(1)])
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with engine.begin() as conn:  # a write transaction, like a worker's commit
            conn.exec_driver_sql("UPDATE deliveries SET note = 'held' WHERE delivery_id = 'd-1'")
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(5)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    raw = inbox.ingress_connection()
    try:
        [stored] = inbox.store_many([incoming(2)], connection=raw)
    finally:
        raw.close()
        timer.join()
        holder.join()
    assert not stored.duplicate
    assert inbox.counts() == {"pending": 2}


def test_the_pool_keeps_its_busy_timeout_after_ingress_connections(tmp_path: Path) -> None:
    # SQLite only: the ingress connection turns SQLite's busy handler off for itself.
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}")
    try:
        upgrade(engine)
        inbox = Inbox(engine)
        for _ in range(3):
            inbox.ingress_connection().close()
        for _ in range(3):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_claims_are_exclusive_and_leases_expire(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(n) for n in range(5)])
    # Long enough that a loaded machine cannot let it lapse before the asserts below.
    a = inbox.claim("worker-a", limit=3, lease_seconds=1.5)
    b = inbox.claim("worker-b", limit=10, lease_seconds=30)
    assert [r.delivery_id for r in a] == ["d-0", "d-1", "d-2"]
    assert [r.delivery_id for r in b] == ["d-3", "d-4"]
    assert inbox.claim("worker-c", limit=10, lease_seconds=30) == []
    assert inbox.start(a[0], "worker-a")  # its first delivery's handling began

    time.sleep(1.6)  # worker-a "died": its leases run out and worker-c takes over
    taken = inbox.claim("worker-c", limit=10, lease_seconds=30)
    # Only the delivery worker-a had started was charged an attempt.
    assert [(r.delivery_id, r.attempts) for r in taken] == [("d-0", 1), ("d-1", 0), ("d-2", 0)]
    assert not inbox.finish(a[0].pk, "worker-a", "done"), "a lost lease must not settle"
    assert inbox.finish(a[0].pk, "worker-c", "done")
    assert inbox.renew([a[1].pk], "worker-a", 30) == set()
    assert inbox.renew([a[0].pk, a[1].pk, a[2].pk], "worker-c", 30) == {a[1].pk, a[2].pk}


def test_a_claim_takes_abandoned_leases_first_then_deliveries_as_they_fell_due(
    engine: Engine,
) -> None:
    now = [utcnow()]
    inbox = Inbox(engine, clock=lambda: now[0])
    stored = inbox.store_many([incoming(n) for n in range(5)])
    pk = {f"d-{n}": r.pk for n, r in enumerate(stored)}
    first = inbox.claim("worker-a", limit=2, lease_seconds=30)
    assert [r.delivery_id for r in first] == ["d-0", "d-1"]
    assert inbox.retry_later(pk["d-1"], "worker-a", "boom", 10)  # due again 10 s on
    now[0] += timedelta(seconds=60)  # worker-a's lease on d-0 has run out
    taken = inbox.claim("worker-b", limit=3, lease_seconds=30)
    # d-0 was abandoned; d-2 and d-3 fell due before the retried d-1 did.
    assert [r.delivery_id for r in taken] == ["d-0", "d-2", "d-3"]
    rest = inbox.claim("worker-c", limit=10, lease_seconds=30)
    assert [r.delivery_id for r in rest] == ["d-1", "d-4"]
    assert [r.attempts for r in taken + rest] == [0, 0, 0, 0, 0], "a claim charges nothing"


def test_concurrent_claimers_never_share_a_delivery(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(n) for n in range(200)])
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        start.wait()
        mine = claimed.setdefault(name, [])
        while rows := inbox.claim(name, limit=7, lease_seconds=60):
            mine.extend(r.pk for r in rows)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [pk for pks in claimed.values() for pk in pks]
    assert len(everything) == 200
    assert len(set(everything)) == 200


def test_a_comment_is_recorded_once_per_delivery(engine: Engine) -> None:
    # The insert reports a repeat by its row count (no RETURNING): the first call
    # says it recorded the comment, the second that the delivery was recorded before.
    inbox = Inbox(engine)
    [first, second] = inbox.store_many([incoming(1), incoming(2)])
    history = CommentHistory(engine)
    event = normalize("github", "issue_comment", json.loads(incoming(1).body))
    assert isinstance(event, CommentEvent)
    assert history.record(event, first.pk)
    assert not history.record(event, first.pk)
    assert history.record(event, second.pk), "the same comment in another delivery is kept"
    kept = [(r.delivery_pk, r.action, r.body) for r in history.all()]
    assert kept == [(first.pk, "created", "comment 1"), (second.pk, "created", "comment 1")]


def runtime(engine: Engine) -> Runtime:
    return Runtime(
        history=CommentHistory(engine),
        installations=InstallationStore(engine),
        outbox=Outbox(engine),
    )


def _worker(inbox: Inbox, router: Router, engine: Engine, **options: float) -> Worker:
    defaults = {"lease_seconds": 5.0, "poll_seconds": 0.01, "max_attempts": 3, "retry_seconds": 0.0}
    defaults.update(options)
    return Worker(
        inbox,
        Dispatcher(router, runtime(engine), ("threadline",)),
        lease_seconds=defaults["lease_seconds"],
        poll_seconds=defaults["poll_seconds"],
        max_attempts=int(defaults["max_attempts"]),
        retry_seconds=defaults["retry_seconds"],
    )


class Flaky:
    """A handler that fails its first `failures` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.router = Router()
        self.router.register(CommentEvent)(self.handle)

    async def handle(self, event: CommentEvent, ctx: Context) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"host unreachable (call {self.calls})")


async def test_a_failing_handler_is_retried_then_succeeds(engine: Engine) -> None:
    inbox = Inbox(engine)
    [stored] = inbox.store_many([incoming(1)])
    flaky = Flaky(failures=2)
    worker = _worker(inbox, flaky.router, engine)
    for _ in range(3):
        await worker.run_once()
    row = inbox.get(str(stored.pk))
    assert row is not None
    assert (row.status, row.attempts, flaky.calls) == ("done", 3, 3)
    assert row.last_error == "ConnectionError: host unreachable (call 2)"


async def test_a_delivery_that_keeps_failing_is_marked_failed_and_can_be_replayed(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    [stored] = inbox.store_many([incoming(1)])
    flaky = Flaky(failures=3)
    worker = _worker(inbox, flaky.router, engine)
    for _ in range(5):
        await worker.run_once()
    row = inbox.get("d-1")
    assert row is not None
    assert (row.status, row.attempts, flaky.calls) == ("failed", 3, 3)
    assert "host unreachable (call 3)" in (row.last_error or "")
    assert inbox.list(status="failed")[0].pk == stored.pk

    assert inbox.replay(stored.pk)
    await worker.run_once()
    row = inbox.get("d-1")
    assert row is not None
    assert (row.status, row.attempts, flaky.calls) == ("done", 1, 4)


async def test_a_claimed_batch_stays_leased_until_each_delivery_has_its_turn(
    engine: Engine,
) -> None:
    """One worker's batch takes longer than a lease to get through; a second worker
    polling all the while must not take (and handle again) the ones still waiting."""
    inbox = Inbox(engine)
    inbox.store_many([incoming(n) for n in range(4)])
    handled: list[str] = []
    claimed = asyncio.Event()  # the first delivery's handling began: all four are claimed
    router = Router()

    @router.register(CommentEvent)
    async def slow(event: CommentEvent, ctx: Context) -> None:
        handled.append(ctx.delivery_id)
        claimed.set()
        await asyncio.sleep(0.25)

    first = _worker(inbox, router, engine, lease_seconds=0.4)
    second = _worker(inbox, router, engine, lease_seconds=0.4)
    batch = asyncio.create_task(first.run_once())
    await claimed.wait()
    assert inbox.counts() == {"processing": 4}
    stop = asyncio.Event()
    poller = asyncio.create_task(second.run(stop))
    assert await batch == 4  # about 1 s of handling against a 0.4 s lease
    await asyncio.sleep(0.1)
    stop.set()
    await poller
    assert sorted(handled) == ["d-0", "d-1", "d-2", "d-3"]
    assert inbox.counts() == {"done": 4}


async def test_retries_back_off(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(1)])
    flaky = Flaky(failures=1)
    worker = _worker(inbox, flaky.router, engine, retry_seconds=60)
    assert [worker.retry_delay(n) for n in (1, 2, 3, 10)] == [60, 120, 240, 3600]
    await worker.run_once()
    row = inbox.get("d-1")
    assert row is not None
    assert row.status == "pending"
    assert row.next_attempt_at - utcnow() > timedelta(seconds=55)
    assert await worker.run_once() == 0, "not due yet"


async def test_a_broken_payload_fails_at_once_with_its_reason(engine: Engine) -> None:
    inbox = Inbox(engine)
    broken = IncomingDelivery(
        host="github",
        delivery_id="broken",
        event="issue_comment",
        action="created",
        headers={"Content-Type": "application/json"},
        body=b'{"action": "created", "repository": {"full_name": "a/b"}}',
        handled=True,
    )
    inbox.store_many([broken])
    await _worker(inbox, Flaky(0).router, engine).run_once()
    row = inbox.get("broken")
    assert row is not None
    assert (row.status, row.attempts) == ("failed", 1)
    assert "payload has no issue" in (row.last_error or "")


async def test_a_delivery_whose_workers_keep_dying_is_given_up(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(1)])
    for n in range(3):  # three workers start handling it and vanish
        [row] = inbox.claim(f"dead-{n}", limit=1, lease_seconds=0.05)
        assert inbox.start(row, f"dead-{n}")
        await asyncio.sleep(0.1)
    flaky = Flaky(0)
    await _worker(inbox, flaky.router, engine, max_attempts=3).run_once()
    row = inbox.get("d-1")
    assert row is not None
    assert row.status == "failed"
    assert "workers stopped" in (row.last_error or "")
    assert flaky.calls == 0


async def test_the_heartbeat_keeps_a_long_handler_s_lease(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(1)])
    router = Router()
    started, release = asyncio.Event(), asyncio.Event()

    @router.register(CommentEvent)
    async def slow(event: CommentEvent, ctx: Context) -> None:
        started.set()
        await release.wait()  # busy until the test has tried to take the delivery over

    worker = _worker(inbox, router, engine, lease_seconds=0.5)
    busy = asyncio.create_task(worker.run_once())
    # The handler runs only once the worker holds the lease, so waiting for it and
    # then a lease and a half proves the first lease has run out, however slow the
    # machine; only the heartbeat can still be holding the delivery.
    await asyncio.wait_for(started.wait(), timeout=10)
    await asyncio.sleep(0.75)
    try:
        intruder = await asyncio.to_thread(inbox.claim, "intruder", limit=1, lease_seconds=5)
    finally:
        release.set()
    assert intruder == []
    assert await asyncio.wait_for(busy, timeout=10) == 1
    row = inbox.get("d-1")
    assert row is not None
    assert (row.status, row.attempts) == ("done", 1)


@pytest.mark.parametrize("ref", ["1", "d-1"])
def test_get_finds_by_number_or_host_delivery_id(engine: Engine, ref: str) -> None:
    inbox = Inbox(engine)
    inbox.store_many([incoming(1)])
    row = inbox.get(ref)
    assert row is not None
    assert row.delivery_id == "d-1"
    assert inbox.get("nope") is None


def test_a_worker_looks_for_abandoned_deliveries_at_its_first_claim_then_once_a_second(
    engine: Engine,
) -> None:
    now = [utcnow()]
    inbox = Inbox(engine, clock=lambda: now[0])
    inbox.store_many([incoming(1)])
    now[0] += timedelta(seconds=1)  # due
    [row] = inbox.claim("dead", limit=1, lease_seconds=0.5)
    assert inbox.start(row, "dead")
    assert inbox.claim("alive", limit=1, lease_seconds=30) == []  # its first look
    now[0] += timedelta(seconds=0.6)  # the dead worker's lease lapsed
    assert inbox.claim("alive", limit=1, lease_seconds=30) == [], "looked 0.6 s ago"
    now[0] += timedelta(seconds=1)
    [taken] = inbox.claim("alive", limit=1, lease_seconds=30)
    assert (taken.pk, taken.attempts) == (row.pk, 1)
