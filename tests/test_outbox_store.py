"""Outbox rows in a real database: idempotency, coalescing, per-thread order, pacing slots."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from bot import outbox as ob
from bot.clock import utcnow
from bot.events import ThreadRef
from bot.hosts.base import Posted

ISSUE = ThreadRef("github", "octo-org/hello-world", "issue", 7)
PULL = ThreadRef("github", "octo-org/hello-world", "pull", 12)
REVIEW = ThreadRef("github", "octo-org/hello-world", "pull", 12, "70")


def claim(box: ob.Outbox, owner: str = "s", interval: float = 0.0) -> ob.OutboxRow | None:
    return box.claim(owner, min_interval=interval, lease_seconds=30)


def test_the_same_key_is_stored_once(engine: Engine) -> None:
    box = ob.Outbox(engine)
    first = box.enqueue(ob.comment("reply-1", ISSUE, "hello", 42))
    again = box.enqueue(ob.comment("reply-1", ISSUE, "hello again", 42))
    assert first == again
    assert box.counts() == {"pending": 1}
    row = box.get(first)
    assert row is not None
    assert (row.payload["body"], row.installation_id, row.thread) == ("hello", 42, ISSUE)


def test_keys_that_would_break_the_marker_are_refused() -> None:
    with pytest.raises(ValueError, match="free of '--'"):
        ob.comment("a--b", ISSUE, "x")


def test_newer_edits_supersede_older_unsent_ones(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.upsert("status:s-1", 1, ISSUE, "running 0:01"))
    box.enqueue(ob.upsert("status:s-1", 2, ISSUE, "running 0:02"))
    last = box.enqueue(ob.upsert("status:s-1", 3, ISSUE, "running 0:03"))
    box.enqueue(ob.upsert("status:s-2", 1, REVIEW, "other session"))
    assert box.counts() == {"pending": 2, "superseded": 2}
    row = claim(box)
    assert row is not None
    assert (row.pk, row.payload["body"]) == (last, "running 0:03")


def test_an_older_version_arriving_late_is_stored_superseded(engine: Engine) -> None:
    box = ob.Outbox(engine)
    newest = box.enqueue(ob.upsert("status:s-1", 3, ISSUE, "done"))
    late = box.enqueue(ob.upsert("status:s-1", 2, ISSUE, "working"))  # a slower writer
    assert box.enqueue(ob.upsert("status:s-1", 2, ISSUE, "working")) == late  # same key
    stored = box.get(late)
    assert stored is not None
    assert stored.status == "superseded"
    assert stored.sent_at is not None
    row = claim(box)
    assert row is not None
    assert row.pk == newest
    assert box.sent(row, "s", {"id": 1})
    # A newer version already sent supersedes a late one too.
    later = box.get(box.enqueue(ob.upsert("status:s-1", 1, ISSUE, "starting")))
    assert later is not None
    assert later.status == "superseded"
    assert claim(box) is None


def test_a_thread_s_rows_go_in_order_other_threads_are_not_held_back(engine: Engine) -> None:
    box = ob.Outbox(engine)
    a1 = box.enqueue(ob.comment("a1", ISSUE, "first"))
    a2 = box.enqueue(ob.comment("a2", ISSUE, "second"))
    b1 = box.enqueue(ob.comment("b1", REVIEW, "elsewhere"))
    first = claim(box)
    assert first is not None
    assert first.pk == a1
    second = claim(box)
    assert second is not None
    assert second.pk == b1, "a2 waits for a1; the review thread does not"
    assert claim(box) is None

    # a1 fails and waits for a retry: a2 still may not overtake it.
    assert box.retry_later(first, "s", "HostError: 502", 0.2, maybe_sent=True)
    assert claim(box) is None
    time.sleep(0.25)
    retried = claim(box)
    assert retried is not None
    assert (retried.pk, retried.attempts, retried.maybe_sent) == (a1, 2, True)
    assert box.sent(retried, "s", {"id": "1"})
    nxt = claim(box)
    assert nxt is not None
    assert nxt.pk == a2


def test_pacing_spaces_writes_to_one_installation(engine: Engine) -> None:
    # The outbox's own clock, moved by hand: a loaded machine cannot stretch the interval.
    now = [utcnow()]
    box = ob.Outbox(engine, clock=lambda: now[0])
    for n in range(3):
        box.enqueue(ob.comment(f"i{n}", ThreadRef("github", "o/r", "issue", n), "x", 42))
    box.enqueue(ob.comment("other", ThreadRef("github", "o/other", "issue", 1), "x", 43))
    first = claim(box, interval=0.3)
    other = claim(box, interval=0.3)
    assert first is not None
    assert other is not None
    assert (first.installation_id, other.installation_id) == (42, 43)
    now[0] += timedelta(seconds=0.25)
    assert claim(box, interval=0.3) is None, "installation 42 has no free slot yet"
    now[0] += timedelta(seconds=0.1)
    assert claim(box, interval=0.3) is not None


def test_a_rate_limit_holds_the_whole_installation(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.comment("x1", ISSUE, "x", 42))
    box.enqueue(ob.comment("x2", REVIEW, "x", 42))
    row = claim(box)
    assert row is not None
    box.hold_installation(row.pacing_key, 60)
    assert claim(box) is None
    slot = box.next_slot()
    assert slot is not None
    assert slot - utcnow() > timedelta(seconds=55)


def test_a_dead_sender_s_row_is_taken_over_and_marked_maybe_sent(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.comment("c", ISSUE, "x"))
    row = box.claim("dead", min_interval=0, lease_seconds=0.05)
    assert row is not None
    time.sleep(0.1)
    taken = claim(box, "alive")
    assert taken is not None
    assert (taken.pk, taken.attempts, taken.maybe_sent) == (row.pk, 2, True)
    assert not box.sent(row, "dead", {}), "the dead sender's lease is gone"


def test_a_sender_looks_for_lapsed_leases_at_its_first_claim_then_once_a_second(
    engine: Engine,
) -> None:
    now = [utcnow()]
    box = ob.Outbox(engine, clock=lambda: now[0])
    box.enqueue(ob.comment("a", ISSUE, "x"))
    box.enqueue(ob.comment("b", REVIEW, "x"))  # another thread: not held back by "a"
    dead = box.claim("dead", min_interval=0, lease_seconds=0.5)
    assert dead is not None
    assert dead.key == "a"
    first = claim(box, "alive")  # its first claim looks: no lease has lapsed yet
    assert first is not None
    assert first.key == "b"
    now[0] += timedelta(seconds=0.6)  # the dead sender's lease lapsed
    assert claim(box, "alive") is None, "looked 0.6 s ago: not yet again"
    now[0] += timedelta(seconds=ob.LAPSED_LOOK_SECONDS)
    taken = claim(box, "alive")
    assert taken is not None
    assert (taken.key, taken.maybe_sent, taken.attempts) == ("a", True, 2)


def test_concurrent_senders_never_take_the_same_row(engine: Engine) -> None:
    box = ob.Outbox(engine)
    for n in range(60):
        box.enqueue(ob.comment(f"k{n}", ThreadRef("github", "o/r", "issue", n), "x", n % 7))
    taken: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(3)

    def sender(name: str) -> None:
        barrier.wait()
        idle = 0
        while idle < 20:
            row = box.claim(name, min_interval=0, lease_seconds=30)
            if row is None:
                idle += 1
                continue
            with lock:
                taken.append(row.pk)
            box.sent(row, name, {})

    threads = [threading.Thread(target=sender, args=(f"s{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(set(taken))
    assert len(taken) == 60


def test_failed_rows_can_be_retried(engine: Engine) -> None:
    box = ob.Outbox(engine)
    pk = box.enqueue(ob.comment("f", ISSUE, "x"))
    row = claim(box)
    assert row is not None
    assert box.fail(row, "s", "Unauthorized: revoked")
    assert [r.pk for r in box.recent(status="failed")] == [pk]
    assert box.retry(pk)
    assert not box.retry(pk), "only failed rows are retried"
    again = claim(box)
    assert again is not None
    assert (again.pk, again.attempts) == (pk, 1)


def test_acknowledgements_go_ahead_of_other_threads_but_never_of_their_own(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.comment("busy-1", ISSUE, "a long answer"))
    box.enqueue(ob.comment("busy-2", ISSUE, "another"))
    ack = box.enqueue(ob.reaction("ack", REVIEW, "70", "eyes"))
    late_ack = box.enqueue(ob.reaction("ack-issue", ISSUE, "5001", "eyes"))
    first = claim(box)
    assert first is not None
    assert first.pk == ack, "the review thread's acknowledgement jumps the queue"
    box.sent(first, "s", {})
    second = claim(box)
    assert second is not None
    assert second.key == "busy-1", "an acknowledgement waits for its own thread's older rows"
    box.sent(second, "s", {})
    third = claim(box)
    assert third is not None
    assert third.key == "busy-2"
    box.sent(third, "s", {})
    fourth = claim(box)
    assert fourth is not None
    assert fourth.pk == late_ack


def test_a_newer_version_inherits_an_unclear_outcome_and_its_wait(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.upsert("status:s-3", 1, ISSUE, "queued"))
    first = claim(box)
    assert first is not None
    assert box.retry_later(first, "s", "HostError: no answer in time", 0.3, maybe_sent=True)
    newer = box.enqueue(ob.upsert("status:s-3", 2, ISSUE, "running"))
    assert box.counts() == {"pending": 1, "superseded": 1}
    assert claim(box) is None, "not before the older try could have landed"
    time.sleep(0.35)
    row = claim(box)
    assert row is not None
    assert (row.pk, row.maybe_sent) == (newer, True), "it looks for the marker first"


def test_a_clear_older_version_hands_nothing_on(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.upsert("status:s-4", 1, ISSUE, "queued"))
    first = claim(box)
    assert first is not None
    assert box.retry_later(first, "s", "HostError: 503", 30, maybe_sent=False)
    newer = box.enqueue(ob.upsert("status:s-4", 2, ISSUE, "running"))
    row = claim(box)
    assert row is not None
    assert (row.pk, row.maybe_sent) == (newer, False)


def test_only_the_lease_holder_renews_it(engine: Engine) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.comment("long", ISSUE, "x"))
    row = box.claim("busy", min_interval=0, lease_seconds=0.2)
    assert row is not None
    assert not box.renew(row, "someone-else", 5)
    assert box.renew(row, "busy", 5)
    time.sleep(0.3)
    assert claim(box, "other") is None, "a renewed lease is not taken over"
    assert box.sent(row, "busy", {})
    assert not box.renew(row, "busy", 5), "a settled row has no lease to renew"


def test_a_post_under_way_is_recorded_until_its_id_is_saved(engine: Engine) -> None:
    box = ob.Outbox(engine)
    assert box.posted("status:s-5") is None
    box.posting("status:s-5", ISSUE)
    under_way = box.posted("status:s-5")
    assert under_way is not None
    assert under_way.comment_id is None
    box.remember_posted("status:s-5", ISSUE, Posted("901", "https://example.test/901"))
    known = box.posted("status:s-5")
    assert known is not None
    assert (known.comment_id, known.url) == ("901", "https://example.test/901")
    box.posting("status:s-5", ISSUE)  # the comment was deleted: a new post is under way
    again = box.posted("status:s-5")
    assert again is not None
    assert again.comment_id is None


def test_a_send_settles_holds_the_slot_remembers_the_comment_and_claims_the_next(
    engine: Engine,
) -> None:
    """`sent_and_claim`: one transaction settles the row, saves a posted comment's id,
    holds the installation's slot and claims the next row that can go now."""
    box = ob.Outbox(engine)
    status = box.enqueue(ob.upsert("status:s-9", 1, ISSUE, "working", 42))
    other_installation = box.enqueue(ob.comment("b1", REVIEW, "elsewhere", 43))
    same_installation = box.enqueue(ob.comment("a2", PULL, "later", 42))
    claimed = box.claim_to_send("s", min_interval=5.0, lease_seconds=30)
    assert claimed.row is not None
    assert claimed.row.pk == status
    assert claimed.posted is None, "no version ever posted it"
    posted = {"id": "901", "url": "https://example.test/901"}
    settled, after = box.sent_and_claim(
        claimed.row, "s", posted, hold=5.0, min_interval=5.0, lease_seconds=30
    )
    assert settled
    assert after.row is not None
    assert after.row.pk == other_installation, "42's slot is held: another installation's row"
    known = box.posted("status:s-9")
    assert known is not None
    assert (known.comment_id, known.url) == ("901", posted["url"])
    row = box.get(status)
    assert row is not None
    assert (row.status, row.result) == ("sent", posted)
    # A row the sender will not send after all goes back at once, its attempt refunded.
    assert box.give_back(after.row, "s")
    back = box.get(other_installation)
    assert back is not None
    assert (back.status, back.attempts) == ("pending", 0)
    # The settle of a row whose lease was lost keeps the comment's id but settles nothing.
    again, nothing = box.sent_and_claim(
        claimed.row, "s", posted, hold=0.0, min_interval=5.0, lease_seconds=30
    )
    assert not again
    assert nothing.row is None, "both installations' slots are taken"
    assert nothing.next_at is not None
    assert nothing.next_at > utcnow()
    assert box.get(same_installation).status == "pending"  # type: ignore[union-attr]


def test_claiming_a_comment_s_first_post_writes_its_record_before_the_post(
    engine: Engine,
) -> None:
    box = ob.Outbox(engine)
    box.enqueue(ob.upsert("status:s-1", 1, ISSUE, "starting"))
    assert box.posted("status:s-1") is None
    first = box.claim_to_send("s", min_interval=0, lease_seconds=30)
    assert first.row is not None
    assert first.marked
    assert first.posted is None
    record = box.posted("status:s-1")  # committed with the claim: a post may follow
    assert record is not None
    assert record.comment_id is None
    # The sender dies mid-post: the next version looks for the comment before posting.
    assert box.retry_later(first.row, "s", "timeout", 0, maybe_sent=True)
    box.enqueue(ob.upsert("status:s-1", 2, ISSUE, "working"))
    second = box.claim_to_send("s", min_interval=0, lease_seconds=30)
    assert second.row is not None
    assert second.row.version == 2
    assert not second.marked
    assert second.posted is not None
