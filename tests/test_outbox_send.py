"""The outbox sender against the fake GitHub and GitLab over loopback, with injected faults.

Under 500s, timeouts, rate limits of every kind and "created but the answer was lost",
every intended write lands exactly once, in order per thread, and pacing holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from bot import outbox as ob
from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts import Hosts
from bot.hosts.base import CommitState, DiffComment
from bot.sender import Sender
from tests.fakes.github import FakeGitHub, LoseMode
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab

REPO = "octo-org/hello-world"
INSTALLATION = 77
ISSUE = ThreadRef("github", REPO, "issue", 7)
PULL = ThreadRef("github", REPO, "pull", 12)


@dataclass
class Rig:
    box: ob.Outbox
    sender: Sender
    hosts: Hosts

    async def send_one(self, within: float = 10.0) -> None:
        """Wait until one row is claimed (retries and inherited waits are due), and send it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await self.sender.send_once():
            if loop.time() > deadline:
                raise AssertionError(f"nothing became sendable: {self.box.counts()}")
            await asyncio.sleep(0.01)

    def other_sender(self, **options: float) -> Sender:
        """A second sender (another process, as far as leases go) on the same rows."""
        mine = self.sender
        return Sender(
            self.box,
            self.hosts.client,
            min_interval=mine.min_interval,
            retry_seconds=mine.retry_seconds,
            lease_seconds=options.get("lease_seconds", mine.lease_seconds),
            poll_seconds=mine.poll_seconds,
            ambiguous_wait=mine.ambiguous_wait,
        )

    async def drain(self, within: float = 20.0, sender: Sender | None = None) -> None:
        """Send until nothing is pending (waiting out retries and pacing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if not await (sender or self.sender).send_once():
                counts = self.box.counts()
                if not counts.get("pending") and not counts.get("sending"):
                    return
                await asyncio.sleep(0.01)
            if loop.time() > deadline:
                raise AssertionError(f"writes still unsent: {self.box.counts()}")


@asynccontextmanager
async def rig(engine: Engine, settings: Settings, **options: float) -> AsyncIterator[Rig]:
    total = options.get("http_timeout", 1.0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total)) as http:
        hosts = Hosts.from_settings(settings, http)
        box = ob.Outbox(engine)
        sender = Sender(
            box,
            hosts.client,
            min_interval=options.get("min_interval", 0.0),
            max_attempts=int(options.get("max_attempts", 6)),
            retry_seconds=options.get("retry_seconds", 0.05),
            lease_seconds=options.get("lease_seconds", 10),
            poll_seconds=0.02,
            ambiguous_wait=options.get("ambiguous_wait", 0.05),
            send_timeout=options.get("send_timeout", 120),
        )
        try:
            yield Rig(box, sender, hosts)
        finally:
            hosts.close()


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(INSTALLATION, [REPO])
        gh.add_issue(REPO, 7)
        gh.add_pull(
            REPO,
            12,
            head_sha="a" * 40,
            base_sha="b" * 40,
            files=[
                {"filename": "src/app.py", "status": "modified", "additions": 2, "deletions": 0}
            ],
        )
        yield gh


def github_settings(gh: FakeGitHub, **extra: object) -> Settings:
    return Settings(
        github_app_id=gh.app_id,
        github_private_key=gh.private_key_pem,
        github_api_url=gh.url,
        github_graphql_url=gh.graphql_url,
        host_timeout_seconds=1.0,
        **extra,  # type: ignore[arg-type]
    )


async def eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


def bodies(gh: FakeGitHub, number: int) -> list[str]:
    """Comment bodies in an issue's conversation, oldest first, markers stripped."""
    found = [c for c in gh.issue_comments.values() if c["_number"] == number]
    return [re.sub(r"\s*<!-- threadline:.* -->$", "", c["body"]) for c in found]


