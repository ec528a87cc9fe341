"""The session store against a real database: every state change is won exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from bot.clock import utcnow
from bot.events import ThreadRef
from bot.sessions.store import Launch, SessionOptions, SessionStore

THREAD = ThreadRef("github", "octo-org/hello-world", "pull", 12)
REVIEW = ThreadRef("github", "octo-org/hello-world", "pull", 12, "70")


def launch(
    store: SessionStore,
    request: str = "d-1",
    thread: ThreadRef = THREAD,
    max_live: int = 10,
    **options: object,
) -> Launch:
    req = Launch(
        client_request_id=request,
        thread=thread,
        installation_id=42,
        agent_id="echo",
        task="review this",
        started_by="maintainer",
        trigger_comment_id="5001",
        trigger_url=None,
        options=SessionOptions(**options),  # type: ignore[arg-type]
    )
    store.launch(req, max_live=max_live)
    return req


def test_launch_is_idempotent_and_one_live_session_per_thread(engine: Engine) -> None:
    store = SessionStore(engine)
    req = launch(store)
    again = store.launch(req, max_live=10)
    assert not again.created
    other_trigger = store.launch(
        Launch(**{**req.__dict__, "client_request_id": "d-2"}), max_live=10
    )
    assert not other_trigger.created
    assert other_trigger.session.id == again.session.id
    review = store.launch(
        Launch(**{**req.__dict__, "client_request_id": "d-3", "thread": REVIEW}), max_live=10
    )
    assert review.created, "a review thread gets its own session"
    assert store.count_live() == 2
    assert [e.kind for e in store.transcript(again.session.id)] == ["launched"]
    [task] = store.inputs(again.session.id)
    assert (task.kind, task.body, task.status) == ("task", "review this", "queued")


def test_past_capacity_a_session_is_refused_and_says_so(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store, "d-1", max_live=1)
    req = Launch(**{**launch(store, "d-0", REVIEW, max_live=1).__dict__})
    refused = store.launch(req, max_live=1)
    assert refused.session.state == "closed"
    assert refused.session.close_reason == "capacity"
    assert [e.kind for e in store.transcript(refused.session.id)] == ["launched", "closed"]


def test_only_one_runner_gets_a_turn(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def runner(name: str) -> None:
        barrier.wait()
        results.append(store.claim_turn(name, lease_seconds=30))

    threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if r is not None]
    assert len(won) == 1


def test_inputs_queue_while_busy_and_are_consumed_in_order(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store)
    session = store.live_for(THREAD.key)
    assert session is not None
    claimed = store.claim_turn("r", lease_seconds=30)
    assert claimed is not None
    _, inputs = claimed
    store.add_input(session.id, kind="comment", author="a", body="one", comment_id="c1")
    store.add_input(session.id, kind="comment", author="a", body="two", comment_id="c2")
    assert (
        store.add_input(session.id, kind="comment", author="a", body="one", comment_id="c1") is None
    )
    assert store.claim_turn("other", lease_seconds=30) is None, "one turn at a time"
    assert store.amend_input("c1", "one (edited)", "a") == session.id
    assert store.withdraw_input("c2", "a") == session.id
    done = store.finish_turn(
        session.id, "r", consumed=[i.id for i in inputs], turn=1, completed=False
    )
    assert done is not None
    assert done.state == "idle"
    assert done.idle_deadline_at is not None
    second = store.claim_turn("r", lease_seconds=30)
    assert second is not None
    assert [i.body for i in second[1]] == ["one (edited)"]
    assert store.amend_input("c1", "too late", "a") is None, "consumed inputs stay as they were"


def test_inputs_with_their_own_runtime_params_get_a_turn_of_their_own(engine: Engine) -> None:
    """Queued inputs are read together only while they ask for the same runtimeParams:
    each prompt's params reach its own turn and no other's, in whichever process."""
    store = SessionStore(engine)
    launch(store)
    session = store.live_for(THREAD.key)
    assert session is not None
    claimed = store.claim_turn("r", lease_seconds=30)
    assert claimed is not None
    hot = {"temperature": 0.9}
    for body, params in [("a", hot), ("b", hot), ("c", None), ("d", None), ("e", {"topK": 3})]:
        store.add_input(session.id, kind="operator", author="op", body=body, params=params)
    turns: list[tuple[list[str], dict[str, object] | None]] = []
    for number in range(1, 5):
        store.finish_turn(
            session.id, "r", consumed=[i.id for i in claimed[1]], turn=number, completed=False
        )
        if number == 4:
            break
        claimed = store.claim_turn("r", lease_seconds=30)
        assert claimed is not None
        turns.append(([i.body for i in claimed[1]], claimed[1][0].params))
    assert turns == [(["a", "b"], hot), (["c", "d"], None), (["e"], {"topK": 3})]
    assert store.claim_turn("r", lease_seconds=30) is None, "every input was read"
    inputs = [e.data for e in store.transcript(session.id) if e.kind == "input"]
    assert [d.get("runtimeParams") for d in inputs] == [hot, hot, None, None, {"topK": 3}]


def test_a_closed_session_s_turn_cannot_finish(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store)
    claimed = store.claim_turn("r", lease_seconds=30)
    assert claimed is not None
    session, inputs = claimed
    closed = store.close(session.id, "user_signal", by="maintainer")
    assert closed is not None
    assert store.close(session.id, "cancelled", by="x") is None, "closed exactly once"
    late = store.finish_turn(
        session.id, "r", consumed=[i.id for i in inputs], turn=1, completed=True
    )
    assert late is None
    final = store.get(session.id)
    assert final is not None
    assert (final.state, final.close_reason, final.closed_by) == (
        "closed",
        "user_signal",
        "maintainer",
    )


def test_a_dead_runner_s_turn_is_taken_over(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store)
    first = store.claim_turn("dead", lease_seconds=0.05)
    assert first is not None
    time.sleep(0.1)
    second = store.claim_turn("alive", lease_seconds=30)
    assert second is not None
    assert [i.body for i in second[1]] == ["review this"], "the unconsumed task is run again"
    assert store.finish_turn(first[0].id, "dead", consumed=[], turn=1, completed=False) is None


def test_a_runner_does_not_take_over_a_turn_it_still_runs(engine: Engine) -> None:
    """A lapsed lease (a late heartbeat) hands the turn to another runner, never back to
    the one still running it; once that runner's turn is over it may take it over."""
    clock_at = [utcnow()]
    store = SessionStore(engine, clock=lambda: clock_at[0])
    launch(store)
    first = store.claim_turn("r", lease_seconds=1)
    assert first is not None
    sid = first[0].id
    clock_at[0] += timedelta(seconds=2)  # the lease lapsed while "r" still runs the turn
    assert store.claim_turn("r", lease_seconds=1, running=[sid]) is None
    again = store.claim_turn("r", lease_seconds=1)  # its turn ended without settling
    assert again is not None
    assert again[0].id == sid
    assert again[0].turns == first[0].turns, "a taken-over turn keeps its number"
    clock_at[0] += timedelta(seconds=2)
    taken = store.claim_turn("other", lease_seconds=30)
    assert taken is not None, "another runner takes a lapsed lease over"
    assert taken[0].id == sid


