"""Poll mode: a GitHub App whose webhooks cannot reach us still gets its deliveries, read
through GitHub's deliveries API into the same inbox, once each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.db.models import Delivery
from tests import payloads as p
from tests.conftest import run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, agents_file, eventually, github_settings

DETAIL = r"/app/hook/deliveries/\d+"


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_pull(REPO, 12, head_sha="a" * 40, base_sha="b" * 40, files=[])
        gh.set_permission(REPO, "maintainer", "write")
        yield gh


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    tuned = with_settings(
        github_settings(settings, fake_github, agents_file(tmp_path)), github_poll_seconds=0.05
    )
    async with run_app(tuned) as app:
        yield GitHubRig(app, fake_github)


def unreachable_comment(gh: FakeGitHub, body: str, guid: str, *, ago: float = 5) -> dict[str, Any]:
    """A comment on GitHub whose webhook delivery failed: GitHub could not reach us."""
    made = gh.add_issue_comment(REPO, 12, body, login="maintainer")
    payload = p.issue_comment(body, number=12, pull=True, comment_id=made["id"])
    return gh.add_hook_delivery(guid, "issue_comment", payload, status_code=0, ago=ago)


def stored(rig: GitHubRig) -> list[tuple[str, str | None]]:
    with Session(rig.app.engine) as db:
        rows = db.execute(select(Delivery.delivery_id, Delivery.headers).order_by(Delivery.id))
        return [(guid, (headers or {}).get("User-Agent")) for guid, headers in rows]


async def test_a_delivery_github_could_not_push_starts_a_session(rig: GitHubRig) -> None:
    unreachable_comment(rig.gh, "@threadline look at the retries", "guid-polled-1")
    await eventually(lambda: rig.replies(12) == ["task: look at the retries"], "the session")
    assert stored(rig) == [("guid-polled-1", "threadline-poll")]
    [session] = rig.sessions()
    assert session.thread.key == "github:octo-org/hello-world/pulls/12"


async def test_pushed_and_polled_copies_of_a_delivery_are_stored_once(rig: GitHubRig) -> None:
    # Pushed first (GitHub reached us): the poller sees it listed and never fetches it.
    _, pushed = await rig.comment(12, "@threadline first", delivery="guid-pushed")
    await eventually(lambda: rig.replies(12) == ["task: first"], "the pushed one is handled")
    entry = rig.gh.add_hook_delivery(
        pushed,
        "issue_comment",
        p.issue_comment("@threadline first", number=12, pull=True),
        status_code=202,
        ago=1,
    )
    # Polled first, then the same delivery pushed (a late redelivery): a duplicate.
    polled = unreachable_comment(rig.gh, "later", "guid-late")
    await eventually(lambda: len(stored(rig)) == 2, "the polled one is stored")
    raw = p.encode(p.issue_comment("later", number=12, pull=True))
    async with rig.app.http.post(
        f"{rig.app.url}/webhooks/github",
        data=raw,
        headers=p.github_headers("issue_comment", raw, delivery="guid-late"),
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "duplicate"
    await eventually(lambda: rig.replies(12)[-1:] == ["heard @maintainer: later"], "fed once")
    await rig.app.drain()
    # A few more looks find nothing new.
    looked = len(rig.gh.requests_to("GET", r"/app/hook/deliveries"))
    await eventually(
        lambda: len(rig.gh.requests_to("GET", r"/app/hook/deliveries")) > looked + 2, "more looks"
    )
    assert [guid for guid, _ in stored(rig)] == ["guid-pushed", "guid-late"]
    fetched = [r.path for r in rig.gh.requests_to("GET", DETAIL)]
    assert fetched == [f"/app/hook/deliveries/{polled['id']}"]
    assert f"/app/hook/deliveries/{entry['id']}" not in fetched
    assert rig.replies(12).count("heard @maintainer: later") == 1


async def test_without_poll_mode_nothing_is_read(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    tuned = github_settings(settings, fake_github, agents_file(tmp_path))
    async with run_app(tuned) as app:
        rig = GitHubRig(app, fake_github)
        unreachable_comment(fake_github, "@threadline look", "guid-unread")
        await rig.comment(12, "@threadline pushed")
        await eventually(lambda: rig.replies(12) == ["task: pushed"], "the pushed one")
        assert "guid-unread" not in [guid for guid, _ in stored(rig)]
        assert fake_github.requests_to("GET", DETAIL) == []