async def test_writes_land_once_and_in_order_despite_faults(
    engine: Engine, github: FakeGitHub
) -> None:
    comments = r"/repos/octo-org/hello-world/issues/\d+/comments"
    github.fail("POST", comments, 500)
    github.lose_response("POST", comments, "502")  # created, but the answer is lost
    github.rate_limited("POST", comments, "secondary", seconds=0)
    github.delay("POST", comments, 1.5)  # the client gives up after 1 s; GitHub still creates it
    github.rate_limited("POST", comments, "429", seconds=0)
    github.lose_response("POST", comments, "close")
    github.rate_limited("POST", comments, "primary", seconds=0)

    # The delayed request lands 1.5 s after it was sent: look for it only after that.
    async with rig(engine, github_settings(github), ambiguous_wait=1.0) as r:
        for n in range(6):
            r.box.enqueue(ob.comment(f"issue-{n}", ISSUE, f"issue note {n}", INSTALLATION))
        for n in range(4):
            r.box.enqueue(ob.comment(f"pull-{n}", PULL, f"pull note {n}", INSTALLATION))
        await r.drain()
        await asyncio.sleep(0.6)  # let the delayed request finish on the fake's side
        assert r.box.counts() == {"sent": 10}
        rows = r.box.recent(limit=20)
    assert bodies(github, 7) == [f"issue note {n}" for n in range(6)]
    assert bodies(github, 12) == [f"pull note {n}" for n in range(4)]
    recovered = [row for row in rows if (row.result or {}).get("recovered")]
    assert recovered, "a lost answer is recovered by its marker, not re-posted"
    assert all(row.attempts >= 1 for row in rows)


async def test_writes_to_one_installation_are_paced(engine: Engine, github: FakeGitHub) -> None:
    async with rig(engine, github_settings(github), min_interval=0.2) as r:
        for n in range(4):
            thread = ISSUE if n % 2 else PULL
            r.box.enqueue(ob.comment(f"paced-{n}", thread, f"note {n}", INSTALLATION))
        await r.drain()
    posts = github.requests_to("POST", r"/repos/.*/issues/\d+/comments")
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert len(posts) == 4
    assert min(gaps) >= 0.19, gaps


async def test_a_rate_limit_holds_the_installation_for_as_long_as_asked(
    engine: Engine, github: FakeGitHub
) -> None:
    github.rate_limited("POST", r"/repos/.*/issues/7/comments", "secondary", seconds=1)
    async with rig(engine, github_settings(github)) as r:
        r.box.enqueue(ob.comment("limited", ISSUE, "first", INSTALLATION))
        r.box.enqueue(ob.comment("other-thread", PULL, "second", INSTALLATION))
        await r.drain()
    posts = github.requests_to("POST", r"/repos/.*/issues/\d+/comments")
    assert posts[0].path.split("/")[-2] == "7"
    assert sorted(p.path.split("/")[-2] for p in posts[1:]) == ["12", "7"]
    assert posts[1].at - posts[0].at >= 0.95, "the whole installation waited for Retry-After"


async def test_status_edits_coalesce_into_one_comment(engine: Engine, github: FakeGitHub) -> None:
    async with rig(engine, github_settings(github)) as r:
        for n in range(5):
            r.box.enqueue(ob.upsert("status:s-1", n, ISSUE, f"running step {n}", INSTALLATION))
        await r.drain()
        for n in range(5, 7):
            r.box.enqueue(ob.upsert("status:s-1", n, ISSUE, f"running step {n}", INSTALLATION))
        await r.drain()
        counts = r.box.counts()
    assert bodies(github, 7) == ["running step 6"], "one comment, holding the newest state"
    assert len(github.requests_to("POST", r"/repos/.*/issues/7/comments")) == 1
    assert len(github.requests_to("PATCH", r"/repos/.*/issues/comments/\d+")) == 1
    assert counts == {"sent": 2, "superseded": 5}


async def test_a_lost_status_post_is_found_again_not_duplicated(
    engine: Engine, github: FakeGitHub
) -> None:
    github.lose_response("POST", r"/repos/.*/issues/7/comments", "502")
    async with rig(engine, github_settings(github)) as r:
        r.box.enqueue(ob.upsert("status:s-2", 1, ISSUE, "queued", INSTALLATION))
        await r.drain()
        r.box.enqueue(ob.upsert("status:s-2", 2, ISSUE, "done", INSTALLATION))
        await r.drain()
    assert bodies(github, 7) == ["done"]