def test_deadlines_close_with_their_reason_exactly_once(engine: Engine) -> None:
    clock_at = [utcnow()]
    store = SessionStore(engine, clock=lambda: clock_at[0])
    launch(store, "a", THREAD, time_limit_minutes=1, lifetime_minutes=5, idle_expiry_minutes=0.5)
    launch(store, "b", REVIEW, time_limit_minutes=10, lifetime_minutes=2, idle_expiry_minutes=0.5)
    idle_thread = ThreadRef("github", "octo-org/hello-world", "issue", 3)
    launch(
        store, "c", idle_thread, time_limit_minutes=10, lifetime_minutes=10, idle_expiry_minutes=0.5
    )
    claimed = store.claim_turn("r", lease_seconds=600)
    while claimed and claimed[0].thread != idle_thread:
        if claimed[0].thread != THREAD:  # "a" stays in its turn: its working time runs
            store.finish_turn(
                claimed[0].id, "r", consumed=[i.id for i in claimed[1]], turn=1, completed=False
            )
        claimed = store.claim_turn("r", lease_seconds=600)
    assert claimed is not None
    store.finish_turn(
        claimed[0].id, "r", consumed=[i.id for i in claimed[1]], turn=1, completed=False
    )

    nxt = store.next_deadline()
    assert nxt is not None
    clock_at[0] += timedelta(minutes=3)
    closed = {s.thread.key: s.close_reason for s in store.expire_due()}
    assert closed == {
        THREAD.key: "time_limit",
        REVIEW.key: "lifetime",
        idle_thread.key: "idle_expiry",
    }
    assert store.expire_due() == []
    assert store.next_deadline() is None


