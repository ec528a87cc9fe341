"""A handled delivery's settle: its handlers' writes go in the settle's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine

from bot.events import CommentEvent
from bot.history import CommentHistory
from bot.inbox import Inbox
from bot.router import Context, Router
from tests.test_inbox import _worker, incoming


class Recorder:
    """Records each comment with its settle, then fails its first `failures` calls."""

    def __init__(self, engine: Engine, failures: int = 0) -> None:
        self.history = CommentHistory(engine)
        self.failures = failures
        self.calls = 0
        self.seen_before_settle: list[int] = []
        self.router = Router()
        self.router.register(CommentEvent)(self.handle)

    async def handle(self, event: CommentEvent, ctx: Context) -> None:
        self.calls += 1
        assert ctx.with_settle is not None, "the worker lets writes wait for the settle"
        fresh = await ctx.runtime.record_comment(event, ctx.delivery_pk, ctx.with_settle)
        assert fresh is None, "not known until the settle"
        self.seen_before_settle.append(len(self.history.all()))
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