async def test_a_revoked_installation_fails_the_write_after_one_refresh(
    engine: Engine, github: FakeGitHub
) -> None:
    async with rig(engine, github_settings(github)) as r:
        r.box.enqueue(ob.comment("before", ISSUE, "hello", INSTALLATION))
        await r.drain()
        github.uninstall(INSTALLATION)
        r.box.enqueue(ob.comment("after", ISSUE, "anyone there?", INSTALLATION))
        await r.drain()
        [failed] = r.box.recent(status="failed")
    assert failed.key == "after"
    assert failed.attempts == 1, "401s are not retried"
    assert "Unauthorized" in (failed.last_error or "")
    token_requests = github.requests_to("POST", r"/app/installations/77/access_tokens")
    assert len(token_requests) == 2, "one refresh, then reported"


async def test_persistent_5xx_gives_up_after_max_attempts(
    engine: Engine, github: FakeGitHub
) -> None:
    github.fail("POST", r"/repos/.*/issues/7/comments", 503, times=3)
    async with rig(engine, github_settings(github), max_attempts=3) as r:
        r.box.enqueue(ob.comment("doomed", ISSUE, "x", INSTALLATION))
        r.box.enqueue(ob.comment("behind-it", ISSUE, "y", INSTALLATION))
        await r.drain()
        failed = r.box.recent(status="failed")
        sent = r.box.recent(status="sent")
    assert [(f.key, f.attempts) for f in failed] == [("doomed", 3)]
    assert "503" in (failed[0].last_error or "")
    assert [s.key for s in sent] == ["behind-it"], "a failed write does not block its thread"
    assert bodies(github, 7) == ["y"]


async def test_reactions_reviews_resolution_and_check_runs(
    engine: Engine, github: FakeGitHub
) -> None:
    trigger = github.add_issue_comment(REPO, 12, "@threadline review", login="maintainer")
    head = github.repos[REPO].issues[12].head_sha
    async with rig(engine, github_settings(github)) as r:
        r.box.enqueue(ob.reaction("eyes-1", PULL, str(trigger["id"]), "eyes", INSTALLATION))
        r.box.enqueue(
            ob.review(
                "review-1",
                PULL,
                head,
                [DiffComment("src/app.py", 2, "first finding")],
                "two findings",
                INSTALLATION,
            )
        )
        r.box.enqueue(
            ob.commit_state(
                "check-1", PULL, CommitState(head, "threadline", "running", "working"), INSTALLATION
            )
        )
        await r.drain()
        review_row = r.box.recent(limit=5)[1]
        posted = (review_row.result or {})["comments"][0]
        thread = ThreadRef("github", REPO, "pull", 12, posted["thread_id"])
        r.box.enqueue(ob.resolve("resolve-1", thread, INSTALLATION))
        await r.drain()
        assert r.box.counts() == {"sent": 4}
    assert [x["content"] for x in github.reactions] == ["eyes"]
    assert len(github.reviews) == 1
    assert int(posted["thread_id"]) in github.resolved
    assert [c["status"] for c in github.check_runs.values()] == ["in_progress"]


# ------------------------------------------------------------------------ GitLab


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(prefix="/gitlab") as gl:  # a self-managed GitLab under a path
        project = gl.add_project("group/sub/project")
        gl.add_issue(project, 3)
        yield gl


async def test_gitlab_writes_land_once_and_in_order_despite_faults(
    engine: Engine, gitlab: FakeGitLab
) -> None:
    notes = r"/projects/.*/issues/3/notes$"
    gitlab.fail("POST", notes, 500)
    gitlab.fail("POST", notes, 429, headers={"Retry-After": "0"})
    gitlab.lose_response("POST", notes)
    gitlab.slow("POST", notes, 1.5)
    settings = Settings(gitlab_url=gitlab.url, gitlab_token=GITLAB_TOKEN, host_timeout_seconds=1.0)
    thread = ThreadRef("gitlab", "group/sub/project", "issue", 3)
    async with rig(engine, settings, ambiguous_wait=1.0) as r:
        for n in range(5):
            r.box.enqueue(ob.comment(f"gl-{n}", thread, f"gitlab note {n}"))
        await r.drain()
        await asyncio.sleep(0.6)
        assert r.box.counts() == {"sent": 5}
    written = [
        re.sub(r"\s*<!-- threadline:.* -->$", "", n.body)
        for n in sorted(gitlab.notes.values(), key=lambda n: n.id)
        if not n.system
    ]
    assert written == [f"gitlab note {n}" for n in range(5)]


# ------------------------------------------- at most once, whatever supersedes or dies

STATUS = "status:s-9"
COMMENTS_7 = r"/repos/octo-org/hello-world/issues/7/comments"


