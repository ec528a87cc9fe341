"""In a real browser: the playground and the inspector of a real `threadline serve --playground`.

Headless Chromium from Debian (/usr/bin/chromium, installed by .ci/run), driven with
Playwright for Python; Playwright's own browser downloads are never used. The server is
a subprocess on a free loopback port with a SQLite file of its own and a script agent
that pauses between its actions, so the page can be watched changing by itself.
Screenshots of the main pages are kept in tests-output/screenshots/ (printed at the end).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error, Locator, Page, expect, sync_playwright

from tests.procs import Proc, start

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "tests-output" / "screenshots"
TOKEN = "browser-test-operator-token-0123456789"
SESSION_ID = re.compile(r"\bs-[0-9a-f]{8}\b")
WAIT_MS = 20_000

AGENTS = """
agents:
  reviewer:
    engine: script
    description: reviews slowly enough to be watched
    script:
      - match: task
        when: '(?i)\\bslowly\\b'
        do:
          - reply: "slow start: {input}"
          - sleep: 3
          - update_status: {steps: [Read, Think], done: 1, summary: thinking}
          - sleep: 3
          - reply: "slow end: {input}"
          - task_completed: "took my time"
      - match: task
        do:
          - update_status: {steps: [Read the diff, Review the retries], done: 1, summary: reading}
          - sleep: 1.5
          - reply: "looking at: {input}"
          - sleep: 1.5
          - update_status: {steps: [Read the diff, Review the retries], done: 2, summary: reviewed}
          - task_completed: "reviewed: {input}"
      - do:
          - reply: "heard @{author}: {input}"
defaultAgent: reviewer
sessions:
  keepSessionOpenForComments: true
"""


def _chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path: Path, procs: list[Proc]) -> Iterator[str]:
    _chromium_or_skip()
    (tmp_path / "threadline.yml").write_text(AGENTS, encoding="utf-8")
    proc = start(
        procs,
        ["serve", "--playground"],
        f"sqlite:///{tmp_path / 'threadline.db'}",
        tmp_path,
        "serve",
        {
            "THREADLINE_OPERATOR_TOKEN": TOKEN,
            "THREADLINE_CONFIG": str(tmp_path / "threadline.yml"),
            "THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS": "0.2",
            "THREADLINE_OUTBOX_RETRY_SECONDS": "0.2",
        },
    )
    url = proc.wait_for(r"listening on (http://\S+)").group(1)
    proc.wait_for(r"Playground: ")
    yield url
    proc.stop()


@pytest.fixture
def page(server: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(WAIT_MS)
            yield context.new_page()
        finally:
            browser.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def until(check: Callable[[], bool], what: str, within: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def watch_status(status: Locator, final: str) -> list[str]:
    """Every text a status comment shows until it contains `final`, as the page shows them."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while not seen or final not in seen[-1]:
        if time.monotonic() > deadline:
            raise AssertionError(f"the status never said {final!r}; it said {seen}")
        if status.count():
            try:
                text = status.inner_text(timeout=1000)
            except Error:
                continue  # replaced by a refresh while being read
            if not seen or seen[-1] != text:
                seen.append(text)
        time.sleep(0.05)
    return seen


