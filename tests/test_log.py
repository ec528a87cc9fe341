"""The text log keeps one record per line: text from a delivery (a login, a comment, a
repository name) cannot forge log lines, and a traceback stays indented under its record."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import log
from bot.config import Settings
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.payloads import encode, github_headers, issue_comment
from tests.test_sessions import REPO, GitHubRig, agents_file, eventually, github_settings

FORGED = "\nFAKE LINE 12:00:00 INFO    bot.web.auth: operator signed in"


def _our_log(fmt: str) -> Iterator[None]:
    """Our handler in `fmt` on the root logger for one test (it writes to sys.stderr)."""
    root = logging.getLogger()
    level = root.level
    log.configure("INFO", fmt)
    yield
    for handler in [h for h in root.handlers if isinstance(h, log._OurHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def text_log() -> Iterator[None]:
    yield from _our_log("text")


@pytest.fixture
def json_log() -> Iterator[None]:
    yield from _our_log("json")


def lines_of(err: str) -> list[str]:
    return err.splitlines()


async def test_a_signed_delivery_cannot_forge_log_lines(
    settings: Settings, text_log: None, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = issue_comment(f"@threadline look{FORGED}", author=f"mallory{FORGED}")
    payload["repository"]["full_name"] = f"octo-org/hello{FORGED}"
    body = encode(payload)
    async with run_app(settings) as app:
        async with app.http.post(
            f"{app.url}/webhooks/github",
            data=body,
            headers=github_headers("issue_comment", body, delivery="d-forge"),
        ) as resp:
            assert resp.status == 202, await resp.text()
        await app.drain()
    err = capsys.readouterr().err
    assert "mallory\\nFAKE LINE" in err, "the handler logged the login, escaped"
    assert [line for line in lines_of(err) if "FAKE" in line and not line[:1].isdigit()] == []
    assert not any(line.startswith("FAKE") for line in lines_of(err))


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("a\nb",), "a\\nb"),
        (("a\r\nb",), "a\\r\\nb"),
        (("tab\there",), "tab\\there"),
        (("\x1b[31mred",), "\\x1b[31mred"),
        (("nel\x85ls\u2028ps\u2029",), "nel\\x85ls\\u2028ps\\u2029"),
        (("back\\slash",), "back\\\\slash"),
        ((ValueError("x\ny"),), "x\\ny"),  # any object's str()
        (("plain é ✓",), "plain é ✓"),
    ],
)
def test_message_arguments_are_escaped(args: tuple[object, ...], shown: str) -> None:
    record = logging.LogRecord("bot.test", logging.INFO, __file__, 1, "got %s", args, None)
    record.delivery = "d\n1"
    record.session = None
    line = log._TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith(f"bot.test: delivery=d\\n1 got {shown}")


def test_a_traceback_is_indented_under_its_record() -> None:
    try:
        raise RuntimeError(f"boom{FORGED}")
    except RuntimeError:
        record = logging.LogRecord(
            "bot.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = log._TextFormatter().format(record)
    first, *rest = text.splitlines()
    assert first.endswith("bot.test: failed")
    assert rest
    assert all(line.startswith(log.INDENT) for line in rest)
    assert any("RuntimeError: boom" in line for line in rest)


async def test_a_handled_deliverys_json_lines_carry_its_delivery_and_session(
    settings: Settings, json_log: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_pull(REPO, 12, head_sha="a" * 40, base_sha="b" * 40, files=[])
        gh.set_permission(REPO, "maintainer", "write")
        tuned = github_settings(settings, gh, agents_file(tmp_path))
        async with run_app(tuned) as app:
            rig = GitHubRig(app, gh)
            _, delivery = await rig.comment(12, "@threadline look at the retries")
            await eventually(lambda: rig.replies(12) == ["task: look at the retries"], "the reply")
            await app.drain()
            [session] = rig.sessions()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert all(isinstance(entry, dict) and entry["message"] for entry in lines)
    ours = f"github:{delivery}"
    thread = "github:octo-org/hello-world/pulls/12"
    of_delivery = [e for e in lines if e.get("delivery") == ours]
    assert {e.get("thread") for e in of_delivery} == {thread}
    assert {e.get("installation") for e in of_delivery} == {4242}
    started = [e for e in of_delivery if e["logger"] == "handlers.act"]
    assert started, "the handler logs the session it started"
    assert [(e["session"], f"session {session.id}" in e["message"]) for e in started] == [
        (session.id, True)
    ]
    # The sender's lines (its own task) carry the thread and installation of each write.
    sends = [e for e in lines if e["logger"] == "bot.sender" and " sent to " in e["message"]]
    assert sends
    assert {(e.get("thread"), e.get("installation")) for e in sends} == {(thread, 4242)}


def test_json_lines_hold_control_characters_as_json_escapes() -> None:
    record = logging.LogRecord("bot.test", logging.INFO, __file__, 1, "got %s", (FORGED,), None)
    record.delivery, record.session = "d\n1", None
    record.thread_key, record.installation = "github:o/r#1", 7
    line = log._JsonFormatter().format(record)
    assert "\n" not in line, "one line: json.dumps escapes control characters"
    entry = json.loads(line)
    assert entry["message"] == f"got {FORGED}"
    assert (entry["delivery"], entry["thread"], entry["installation"]) == (
        "d\n1",
        "github:o/r#1",
        7,
    )
    assert "session" not in entry
