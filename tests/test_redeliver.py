"""Redelivery reconcile: the fake GitHub's delivery log, our running ingress, real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import Settings
from bot.hosts.github import GitHubApp
from bot.redeliver import Reconciler, reconcile
from tests import payloads as p
from tests.conftest import Running
from tests.fakes.github import FakeGitHub


@pytest.fixture
async def github(app: Running) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(4242, ["octo-org/hello-world"])
        gh.webhook_url = f"{app.url}/webhooks/github"
        gh.webhook_secret = p.SECRET
        yield gh


@pytest.fixture
async def github_app(github: FakeGitHub) -> AsyncIterator[GitHubApp]:
    async with aiohttp.ClientSession() as http:
        yield GitHubApp(
            http, app_id=github.app_id, private_key=github.private_key_pem, api_url=github.url
        )


async def test_failed_deliveries_we_never_stored_are_redelivered_once(
    app: Running, github: FakeGitHub, github_app: GitHubApp, settings: Settings
) -> None:
    comment = p.issue_comment("@threadline hello")
    # Delivered and stored (answered 202): nothing to do.
    body = p.encode(comment)
    headers = p.github_headers("issue_comment", body, delivery="ok-1")
    async with app.http.post(f"{app.url}/webhooks/github", data=body, headers=headers) as resp:
        assert resp.status == 202
    github.add_hook_delivery("ok-1", "issue_comment", comment, status_code=202)
    # We were down: GitHub logged a failure and we have nothing.
    missed = p.issue_comment("@threadline while you were out", comment_id=6001)
    github.add_hook_delivery("missed-1", "issue_comment", missed, status_code=503, ago=600)
    # Failed three redeliveries already: given up.
    hopeless = github.add_hook_delivery("hopeless", "issue_comment", comment, status_code=502)
    for _ in range(3):
        github.hook_deliveries.append({**hopeless, "id": hopeless["id"] + 1000, "redelivery": True})
    # Older than GitHub's redelivery window: not asked for.
    github.add_hook_delivery("ancient", "issue_comment", comment, status_code=500, ago=4 * 86400)

    first = await reconcile(github_app, app.engine)
    await github.settle_redeliveries()
    await app.drain()
    assert first.redelivered == ["missed-1"]
    assert first.given_up == ["hopeless"]
    assert first.errors == []
    row = app.inbox.get("missed-1")
    assert row is not None
    assert row.status == "done"
    assert [c.body for c in app.runtime.history.all()] == [
        "@threadline hello",
        "@threadline while you were out",
    ]
    redeliveries = github.requests_to("POST", r"/app/hook/deliveries/\d+/attempts")
    assert len(redeliveries) == 1

    second = await reconcile(github_app, app.engine)
    assert second.redelivered == []
    assert len(github.requests_to("POST", r"/app/hook/deliveries/\d+/attempts")) == 1


async def test_only_one_process_runs_a_round(
    app: Running, github: FakeGitHub, github_app: GitHubApp
) -> None:
    github.add_hook_delivery("gone", "issue_comment", p.issue_comment(), status_code=500)
    one = Reconciler(github_app, app.engine, interval=60)
    other = Reconciler(github_app, app.engine, interval=60)
    rounds = await asyncio.gather(one.tick(), other.tick())
    assert sorted(r is None for r in rounds) == [False, True]
    ran = next(r for r in rounds if r is not None)
    assert ran.redelivered == ["gone"]
    await github.settle_redeliveries()
    assert await one.tick() is None, "the slot is held for this interval"


async def test_serve_runs_the_reconcile_on_a_timer(settings: Settings) -> None:
    from tests.conftest import run_app, with_settings

    async with FakeGitHub() as github:
        github.install(4242, ["octo-org/hello-world"])
        configured = with_settings(
            settings,
            github_app_id=github.app_id,
            github_private_key=github.private_key_pem,
            github_api_url=github.url,
            github_redelivery_minutes=0.005,  # every 0.3 s
        )
        async with run_app(configured) as app:
            github.webhook_url = f"{app.url}/webhooks/github"
            github.webhook_secret = p.SECRET
            github.add_hook_delivery("late", "issue_comment", p.issue_comment(), status_code=504)
            for _ in range(100):
                await asyncio.sleep(0.05)
                await github.settle_redeliveries()
                if app.inbox.get("late") is not None:
                    break
            await app.drain()
            row = app.inbox.get("late")
            assert row is not None
            assert row.status == "done"
