"""One thread's deliveries are handled in order across workers, and an attempt is charged
when handling starts, not when a batch is claimed: real database, real worker, handler
hooks that block so the interleavings are the ones the test names."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from bot.delivery import IncomingDelivery
from bot.events import CommentEvent
from bot.history import CommentHistory
from bot.inbox import DeliveryRow, Inbox, Order
from bot.installations import InstallationStore
from bot.outbox import Outbox
from bot.router import Context, Router
from bot.runtime import Runtime
from bot.worker import ORDER_LOOKAHEAD, Dispatcher, Worker
from tests import payloads as p


def comment(
    name: str, body: str, *, at: str, number: int = 7, comment_id: int | None = None
) -> IncomingDelivery:
    """A GitHub issue comment in issue `number`, written at `at` by the host's clock."""
    payload = p.issue_comment(body, number=number, comment_id=comment_id or 100, at=at)
    return IncomingDelivery(
        host="github",
        delivery_id=name,
        event="issue_comment",
        action="created",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "issue_comment"},
        body=p.encode(payload),
        handled=True,
    )


class Recorder:
    """Handlers that note when each comment's handling begins and ends; a comment whose
    body is in `gates` waits there until the test opens the gate."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.finished: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.router = Router()
        self.router.register(CommentEvent)(self.handle)

    def gate(self, body: str) -> asyncio.Event:
        self.entered[body] = asyncio.Event()
        self.gates[body] = asyncio.Event()
        return self.gates[body]

    async def handle(self, event: CommentEvent, ctx: Context) -> None:
        self.log.append(f"start {event.body}")
        if event.body in self.gates:
            self.entered[event.body].set()
            await self.gates[event.body].wait()
        self.log.append(f"end {event.body}")
        self.finished.setdefault(event.body, asyncio.Event()).set()

    async def wait_for(self, body: str) -> None:
        await asyncio.wait_for(self.finished.setdefault(body, asyncio.Event()).wait(), 10)

    def handled(self) -> list[str]:
        return [entry.removeprefix("start ") for entry in self.log if entry.startswith("start")]


def worker(inbox: Inbox, router: Router, engine: Engine, **options: float) -> Worker:
    runtime = Runtime(
        history=CommentHistory(engine),
        installations=InstallationStore(engine),
        outbox=Outbox(engine),
    )
    return Worker(
        inbox,
        Dispatcher(router, runtime, ("threadline",)),
        lease_seconds=options.get("lease_seconds", 5.0),
        poll_seconds=0.01,
        max_attempts=int(options.get("max_attempts", 3)),
        retry_seconds=0.0,
        batch=int(options.get("batch", 20)),
        hold_seconds=options.get("hold_seconds", 0.0),
    )


def row(inbox: Inbox, ref: str) -> DeliveryRow:
    found = inbox.get(ref)
    assert found is not None
    return found


# ------------------------------------------------------------------- attempts


async def test_a_killed_batch_charges_only_the_delivery_whose_handling_began(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    inbox.store_many([comment(f"d-{n}", f"c{n}", at="2026-12-04T10:00:00Z") for n in range(3)])
    batch = inbox.claim("dead", limit=10, lease_seconds=0.05)
    assert [r.attempts for r in batch] == [0, 0, 0], "a claim charges nothing"
    assert inbox.start(batch[0], "dead")  # it began the first, then was killed
    await asyncio.sleep(0.1)
    recorder = Recorder()
    assert await worker(inbox, recorder.router, engine).run_once() == 3
    assert recorder.handled() == ["c0", "c1", "c2"]
    attempts = {
        ref: (row(inbox, ref).status, row(inbox, ref).attempts) for ref in ("d-0", "d-1", "d-2")
    }
    assert attempts == {"d-0": ("done", 2), "d-1": ("done", 1), "d-2": ("done", 1)}


async def test_kills_before_their_turn_never_fail_a_delivery(engine: Engine) -> None:
    inbox = Inbox(engine)
    inbox.store_many([comment(f"d-{n}", f"c{n}", at="2026-12-04T10:00:00Z") for n in range(3)])
    for n in range(5):  # more kills than max_attempts, each before the handling began
        assert len(inbox.claim(f"dead-{n}", limit=10, lease_seconds=0.05)) == 3
        await asyncio.sleep(0.1)
    recorder = Recorder()
    await worker(inbox, recorder.router, engine, max_attempts=3).run_once()
    assert inbox.counts() == {"done": 3}
    assert recorder.handled() == ["c0", "c1", "c2"]


# ---------------------------------------------------------------------- order


async def test_a_done_stored_before_its_trigger_waits_for_it_on_another_worker(
    engine: Engine,
) -> None:
    # The /done reached Threadline first (a redelivered trigger, say), but the host
    # wrote the trigger first: the trigger is handled first, whichever worker has it.
    inbox = Inbox(engine)
    inbox.store_many([comment("done", "/done", at="2026-12-04T10:00:05Z", comment_id=2)])
    inbox.store_many([comment("trigger", "@threadline go", at="2026-12-04T10:00:01Z")])
    recorder = Recorder()
    first = worker(inbox, recorder.router, engine, batch=1)
    second = worker(inbox, recorder.router, engine, batch=1)
    # The /done fell due first, but the claim takes a thread's first delivery only.
    assert await first.run_once() == 1
    assert recorder.handled() == ["@threadline go"]
    waiting = row(inbox, "done")
    assert (waiting.status, waiting.attempts) == ("pending", 0), "waiting costs no attempt"
    assert await second.run_once() == 1
    assert recorder.handled() == ["@threadline go", "/done"]
    assert [row(inbox, ref).attempts for ref in ("trigger", "done")] == [1, 1]
    assert not row(inbox, "done").out_of_order


async def test_a_done_claimed_while_its_trigger_is_handled_waits_and_other_threads_do_not(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    inbox.store_many(
        [
            comment("trigger", "@threadline go", at="2026-12-04T10:00:01Z"),
            comment("done", "/done", at="2026-12-04T10:00:05Z", comment_id=2),
            comment("other", "elsewhere", at="2026-12-04T10:00:06Z", number=8, comment_id=3),
        ]
    )
    recorder = Recorder()
    gate = recorder.gate("@threadline go")
    first = worker(inbox, recorder.router, engine, batch=1)
    second = worker(inbox, recorder.router, engine, batch=1)
    busy = asyncio.create_task(first.run_once())
    await asyncio.wait_for(recorder.entered["@threadline go"].wait(), 5)
    # The /done is not claimed while its trigger is handled; issue 8's comment is.
    assert await second.run_once() == 1
    assert await second.run_once() == 0
    assert recorder.log == ["start @threadline go", "start elsewhere", "end elsewhere"]
    assert (row(inbox, "done").status, row(inbox, "done").attempts) == ("pending", 0)
    gate.set()
    assert await busy == 1
    assert await second.run_once() == 1
    assert recorder.log == [
        "start @threadline go",
        "start elsewhere",
        "end elsewhere",
        "end @threadline go",
        "start /done",
        "end /done",
    ]
    assert inbox.counts() == {"done": 3}


async def test_a_held_delivery_lets_an_earlier_event_that_arrives_later_go_first(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    recorder = Recorder()
    loop_worker = worker(inbox, recorder.router, engine, hold_seconds=0.4)
    stop = asyncio.Event()
    running = asyncio.create_task(loop_worker.run(stop))
    try:
        await asyncio.to_thread(
            inbox.store_many, [comment("done", "/done", at="2026-12-04T10:00:05Z", comment_id=2)]
        )
        await asyncio.sleep(0.15)  # within the /done's hold window
        assert recorder.handled() == []
        await asyncio.to_thread(
            inbox.store_many, [comment("trigger", "@threadline go", at="2026-12-04T10:00:01Z")]
        )
        await recorder.wait_for("/done")
    finally:
        stop.set()
        await running
    assert recorder.handled() == ["@threadline go", "/done"]
    assert not row(inbox, "done").out_of_order


async def test_a_delivery_older_than_one_already_handled_is_handled_late_and_marked(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox(engine)
    recorder = Recorder()
    only = worker(inbox, recorder.router, engine)
    inbox.store_many([comment("done", "/done", at="2026-12-04T10:00:05Z", comment_id=2)])
    await only.run_once()
    inbox.store_many([comment("trigger", "@threadline go", at="2026-12-04T10:00:01Z")])
    with caplog.at_level(logging.WARNING, logger="bot.worker"):
        await only.run_once()
    assert recorder.handled() == ["/done", "@threadline go"]
    late = row(inbox, "trigger")
    assert (late.status, late.out_of_order) == ("done", True)
    assert (late.note or "").startswith("arrived out of order")
    assert not row(inbox, "done").out_of_order
    assert "arrived out of order" in caplog.text


def test_a_delivery_whose_thread_is_unknown_holds_back_those_it_might_precede(
    engine: Engine,
) -> None:
    inbox = Inbox(engine)
    [done] = inbox.store_many([comment("done", "/done", at="2026-12-04T10:00:05Z")])
    [trigger] = inbox.store_many([comment("trigger", "go", at="2026-12-04T10:00:01Z")])
    [claimed] = inbox.claim("w", limit=1, lease_seconds=30)
    assert claimed.pk == done.pk
    thread = "github:octo-org/hello-world/issues/7"
    inbox.set_order([Order(done.pk, thread, datetime(2026, 12, 4, 10, 0, 5, tzinfo=UTC))])
    mine = row(inbox, "done")
    # The trigger's thread is not known yet, and it arrived within the /done's hold
    # window: it might be an earlier event of the same thread.
    assert not inbox.start(mine, "w", hold_seconds=5)
    # Known now: an earlier delivery of the same thread, still waiting.
    inbox.set_order([Order(trigger.pk, thread, datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC))])
    assert not inbox.start(mine, "w", hold_seconds=0)
    assert row(inbox, "done").attempts == 0
    [first] = inbox.claim("v", limit=1, lease_seconds=30)
    assert first.pk == trigger.pk
    assert inbox.start(row(inbox, "trigger"), "v")
    assert inbox.finish(trigger.pk, "v", "done")
    assert inbox.start(mine, "w", hold_seconds=5)
    assert row(inbox, "done").attempts == 1


def shuffled_threads(rng: random.Random, threads: int, per_thread: int) -> list[IncomingDelivery]:
    """`per_thread` comments in each of `threads` issues ("issue:n", written a second
    apart), in a shuffled order."""
    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    items = [
        comment(
            f"t{issue}-{n}",
            f"{issue}:{n}",
            at=(start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            number=issue,
            comment_id=issue * 1000 + n,
        )
        for issue in range(1, threads + 1)
        for n in range(per_thread)
    ]
    rng.shuffle(items)
    return items


async def two_workers_handle(
    engine: Engine, inbox: Inbox, total: int, rng: random.Random, *, pause: float, within: float
) -> tuple[dict[int, list[int]], list[int]]:
    """Two workers with small batches handle the `total` stored comments at once, each
    handling taking up to `pause` s: the comments' numbers in the order each issue's were
    handled, and the issues seen handling two comments at the same time."""
    running: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    overlaps: list[int] = []
    all_handled = asyncio.Event()
    router = Router()

    @router.register(CommentEvent)
    async def handle(event: CommentEvent, ctx: Context) -> None:
        issue, n = (int(part) for part in event.body.split(":"))
        running[issue] = running.get(issue, 0) + 1
        if running[issue] > 1:
            overlaps.append(issue)
        seen.setdefault(issue, []).append(n)
        await asyncio.sleep(rng.random() * pause)
        running[issue] -= 1
        if sum(len(v) for v in seen.values()) == total:
            all_handled.set()

    workers = [worker(inbox, router, engine, batch=3) for _ in range(2)]
    stop = asyncio.Event()
    loops = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        await asyncio.wait_for(all_handled.wait(), within)
    finally:
        stop.set()
        await asyncio.gather(*loops)
    return seen, overlaps


async def test_two_workers_keep_every_thread_in_order(engine: Engine) -> None:
    # Four threads, six comments each, stored in a shuffled order; two workers with
    # small batches handle them at once. Each thread's comments run in the order
    # their host wrote them, and never two of one thread at the same time.
    rng = random.Random(15)
    items = shuffled_threads(rng, 4, 6)
    inbox = Inbox(engine)
    for item in items:
        inbox.store_many([item])
    seen, overlaps = await two_workers_handle(engine, inbox, 24, rng, pause=0.02, within=30)
    assert overlaps == []
    assert seen == {issue: list(range(6)) for issue in range(1, 5)}
    assert inbox.counts() == {"done": 24}
    assert all(not r.out_of_order and r.attempts == 1 for r in inbox.list(limit=50))


async def test_two_workers_keep_every_thread_in_order_past_one_look(engine: Engine) -> None:
    # As above, with more deliveries waiting than one look orders (ORDER_LOOKAHEAD):
    # five threads of 90 comments, stored shuffled, so that threads have comments
    # among the first looked at whose earlier comments are stored past the first
    # look. Two workers handle them at once: each thread's comments still run in the
    # order their host wrote them, never two at the same time.
    rng = random.Random(15)
    threads, per_thread = 5, 90
    items = shuffled_threads(rng, threads, per_thread)
    total = len(items)
    place = {item.delivery_id: index for index, item in enumerate(items)}
    assert total > ORDER_LOOKAHEAD
    # The case this test is about: a comment the first look orders, written after
    # one of its thread that only a later look reaches.
    assert any(
        place[f"t{issue}-{n}"] < ORDER_LOOKAHEAD <= place[f"t{issue}-{m}"]
        for issue in range(1, threads + 1)
        for m in range(per_thread)
        for n in range(m + 1, per_thread)
    )
    inbox = Inbox(engine)
    for item in items:
        inbox.store_many([item])
    seen, overlaps = await two_workers_handle(engine, inbox, total, rng, pause=0.002, within=60)
    assert overlaps == []
    assert seen == {issue: list(range(per_thread)) for issue in range(1, threads + 1)}
    assert inbox.counts() == {"done": total}
    assert all(not r.out_of_order and r.attempts == 1 for r in inbox.list(limit=total))
