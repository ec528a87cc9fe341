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
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error, Locator, Page, expect, sync_playwright

from bot.hosts.local_seed import BASE_FILES
from tests.procs import Proc, free_port, start

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
    expect(conversation).to_contain_text("looking at: review the retry logic", timeout=WAIT_MS)
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
    expect(thread).to_contain_text("looking at: does this drop the last error?", timeout=WAIT_MS)
    watch_status(thread.get_by_test_id("status-comment"), "waiting for comments")
    thread.get_by_test_id("reply-body").fill("and after the third attempt?")
    thread.get_by_test_id("reply-submit").click()
    p.wait_for_load_state()
    expect(thread).to_contain_text(
        "heard @maintainer: and after the third attempt?", timeout=WAIT_MS
    )
    shoot(p, "04-review-thread")

    # /done closes both sessions.
    thread.get_by_test_id("reply-body").fill("/done")
    thread.get_by_test_id("reply-submit").click()
    p.wait_for_load_state()
    expect(thread.get_by_test_id("status-comment")).to_contain_text(
        "ended by @maintainer", timeout=WAIT_MS
    )
    p.get_by_test_id("comment-body-input").fill("/done")
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    expect(p.locator("#live-conversation").get_by_test_id("status-comment")).to_contain_text(
        "ended by @maintainer", timeout=WAIT_MS
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

    # The sign-in ends under an open page: it says so at its next look (every 15 s, and
    # whenever the tab comes back into view), instead of going quiet.
    expect(p.get_by_test_id("signed-out")).to_be_hidden()
    p.context.clear_cookies()
    p.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(p.get_by_test_id("signed-out")).to_be_visible()
    expect(p.get_by_test_id("signed-out-sign-in")).to_have_attribute(
        "href", re.compile(r"^/login\?next=%2Finspect%2Fsessions%2Fs-")
    )
    print(f"screenshots in {SCREENSHOTS}")


# ---------------------------------------------------------------- the README, a restart, a phone

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHONE = {"width": 390, "height": 844}


def _serve(
    procs: list[Proc], tmp_path: Path, name: str, port: int, extra: dict[str, str] | None = None
) -> tuple[Proc, str]:
    """`threadline serve --playground` as the README's quick start runs it: no token set, in
    a folder of its own (where it keeps the token it makes), on a fixed port."""
    proc = start(
        procs,
        ["serve", "--playground"],
        f"sqlite:///{tmp_path / 'threadline.db'}",
        tmp_path,
        name,
        {
            "THREADLINE_PORT": str(port),
            "THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS": "0.2",
            "THREADLINE_OUTBOX_RETRY_SECONDS": "0.2",
            **(extra or {}),
        },
    )
    link = proc.wait_for(r"Playground: (\S+)").group(1)
    return proc, link


@pytest.fixture
def browser_context() -> Iterator[Callable[..., Page]]:
    """New pages in one Chromium: `open_page(viewport=...)`."""
    _chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:

            def open_page(viewport: dict[str, int] | None = None, **options: object) -> Page:
                context = browser.new_context(
                    viewport=viewport or {"width": 1280, "height": 900}, **options
                )  # type: ignore[arg-type]
                context.set_default_timeout(WAIT_MS)
                return context.new_page()

            yield open_page
        finally:
            browser.close()


def _comment(p: Page, text: str) -> None:
    p.get_by_test_id("comment-body-input").fill(text)
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()


@pytest.mark.slow
def test_the_readme_walkthrough_across_restarts_keeps_the_browser_signed_in(
    tmp_path: Path, procs: list[Proc], browser_context: Callable[..., Page]
) -> None:
    port = free_port()
    # The quick start: no token configured; the printed link signs the browser in.
    first, link = _serve(procs, tmp_path, "serve-1", port)
    assert "/login?token=" in link
    p = browser_context()
    p.goto(link)
    p.wait_for_url(re.compile(r"/playground"))
    _comment(p, "@threadline look at the retry logic")
    conversation = p.locator("#live-conversation")
    expect(conversation.get_by_test_id("status-comment")).to_contain_text(
        "waiting for comments", timeout=WAIT_MS
    )
    _comment(p, "/done")  # as the quick start says, `/done` ends the session
    expect(conversation.get_by_test_id("status-comment")).to_contain_text(
        "ended by @maintainer", timeout=WAIT_MS
    )
    env_file = tmp_path / "threadline.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "the kept token is owner-only"
    assert "THREADLINE_OPERATOR_TOKEN=" in env_file.read_text(encoding="utf-8")
    first.stop()

    # README: "THREADLINE_CONFIG=examples/approvals.yml threadline serve --playground",
    # on the quick start's database. The open tab stays signed in across the restart and
    # goes on updating.
    approvals = {"THREADLINE_CONFIG": str(EXAMPLES / "approvals.yml")}
    second, link = _serve(procs, tmp_path, "serve-2", port, approvals)
    assert "token=" not in link, "the kept token is configured now: it is never printed"
    p.evaluate("window.__stayed = 'yes'")
    _comment(p, "/agent fixer add a changelog entry")
    statuses = p.locator("#live-conversation").get_by_test_id("status-comment")
    expect(statuses.last).to_contain_text("Awaiting approval", timeout=30_000)
    expect(p.get_by_test_id("signed-out")).to_be_hidden()
    assert "/login" not in p.url
    _comment(p, "/approve")
    expect(p.locator("#live-conversation")).to_contain_text("opened #2", timeout=30_000)
    shoot(p, "10-approval-answered")

    # The pull request the approval opened: listed, linked and shown.
    p.reload()
    expect(p.get_by_test_id("pull-2")).to_contain_text("Changelog: add a changelog entry")
    p.get_by_test_id("pull-2").get_by_role("link").click()
    p.wait_for_url(re.compile(r"pr=2"))
    expect(p.get_by_test_id("pr-title")).to_contain_text("playground/demo#2")
    expect(p.get_by_test_id("live-files")).to_contain_text(
        "Uploads are retried while the archive is briefly down."
    )
    shoot(p, "11-approval-pull-request")
    second.stop()

    # A restart with another token: the open tab says it is signed out (it does not just
    # stop updating), holds back a comment and keeps its text; signing in from there works.
    text = env_file.read_text(encoding="utf-8")
    new_token = "a-new-operator-token-after-rotation-0123456789"
    env_file.write_text(
        re.sub(r"THREADLINE_OPERATOR_TOKEN=\S+", f"THREADLINE_OPERATOR_TOKEN={new_token}", text),
        encoding="utf-8",
    )
    third, _ = _serve(procs, tmp_path, "serve-3", port, approvals)
    expect(p.get_by_test_id("signed-out")).to_be_visible()
    shoot(p, "12-signed-out")
    draft = "a long thought about the changelog that must not be lost"
    p.get_by_test_id("comment-body-input").fill(draft)
    p.get_by_test_id("comment-submit").click()
    assert "pr=2" in p.url, "held back: the page did not leave"
    expect(p.get_by_test_id("comment-body-input")).to_have_value(draft)
    p.get_by_test_id("signed-out-sign-in").click()
    p.get_by_test_id("login-token").fill(new_token)
    p.get_by_test_id("login-submit").click()
    p.wait_for_url(re.compile(r"/playground\?.*pr=2"))
    expect(p.get_by_test_id("comment-body-input")).to_have_value(draft)
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    expect(p.get_by_test_id("live-conversation")).to_contain_text(draft)

    # The sign-in ends between two looks (no notice yet): the server's answer keeps the
    # text, and signing in from that page (once "405: Method Not Allowed") goes back to
    # the page with the text in its box.
    p.evaluate("window.threadlineSignedOut = function () {}")  # the page has not noticed
    p.context.clear_cookies()
    second_draft = "written while the sign-in ended"
    p.get_by_test_id("comment-body-input").fill(second_draft)
    p.get_by_test_id("comment-submit").click()
    p.wait_for_load_state()
    expect(p.get_by_test_id("form-not-taken")).to_be_visible()
    expect(p.get_by_test_id("kept-draft")).to_have_value(second_draft)
    shoot(p, "13-form-not-taken")
    p.get_by_test_id("login-token").fill(new_token)
    p.get_by_test_id("login-submit").click()
    p.wait_for_url(re.compile(r"/playground\?.*pr=2"))
    expect(p.get_by_test_id("pr-title")).to_contain_text("playground/demo#2")
    expect(p.get_by_test_id("comment-body-input")).to_have_value(second_draft)
    third.stop()


@pytest.mark.slow
def test_on_a_phone_review_threads_are_in_reach_and_deleted_lines_take_comments(
    server: str, browser_context: Callable[..., Page]
) -> None:
    p = browser_context(PHONE, is_mobile=True, has_touch=True)
    p.goto(f"{server}/login?next=/playground")
    p.get_by_test_id("login-token").fill(TOKEN)
    p.get_by_test_id("login-submit").click()
    p.wait_for_url(re.compile(r"/playground"))
    _comment(p, "@threadline review the retry logic")
    expect(p.locator("#live-conversation").get_by_test_id("status-comment")).to_contain_text(
        "waiting for comments"
    )

    # A deleted line, numbered in the old file, takes a comment (side LEFT).
    old = BASE_FILES["src/uploader.py"].splitlines().index("    response.raise_for_status()") + 1
    p.get_by_test_id(f"line-src/uploader.py-{old}-old").click()
    expect(p.get_by_test_id("new-thread-line")).to_have_value(str(old))
    p.get_by_test_id("new-thread-body").fill("@threadline why does this go?")
    p.get_by_test_id("new-thread-submit").click()
    p.wait_for_load_state()
    thread = p.get_by_test_id("review-thread").first
    expect(thread).to_contain_text(f"line {old} (old)")
    expect(thread).to_contain_text("looking at: why does this go?", timeout=WAIT_MS)

    # Its reply button is on the screen, not off to the right inside the wide diff.
    button = thread.get_by_test_id("reply-submit")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"], box
    assert p.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shoot(p, "14-phone-review-thread")
    thread.get_by_test_id("reply-body").fill("and the error it raised?")
    button.tap()
    p.wait_for_load_state()
    expect(p.get_by_test_id("review-thread").first).to_contain_text(
        "heard @maintainer: and the error it raised?"
    )

    # The Sessions page on a phone: every column there, each row says its thread's kind.
    p.goto(f"{server}/inspect/sessions")
    rows = p.get_by_test_id("session-row")
    expect(rows).to_have_count(2)
    kinds = sorted(rows.get_by_test_id("thread-kind").all_inner_texts())
    assert kinds[0] == "conversation"
    assert kinds[1].startswith("review thread")
    for cell in rows.first.locator("td").all():
        cell_box = cell.bounding_box()
        assert cell_box is not None
        assert cell.is_visible()
        assert cell_box["x"] + cell_box["width"] <= PHONE["width"] + 1, cell.inner_text()
    expect(rows.first).to_contain_text("maintainer")  # "Started by", hidden before
    shoot(p, "15-phone-sessions")