@pytest.mark.slow
def test_the_playground_and_the_inspector_in_a_browser(server: str, page: Page) -> None:
    p = page

    # Nobody signed in: the inspector (and its API) refuse.
    refused = p.request.get(f"{server}/api/sessions")
    assert refused.status == 401
    raw = p.request.get(f"{server}/inspect/sessions", max_redirects=0)
    assert raw.status == 303
    p.goto(f"{server}/inspect/sessions")
    assert "/login" in p.url
    shoot(p, "01-login")

    # Sign in, and land on the playground.
    p.goto(f"{server}/login?next=/playground")
    p.get_by_test_id("login-token").fill(TOKEN)
    p.get_by_test_id("login-name").fill("browser")
    p.get_by_test_id("login-submit").click()
    p.wait_for_url(re.compile(r"/playground"))
    expect(p.get_by_test_id("pr-title")).to_contain_text("Retry uploads")
    expect(p.get_by_test_id("current-user")).to_have_text("maintainer")

    # A session by comment: 👀, then the status comment moving on, with no reload.
    p.get_by_test_id("comment-body-input").fill("@threadline review the retry logic")
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    p.evaluate("window.__stayed = 'yes'")
    conversation = p.locator("#live-conversation")
    trigger = conversation.locator("[data-testid=comment][data-author=maintainer]").first
    expect(trigger.get_by_test_id("reaction")).to_contain_text("👀", timeout=WAIT_MS)
    status = conversation.get_by_test_id("status-comment")
    seen = watch_status(status, "waiting for comments")
    assert any("working" in text or "starting" in text for text in seen[:-1]), seen
    assert "2/2 steps done" in seen[-1]
    expect(conversation).to_contain_text("looking at: review the retry logic")
    assert p.evaluate("window.__stayed") == "yes", "the page changed without a reload"
    conversation_session = SESSION_ID.search(seen[-1])
    assert conversation_session is not None
    shoot(p, "02-playground-session")

    # A review thread on a diff line, and a reply in it that reaches its session.
    p.get_by_test_id("line-src/uploader.py-23").click()
    expect(p.get_by_test_id("new-thread-line")).to_have_value("23")
    p.get_by_test_id("new-thread-body").fill("@threadline does this drop the last error?")
    shoot(p, "03-new-review-thread")
    p.get_by_test_id("new-thread-submit").click()
    p.wait_for_load_state()
    thread = p.get_by_test_id("review-thread").first
    expect(thread).to_contain_text("looking at: does this drop the last error?")
    watch_status(thread.get_by_test_id("status-comment"), "waiting for comments")
    thread.get_by_test_id("reply-body").fill("and after the third attempt?")
    thread.get_by_test_id("reply-submit").click()
    p.wait_for_load_state()
    expect(thread).to_contain_text("heard @maintainer: and after the third attempt?")
    shoot(p, "04-review-thread")

    # /done closes both sessions.
    thread.get_by_test_id("reply-body").fill("/done")
    thread.get_by_test_id("reply-submit").click()
    p.wait_for_load_state()
    expect(thread.get_by_test_id("status-comment")).to_contain_text("ended by @maintainer")
    p.get_by_test_id("comment-body-input").fill("/done")
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    expect(p.locator("#live-conversation").get_by_test_id("status-comment")).to_contain_text(
        "ended by @maintainer"
    )
    shoot(p, "05-playground-done")

    # The inspector: the sessions, one of them, its transcript and why it closed.
    p.goto(f"{server}/inspect/sessions")
    expect(p.get_by_test_id("session-row")).to_have_count(2)
    shoot(p, "06-inspector-sessions")
    p.locator(f"a[href='/inspect/sessions/{conversation_session.group(0)}']").click()
    expect(p.get_by_test_id("closing-reason")).to_have_text("user_signal")
    expect(p.get_by_test_id("closed-by")).to_have_text("maintainer")
    shoot(p, "07-inspector-session")
    p.get_by_test_id("transcript-link").click()
    expect(p.get_by_test_id("event-closed")).to_contain_text("user_signal")
    expect(p.get_by_test_id("transcript")).to_contain_text("review the retry logic")
    shoot(p, "08-inspector-transcript")

    # A live session's transcript grows on the open page, without a reload.
    p.goto(f"{server}/playground")
    p.get_by_test_id("comment-body-input").fill("@threadline slowly, please")
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    statuses = p.locator("#live-conversation").get_by_test_id("status-comment")
    expect(statuses).to_have_count(2)
    live_session = SESSION_ID.search(statuses.last.inner_text())
    assert live_session is not None
    assert live_session.group(0) != conversation_session.group(0)
    p.goto(f"{server}/inspect/sessions/{live_session.group(0)}/transcript")
    p.evaluate("window.__stayed = 'still'")
    expect(p.get_by_test_id("live-status")).to_be_visible()
    events = p.get_by_test_id("transcript-event")
    at_load = events.count()
    transcript = p.get_by_test_id("transcript")
    until(
        lambda: "slow end: slowly, please" in (transcript.text_content() or ""),
        "the last reply arrives on the open transcript",
    )
    assert events.count() > at_load
    assert p.evaluate("window.__stayed") == "still", "no reload: the events streamed in"
    shoot(p, "09-inspector-live-transcript")
    print(f"screenshots in {SCREENSHOTS}")