def test_the_time_limit_counts_working_time_not_waiting(engine: Engine) -> None:
    """Waiting for comments past the time limit closes nothing; the next turn gets the
    limit moved on by the wait; idle expiry still counts wall time."""
    clock_at = [utcnow()]
    store = SessionStore(engine, clock=lambda: clock_at[0])
    launch(store, time_limit_minutes=1, idle_expiry_minutes=30, lifetime_minutes=600)
    claimed = store.claim_turn("r", lease_seconds=600)
    assert claimed is not None
    session, inputs = claimed
    clock_at[0] += timedelta(seconds=20)  # 20 s of work
    store.finish_turn(session.id, "r", consumed=[i.id for i in inputs], turn=1, completed=False)
    clock_at[0] += timedelta(minutes=10)  # waiting, ten times the limit
    assert store.expire_due() == []
    store.add_input(session.id, kind="comment", author="maintainer", body="more", comment_id="c9")
    claimed = store.claim_turn("r", lease_seconds=600)
    assert claimed is not None
    working = claimed[0]
    # 20 s used: 40 s of the limit left from now.
    assert working.time_limit_at == clock_at[0] + timedelta(seconds=40)
    clock_at[0] += timedelta(seconds=39)
    assert store.expire_due() == []
    clock_at[0] += timedelta(seconds=2)
    [closed] = store.expire_due()
    assert closed.close_reason == "time_limit"


def test_extend_is_bounded(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store, max_extend_minutes=20)
    session = store.live_for(THREAD.key)
    assert session is not None
    longer = store.extend(session.id, 15, by="maintainer")
    assert longer is not None
    assert longer.time_limit_at - session.time_limit_at == timedelta(minutes=15)
    assert store.extend(session.id, 10, by="maintainer") is None
    assert store.extend(session.id, 5, by="maintainer") is not None


def test_purge_removes_the_transcript(engine: Engine) -> None:
    store = SessionStore(engine)
    launch(store)
    session = store.live_for(THREAD.key)
    assert session is not None
    assert store.purge(session.id)
    gone = store.get(session.id)
    assert gone is not None
    assert (gone.state, gone.close_reason, gone.task) == ("closed", "purged", "")
    assert store.transcript(session.id) == []
    assert store.inputs(session.id) == []


def test_a_turn_claim_starts_from_waiting_inputs_not_from_every_idle_session(
    engine: Engine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("counts the steps of SQLite's virtual machine")
    store = SessionStore(engine)
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    @event.listens_for(engine, "connect")
    def _count_steps(driver: Any, record: Any) -> None:
        driver.set_progress_handler(step, 1)

    engine.dispose()  # every connection from here on counts

    def run_turn(n: int, repo: str = "octo-org/hello-world") -> int:
        """Launch a session, claim and finish its turn; the steps of the claim."""
        launch(store, f"d-{repo}-{n}", ThreadRef("github", repo, "issue", n), max_live=1000)
        before = steps[0]
        claimed = store.claim_turn("r", lease_seconds=30)
        taken = steps[0] - before
        assert claimed is not None
        session, inputs = claimed
        done = store.finish_turn(
            session.id, "r", consumed=[i.id for i in inputs], turn=1, completed=False
        )
        assert done is not None
        assert done.state == "idle"
        return taken

    for n in range(20):
        run_turn(n)
    few = run_turn(0, "octo-org/probe")
    for n in range(20, 400):
        run_turn(n)
    many = run_turn(1, "octo-org/probe")
    # Walking every idle session made a claim beside 400 of them cost many times one
    # beside 20; from the waiting inputs it costs about the same.
    assert many < 2 * few, (few, many)
