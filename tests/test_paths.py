"""Repository paths: one helper decides what may name a file (bot/paths.py), and every
tool refuses anything else before the host is asked (issue 15, the `read_file` escape)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from bot.config import Settings
from bot.paths import UnsafePath, contained, quote_segments, quote_whole, repo_path
from tests.conftest import run_app
from tests.fakes.github import FakeGitHub
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings

__all__ = ["fake_github"]

GOOD = ["README.md", "src/retry.py", "docs/a b#1.md", ".github/threadline.yml", "..a/b..", "a.."]
BAD = [
    "",
    ".",
    "..",
    "../x",
    "a/../../b",
    "a/./b",
    "./a",
    "/etc/passwd",
    "//host/share",
    "a//b",
    "a/",
    "a\\..\\b",
    "a\0b",
    "a\nb",
    "a\tb",
    "a\x7fb",
]


@pytest.mark.parametrize("text", GOOD)
def test_plain_relative_paths_are_values(text: str) -> None:
    assert repo_path(text) == PurePosixPath(text)
    assert str(repo_path(text)) == text


@pytest.mark.parametrize("text", [*BAD, None, 3, b"README.md"])
def test_anything_else_is_refused_with_the_reason(text: Any) -> None:
    with pytest.raises(UnsafePath):
        repo_path(text)


def test_quoting_for_each_host() -> None:
    path = repo_path("docs/a b/%2F?#.md")
    assert quote_segments(path) == "docs/a%20b/%252F%3F%23.md"  # GitHub: '/' kept
    assert quote_whole(path) == "docs%2Fa%20b%2F%252F%3F%23.md"  # GitLab: one segment


def test_contained_resolves_symlinks_against_the_root(tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    os.symlink(outside, root / "src" / "link.txt")
    os.symlink(root / "src" / "a.py", root / "inside.txt")
    assert contained(root, "src/a.py") == (root / "src" / "a.py").resolve()
    assert contained(root, PurePosixPath("inside.txt")) == (root / "src" / "a.py").resolve()
    with pytest.raises(UnsafePath, match="outside"):
        contained(root, "src/link.txt")
    with pytest.raises(UnsafePath):
        contained(root, "../secret.txt")


AGENTS = """
agents:
  reader:
    engine: script
    active_tools: [reply, read_file, task_completed]
    script:
      - do:
          - call: {tool: read_file, args: {path: "{input}"}}
          - reply: "done with {input}"
  writer:
    engine: script
    active_tools: [reply, post_review_thread, propose_change, task_completed]
    script:
      - when: '^[.][.]'
        do:
          - call:
              tool: post_review_thread
              args: {path: "{input}", line: 1, body: "a note"}
      - do:
          - call:
              tool: propose_change
              args:
                title: A change
                files: [{path: "{input}", content: "x\\n"}]
defaultAgent: reader
sessions:
  keepSessionOpenForComments: true
"""
OTHER = "other-org/secrets"
SECRET = b"token=hunter2\n"
# Resolved by an HTTP client, these name the other repository's contents URL.
ESCAPES = [
    "../../../other-org/secrets/contents/README.md",
    "src/../../../../other-org/secrets/contents/README.md",
    "/repos/other-org/secrets/contents/README.md",
    "..%2F..%2F..%2Fother-org%2Fsecrets%2Fcontents%2FREADME.md",  # stays one odd name
]


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    fake_github.add_file(OTHER, "README.md", SECRET)
    fake_github.add_file(REPO, "README.md", b"# hello\n", ref="a" * 40)
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        yield GitHubRig(app, fake_github)


def results(rig: GitHubRig, session_id: str, tool: str) -> list[dict[str, Any]]:
    return [
        e.data
        for e in rig.app.runtime.sessions.store.transcript(session_id)
        if e.kind == "tool_result" and e.data["tool"] == tool
    ]


async def test_read_file_cannot_leave_the_repository(rig: GitHubRig) -> None:
    await rig.comment(12, f"@threadline {ESCAPES[0]}")
    await eventually(lambda: rig.replies(12)[-1:] == [f"done with {ESCAPES[0]}"], "first read")
    for path in [*ESCAPES[1:], "README.md"]:
        await rig.comment(12, path)
        await eventually(lambda p=path: rig.replies(12)[-1] == f"done with {p}", path)
    [session] = rig.sessions()
    reads = results(rig, session.id, "read_file")
    assert [r["ok"] for r in reads] == [False, False, False, False, True]
    assert "'..' part" in reads[0]["content"]
    assert "'..' part" in reads[1]["content"]
    assert "absolute" in reads[2]["content"]
    assert reads[4]["content"] == "# hello\n"
    assert all(SECRET.decode() not in str(r["content"]) for r in reads)
    # Nothing was asked of the other repository, and no request carried a `..` part.
    assert [r.path for r in rig.gh.requests if OTHER in r.path or ".." in r.path] == [
        f"/repos/{REPO}/contents/{ESCAPES[3]}"
    ]


async def test_review_threads_and_changes_refuse_unsafe_paths(rig: GitHubRig) -> None:
    await rig.comment(12, "/agent writer ../../etc/passwd")
    await eventually(lambda: len(rig.sessions()) == 1, "the session")
    [session] = rig.sessions()
    await eventually(lambda: results(rig, session.id, "post_review_thread"), "the review call")
    await rig.comment(12, "docs//x.md")
    await eventually(lambda: results(rig, session.id, "propose_change"), "the change call")
    [review] = results(rig, session.id, "post_review_thread")
    [change] = results(rig, session.id, "propose_change")
    assert not review["ok"]
    assert "'..' part" in review["content"]
    assert not change["ok"]
    assert "empty part" in change["content"]
    await rig.app.drain()
    assert rig.gh.requests_to("POST", r".*/reviews$") == []
    assert rig.gh.requests_to("GET", r"/repos/[^/]+/[^/]+$") == []  # not even the branch
