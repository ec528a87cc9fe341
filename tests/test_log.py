"""The text log keeps one record per line: text from a delivery (a login, a comment, a
repository name) cannot forge log lines, and a traceback stays indented under its record."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from bot import log
from bot.config import Settings
from tests.conftest import run_app
from tests.payloads import encode, github_headers, issue_comment

FORGED = "\nFAKE LINE 12:00:00 INFO    bot.web.auth: operator signed in"


@pytest.fixture
def text_log() -> Iterator[None]:
    """Our text handler on the root logger for one test (it writes to sys.stderr)."""
    root = logging.getLogger()
    level = root.level
    log.configure("INFO", "text")
    yield
    for handler in [h for h in root.handlers if isinstance(h, log._OurHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


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
