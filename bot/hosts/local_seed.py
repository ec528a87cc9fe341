"""What the playground starts with: repository `playground/demo` and its pull request #1.

A small, realistic change (a retry loop for uploads, and a test for it) with a flaw a
reviewer can find: after the last attempt the error is swallowed. Seeded by
`PlaygroundStore.prepare` (bot/hosts/local_store.py).
"""

from __future__ import annotations

BASE_MESSAGE = "Upload reports to the archive"
DEMO_REPO = "playground/demo"
DEMO_PULL = 1
MAINTAINER = "maintainer"
OUTSIDER = "outsider"
PEOPLE = ((MAINTAINER, "write"), (OUTSIDER, "read"))

_UPLOADER_BEFORE = '''"""Upload finished reports to the archive service."""

import logging

import requests

log = logging.getLogger(__name__)

ARCHIVE_URL = "https://archive.example.com/upload"


def upload(path: str, session: requests.Session) -> None:
    with open(path, "rb") as report:
        response = session.post(ARCHIVE_URL, data=report, timeout=10)
    response.raise_for_status()
    log.info("uploaded %s", path)
'''

_UPLOADER_AFTER = '''"""Upload finished reports to the archive service."""

import logging
import time

import requests

log = logging.getLogger(__name__)

ARCHIVE_URL = "https://archive.example.com/upload"
RETRIES = 3


def upload(path: str, session: requests.Session) -> None:
    """Send one report, trying again while the archive is briefly unavailable."""
    for attempt in range(RETRIES):
        try:
            with open(path, "rb") as report:
                response = session.post(ARCHIVE_URL, data=report, timeout=10)
            response.raise_for_status()
        except requests.RequestException as exc:
            log.warning("upload of %s failed (attempt %d): %s", path, attempt + 1, exc)
            time.sleep(2**attempt)
        else:
            log.info("uploaded %s", path)
            return
'''

_TEST_AFTER = '''import requests

from src import uploader


class FlakySession:
    """Fails the first `failures` posts, then answers 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def post(self, url, data, timeout):
        self.calls += 1
        if self.calls <= self.failures:
            raise requests.ConnectionError("archive unavailable")
        response = requests.Response()
        response.status_code = 200
        return response


def test_a_brief_outage_is_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(uploader.time, "sleep", lambda seconds: None)
    report = tmp_path / "report.txt"
    report.write_text("done")
    session = FlakySession(failures=2)
    uploader.upload(str(report), session)
    assert session.calls == 3
'''

_README = """# demo

Reports are uploaded to the archive by `src/uploader.py`.
"""

BASE_FILES = {"README.md": _README, "src/uploader.py": _UPLOADER_BEFORE}
HEAD_FILES = {
    **BASE_FILES,
    "src/uploader.py": _UPLOADER_AFTER,
    "tests/test_uploader.py": _TEST_AFTER,
}
DEMO_TITLE = "Retry uploads when the archive is briefly unavailable"
DEMO_BODY = (
    "The archive service drops connections during its nightly restart, and reports "
    "uploaded then are lost. This retries an upload up to three times with a growing "
    "pause, and adds a test with a flaky session."
)
