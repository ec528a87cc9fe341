"""/metrics over real HTTP after a session: the counters move by what happened.

Counters live for the whole test process (each process counts for itself), so the
test reads them before and after and compares the differences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.web.metrics import serve_metrics
from tests import payloads as p
from tests.conftest import Running, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.llm import FakeAnthropic, FakeOpenAI
from tests.test_llm_sessions import DIFF, REVIEWERS, LLMRig, fakes
from tests.test_llm_sessions import agents_file as llm_agents_file
from tests.test_sessions import (
    REPO,
    GitHubRig,
    agents_file,
    eventually,
    github_settings,
    gitlab_issue_mention,
)

__all__ = ["fakes"]  # the fake model servers' fixture, shared with test_llm_sessions

OPERATOR, VIEWER = "op-metrics-token", "view-metrics-token"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` that has `labels` (others free)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(app: Running, token: str = VIEWER) -> Samples:
    headers = {"Authorization": f"Bearer {token}"}
    async with app.http.get(f"{app.url}/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        return parse(await resp.text())


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_pull(
            REPO,
            12,
            head_sha="a" * 40,
            base_sha="b" * 40,
            files=[{"filename": "src/retry.py", "status": "modified"}],
        )
        gh.set_permission(REPO, "maintainer", "write")
        yield gh


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    config = agents_file(tmp_path)
    tuned = with_settings(
        github_settings(settings, fake_github, config), operator_token=OPERATOR, viewer_token=VIEWER
    )
    async with run_app(tuned) as app:
        yield GitHubRig(app, fake_github)


async def test_metrics_need_a_token(rig: GitHubRig) -> None:
    async with rig.app.http.get(f"{rig.app.url}/metrics") as resp:
        assert resp.status == 401
        assert "threadline_" not in await resp.text()
    async with rig.app.http.get(
        f"{rig.app.url}/metrics", headers={"Authorization": "Bearer wrong"}
    ) as resp:
        assert resp.status == 401
    assert await scrape(rig.app, OPERATOR)


async def test_a_sessions_work_shows_in_the_metrics(rig: GitHubRig) -> None:
    app, gh = rig.app, rig.gh
    before = await scrape(app)
    calls_before = len(gh.requests)

    await rig.comment(12, "@threadline look at the retries")
    await eventually(lambda: rig.replies(12)[-1:] == ["task: look at the retries"], "the reply")
    await eventually(lambda: rig.sessions()[0].state == "idle", "the turn ends")
    live = await scrape(app)
    assert value(live, "threadline_sessions_live", state="idle") == 1
    assert value(live, "threadline_sessions_live", state="busy") == 0

    # One forged delivery: refused, and counted without its (unverified) event name.
    raw = p.encode(p.issue_comment("@threadline hi", number=12, pull=True))
    headers = {
        **p.github_headers("issue_comment", raw),
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    async with app.http.post(f"{app.url}/webhooks/github", data=raw, headers=headers) as resp:
        assert resp.status == 401
    _, repeated = await rig.comment(12, "/done")
    # The same delivery again, as a host's redelivery would be: a duplicate.
    again = p.encode(p.issue_comment("/done", number=12, pull=True))
    async with app.http.post(
        f"{app.url}/webhooks/github",
        data=again,
        headers=p.github_headers("issue_comment", again, delivery=repeated),
    ) as resp:
        assert resp.status == 200
    await eventually(lambda: rig.sessions()[0].state == "closed", "the session closes")
    await eventually(lambda: "ended by @maintainer" in rig.status(12), "the status says done")
    await app.drain()
    await eventually(
        lambda: not {"pending", "sending"} & set(app.runtime.outbox.counts()),
        "the outbox is sent",
        within=10,
    )
    after = await scrape(app)
    calls = gh.requests[calls_before:]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    def delta_all(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    received = "threadline_deliveries_received_total"
    assert delta(received, host="github", event="issue_comment", answer="queued") == 2
    assert delta(received, host="github", event="issue_comment", answer="duplicate") == 1
    assert delta(received, host="github", event="", answer="refused") == 1
    handled = "threadline_deliveries_handled_total"
    assert delta(handled, host="github", outcome="done") == 2
    assert delta_all("threadline_delivery_handling_seconds_count", host="github") == 2

    assert delta("threadline_turns_total", result="ran") == rig.session_events(
        rig.sessions()[0].id
    ).count("turn_started")
    assert delta("threadline_turn_seconds_count") >= 1

    # Every write the sender made, by kind, and the host calls it took, by status.
    sends = "threadline_outbox_sends_total"
    assert delta(sends, host="github", kind="reaction", result="sent") == 1  # the eyes
    sent = delta_all("threadline_outbox_sends_total", host="github", result="sent")
    assert sent >= 3  # the reaction, the reply, the status comment (edits coalesce)
    assert delta_all("threadline_outbox_send_seconds_count", host="github") == sent
    by_status: dict[str, int] = {}
    for call in calls:
        by_status[str(call.status)] = by_status.get(str(call.status), 0) + 1
    for status, count in by_status.items():
        assert delta("threadline_host_api_calls_total", host="github", status=status) == count
    assert value(after, "threadline_host_rate_limit_remaining", host="github") == 4999

    assert value(after, "threadline_sessions_live", state="idle") == 0
    assert value(after, "threadline_inbox_depth", status="pending") == 0
    assert value(after, "threadline_inbox_oldest_waiting_seconds") == 0
    assert value(after, "threadline_outbox_rows", status="sent") == sent
    assert value(after, "threadline_outbox_rows", status="failed") == 0
    assert delta_all("threadline_errors_total") == 0


async def test_waiting_deliveries_show_as_depth_and_age(settings: Settings) -> None:
    async with run_app(with_settings(settings, viewer_token=VIEWER), workers=0) as app:
        raw = p.encode(p.issue_comment("@threadline hi"))
        async with app.http.post(
            f"{app.url}/webhooks/github", data=raw, headers=p.github_headers("issue_comment", raw)
        ) as resp:
            assert resp.status == 202
        await eventually(lambda: app.inbox.counts().get("pending") == 1, "stored")
        found = await scrape(app)
        assert value(found, "threadline_inbox_depth", status="pending") == 1
        assert value(found, "threadline_inbox_oldest_waiting_seconds") > 0


async def test_the_metrics_address_serves_without_a_token(settings: Settings) -> None:
    async with (
        run_app(settings, workers=0) as app,
        serve_metrics("127.0.0.1:0", app.engine) as url,
        aiohttp.ClientSession() as http,
        http.get(url) as resp,
    ):
        assert resp.status == 200
        assert "threadline_inbox_depth" in await resp.text()


@pytest.fixture
async def llm_rig(
    settings: Settings,
    fake_github: FakeGitHub,
    fakes: tuple[FakeOpenAI, FakeAnthropic],
    tmp_path: Path,
) -> AsyncIterator[LLMRig]:
    openai, anthropic = fakes
    fake_github.add_repo(REPO).issues[12].diff = DIFF
    config = llm_agents_file(tmp_path, openai, anthropic)
    tuned = with_settings(github_settings(settings, fake_github, config), viewer_token=VIEWER)
    async with run_app(tuned) as app:
        yield LLMRig(app, fake_github, openai, anthropic)


async def test_model_calls_and_tokens_by_provider_and_model(llm_rig: LLMRig) -> None:
    rig = llm_rig
    before = await scrape(rig.app)
    await rig.comment(12, "@threadline review this PR")
    await eventually(
        lambda: rig.replies(12)[-1:] and rig.replies(12)[-1].startswith("Review summary:"),
        "the coordinator's summary",
        within=30,
    )
    await eventually(lambda: rig.sessions()[0].state == "idle", "the turn ends")
    after = await scrape(rig.app)
    [session] = rig.sessions()
    usage: dict[tuple[str, str], list[int]] = {}
    for one in [session, *rig.children(session.id)]:
        for event in rig.transcript(one.id):
            if event.kind == "usage":
                found = usage.setdefault((one.agent_id, event.data["model"]), [0, 0, 0])
                found[0] += 1
                found[1] += event.data["input_tokens"]
                found[2] += event.data["output_tokens"]
    provider = {"coordinator": "local-openai", **{r: "claude" for r in REVIEWERS}}
    expected: dict[tuple[str, str], list[int]] = {}
    for (agent, model), (calls, tokens_in, tokens_out) in usage.items():
        key = (provider[agent], model)
        sums = expected.setdefault(key, [0, 0, 0])
        sums[0], sums[1], sums[2] = sums[0] + calls, sums[1] + tokens_in, sums[2] + tokens_out
    assert {p for p, _ in expected} == {"local-openai", "claude"}
    for (prov, model), (calls, tokens_in, tokens_out) in expected.items():

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("threadline_llm_calls_total", provider=prov, model=model) == calls
        tokens = "threadline_llm_tokens_total"
        assert delta(tokens, provider=prov, model=model, direction="input") == tokens_in
        assert delta(tokens, provider=prov, model=model, direction="output") == tokens_out


async def test_gitlab_api_calls_are_counted_like_githubs(
    settings: Settings, tmp_path: Path
) -> None:
    """python-gitlab talks on its own requests session: its answers are counted by status,
    with the rate limit GitLab says is left, under host="gitlab"."""
    async with FakeGitLab() as gl:
        project = gl.add_project("group/sub/project")
        gl.add_issue(project, 3)
        person = gl.add_user("maintainer")
        gl.add_member(project, person, 30)
        configured = with_settings(
            settings,
            gitlab_url=gl.url,
            gitlab_token=GITLAB_TOKEN,
            outbox_min_interval_seconds=0.0,
            outbox_retry_seconds=0.05,
            host_timeout_seconds=1.0,  # a failed write is ambiguous: retried after 2 of them
            config=agents_file(tmp_path),
            viewer_token=VIEWER,
        )
        async with run_app(configured) as app:
            before = await scrape(app)
            answers_before = len(gl.answers)
            # A write GitLab refuses once, so a status other than 2xx is counted too.
            gl.fail("POST", r"/projects/[^/]+/issues/3/notes/\d+/award_emoji", 500, times=1)
            await gitlab_issue_mention(app, gl, project, person)

            def notes() -> list[str]:
                return [n.body for n in gl.notes.values()]

            await eventually(
                lambda: any("task: gitlab task" in n for n in notes()), "the agent answers"
            )
            await eventually(
                lambda: not {"pending", "sending"} & set(app.runtime.outbox.counts()),
                "the outbox is sent",
                within=10,
            )
            after = await scrape(app)
            answers = gl.answers[answers_before:]

    by_status: dict[str, int] = {}
    for status in answers:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    assert "500" in by_status, by_status
    assert "201" in by_status, by_status
    for status, count in by_status.items():
        counted = value(after, "threadline_host_api_calls_total", host="gitlab", status=status)
        was = value(before, "threadline_host_api_calls_total", host="gitlab", status=status)
        assert counted - was == count, status

    # The refused write: one retry, counted as a send and as an error of its kind.
    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta("threadline_outbox_sends_total", host="gitlab", kind="reaction", result="retry") == 1
    )
    assert (
        delta("threadline_outbox_sends_total", host="gitlab", kind="reaction", result="sent") == 1
    )
    assert delta("threadline_errors_total", kind="send_retry") == 1
    assert delta("threadline_errors_total", kind="send_failed") == 0
    remaining = value(after, "threadline_host_rate_limit_remaining", host="gitlab")
    assert remaining == gl.rate_limit - len(gl.answers)
    assert value(after, "threadline_host_api_calls_total", host="github", status="200") == value(
        before, "threadline_host_api_calls_total", host="github", status="200"
    ), "GitLab's calls are not counted as GitHub's"