@pytest.mark.parametrize("mode", ["500", "close", "hang"])
async def test_a_status_post_with_a_lost_answer_is_not_posted_again_by_newer_versions(
    engine: Engine, github: FakeGitHub, mode: LoseMode
) -> None:
    github.lose_response("POST", COMMENTS_7, mode)  # applied; the answer is a 500, a reset, none
    async with rig(engine, github_settings(github), ambiguous_wait=0.3) as r:
        r.box.enqueue(ob.upsert(STATUS, 1, ISSUE, "queued", INSTALLATION))
        await r.send_one()
        [first] = r.box.recent()
        assert (first.status, first.maybe_sent) == ("pending", True)
        assert github.markers()[STATUS] == 1

        # Version 2 supersedes it while it waits; its own look for the marker fails
        # (a plain 500 on the GET, nothing unclear about it), then version 3 supersedes it.
        r.box.enqueue(ob.upsert(STATUS, 2, ISSUE, "running", INSTALLATION))
        github.fail("GET", COMMENTS_7, 500)
        await r.send_one()
        r.box.enqueue(ob.upsert(STATUS, 3, ISSUE, "done", INSTALLATION))
        await r.drain()
        counts = r.box.counts()
    assert github.markers()[STATUS] == 1, "one status comment"
    assert bodies(github, 7) == ["done"]
    assert len(github.requests_to("GET", COMMENTS_7)) == 2, "each later version looked first"
    assert counts == {"sent": 1, "superseded": 2}


async def test_a_sender_killed_between_post_and_saving_the_id_leaves_one_comment(
    engine: Engine, github: FakeGitHub
) -> None:
    github.lose_response("POST", COMMENTS_7, "hang")  # applied; the sender waits for an answer
    lease = 0.3
    async with rig(engine, github_settings(github), lease_seconds=lease) as r:
        r.box.enqueue(ob.upsert(STATUS, 1, ISSUE, "queued", INSTALLATION))
        doomed = asyncio.create_task(r.sender.send_once())
        await eventually(lambda: github.markers()[STATUS] == 1, "the POST was applied")
        doomed.cancel()  # the sender dies: no id saved, nothing settled, no more renewals
        with contextlib.suppress(asyncio.CancelledError):
            await doomed
        killed = asyncio.get_running_loop().time()
        [row] = r.box.recent()
        assert row.status == "sending"

        r.box.enqueue(ob.upsert(STATUS, 2, ISSUE, "done", INSTALLATION))
        await r.drain(sender=r.other_sender())
        resumed_within = asyncio.get_running_loop().time() - killed
        counts = r.box.counts()
    assert github.markers()[STATUS] == 1, "the newer version found the comment by its marker"
    assert bodies(github, 7) == ["done"]
    assert counts == {"sent": 1, "superseded": 1}
    assert resumed_within < lease + 1.0, "the dead sender's thread resumed within its lease"


async def test_a_send_slower_than_the_lease_keeps_it_and_is_not_taken_over(
    engine: Engine, github: FakeGitHub
) -> None:
    # Over three leases, under the host timeout; leases long enough that a loaded machine
    # still renews one in time (it renews every third of a lease).
    github.delay("POST", COMMENTS_7, 2.5)
    settings = dataclasses.replace(github_settings(github), host_timeout_seconds=4.0)
    async with rig(engine, settings, lease_seconds=0.75, http_timeout=4.0) as r:
        r.box.enqueue(ob.comment("slow", ISSUE, "slow answer", INSTALLATION))
        first = asyncio.create_task(r.sender.send_once())
        await eventually(lambda: r.box.counts() == {"sending": 1}, "the first sender claimed it")
        other = r.other_sender()
        taken_over = 0
        while not first.done():
            taken_over += await other.send_once()
            await asyncio.sleep(0.02)
        assert first.result()
        counts = r.box.counts()
    assert taken_over == 0, "a live sender renews its lease while the send is in flight"
    assert counts == {"sent": 1}
    assert bodies(github, 7) == ["slow answer"]
    assert len(github.requests_to("POST", COMMENTS_7)) == 1


async def test_a_send_past_its_deadline_is_given_up_as_unclear_and_found_again(
    engine: Engine, github: FakeGitHub
) -> None:
    github.delay("POST", COMMENTS_7, 0.6)  # the host still applies it after we gave up
    async with rig(
        engine, github_settings(github), send_timeout=0.3, ambiguous_wait=0.6, lease_seconds=0.2
    ) as r:
        r.box.enqueue(ob.comment("late", ISSUE, "late answer", INSTALLATION))
        await r.send_one()
        [row] = r.box.recent()
        assert (row.status, row.maybe_sent) == ("pending", True)
        assert "longer than 0.3 s" in (row.last_error or "")
        await r.drain()
        [row] = r.box.recent()
    assert (row.result or {}).get("recovered"), "found by its marker, not posted again"
    assert bodies(github, 7) == ["late answer"]


async def test_random_faults_after_apply_leave_each_status_comment_once(
    engine: Engine, github: FakeGitHub
) -> None:
    """Many versions of a few status comments under a flaky host: one comment each."""
    for number in (8, 9):
        github.add_issue(REPO, number)
    threads = [ThreadRef("github", REPO, "issue", n) for n in (7, 8, 9)] + [PULL]
    tally = github.random_faults(0.4, after_apply=0.7, statuses=(500, 503), seed=15)
    settings = dataclasses.replace(github_settings(github), host_timeout_seconds=0.3)  # hangs
    async with rig(engine, settings, ambiguous_wait=0.05, max_attempts=50) as r:
        for version in range(1, 9):
            for n, thread in enumerate(threads):
                r.box.enqueue(ob.upsert(f"status:r-{n}", version, thread, f"v{version}", 77))
            for _ in threads:
                await r.sender.send_once()
        await r.drain(within=60)
        counts = r.box.counts()
    assert tally.injected["after:hang"] + tally.injected["after:close"] >= 2, tally.injected
    mine = {k: v for k, v in github.markers().items() if k.startswith("status:r-")}
    assert mine == {f"status:r-{n}": 1 for n in range(len(threads))}
    assert [bodies(github, n) for n in (7, 8, 9, 12)] == [["v8"]] * 4
    assert "failed" not in counts


async def test_a_gitlab_status_note_with_a_lost_answer_is_not_posted_again(
    engine: Engine, gitlab: FakeGitLab
) -> None:
    notes = r"/projects/.*/issues/3/notes$"
    gitlab.lose_response("POST", notes)  # served, then the connection is closed
    settings = Settings(gitlab_url=gitlab.url, gitlab_token=GITLAB_TOKEN, host_timeout_seconds=1.0)
    thread = ThreadRef("gitlab", "group/sub/project", "issue", 3)
    async with rig(engine, settings, ambiguous_wait=0.2) as r:
        r.box.enqueue(ob.upsert(STATUS, 1, thread, "queued"))
        await r.send_one()
        r.box.enqueue(ob.upsert(STATUS, 2, thread, "done"))
        await r.drain()
    written = [n.body for n in gitlab.notes.values() if STATUS in n.body]
    assert len(written) == 1
    assert written[0].startswith("done")


class UnreachableRenewals(ob.Outbox):
    """The database stops answering this sender's lease renewals (a partition)."""

    def renew(self, row: ob.OutboxRow, owner: str, lease_seconds: float) -> bool:
        raise OperationalError("UPDATE outbox", {}, ConnectionError("no route to host"))


async def test_a_sender_that_cannot_confirm_its_lease_stops_before_it_runs_out(
    engine: Engine, github: FakeGitHub
) -> None:
    github.delay("GET", r"/repos/.*/issues/7/comments", 0.9)  # the look before the write
    async with rig(engine, github_settings(github), lease_seconds=0.3) as r:
        r.box.enqueue(ob.upsert(STATUS, 1, ISSUE, "queued", INSTALLATION))
        r.box.posting(STATUS, ISSUE)  # an earlier post is under way: it looks first
        r.sender.outbox = UnreachableRenewals(engine)
        started = asyncio.get_running_loop().time()
        assert await r.sender.send_once()
        stopped_after = asyncio.get_running_loop().time() - started
        [row] = r.box.recent()
        await asyncio.sleep(0.3)  # long enough for a write the sender might still make
    assert stopped_after < 0.7, "stopped while the lookup (0.9 s) was still in flight"
    assert row.status == "sending", "left for the sender that takes it over"
    assert not github.requests_to("POST", COMMENTS_7), "no write after the lease was in doubt"
