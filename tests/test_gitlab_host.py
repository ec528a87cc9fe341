"""bot/hosts/gitlab.py over real HTTP against the fake GitLab in tests/fakes/gitlab.py.

Each HostClient method is checked for the request GitLab's API pages describe (method,
path, body), then for how failures come back: rate limits, 5xx, timeouts, lost
answers, refused connections, a wrong token. The pure helpers (error mapping, diff line
location) get table tests of their own.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
from gitlab.exceptions import GitlabHttpError, GitlabParsingError
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts.base import (
    COMMIT_STATUSES,
    REACTIONS,
    RESOLVE_THREADS,
    ChangedFile,
    CommitState,
    DiffComment,
    FileChange,
    HostClient,
    HostError,
    Identity,
    NotFound,
    PullInfo,
    RateLimited,
    Unauthorized,
    Unsupported,
)
from bot.hosts.gitlab import (
    DiffLine,
    GitLabClient,
    line_code,
    locate,
    map_error,
    permission_for,
    retry_after,
)
from bot.paths import UnsafePath
from tests.fakes.gitlab import TOKEN, FakeGitLab, Project, diff_file

REPO = "group/sub/project"
PID = "group%2Fsub%2Fproject"
HEAD = "a" * 40
ISSUE = ThreadRef("gitlab", REPO, "issue", 7)
MR = ThreadRef("gitlab", REPO, "pull", 3)
MR_NOTES = f"/projects/{PID}/merge_requests/3/notes"

RETRY_DIFF = "\n".join(
    [
        "@@ -1,6 +1,7 @@",
        " import time",
        "-RETRIES = 3",
        "+RETRIES = 5",
        "+BACKOFF = 2.0",
        " ",
        " def retry(fn):",
        "     for _ in range(RETRIES):",
        "         fn()",
        "@@ -20,3 +21,4 @@ def retry(fn):",
        "     return fn()",
        " ",
        " def other():",
        "+    pass",
        "",
    ]
)
DIFFS = [
    diff_file("src/retry.py", RETRY_DIFF),
    diff_file("docs/new.md", "@@ -0,0 +1,2 @@\n+# New\n+text\n", new_file=True),
    diff_file("old.txt", "@@ -1 +0,0 @@\n-gone\n", deleted_file=True),
    diff_file("lib/b.py", "", old_path="lib/a.py"),
]


@pytest.fixture
async def gl() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        seed(fake)
        yield fake


def seed(fake: FakeGitLab) -> Project:
    project = fake.add_project(REPO)
    fake.add_issue(project, 7)
    fake.add_merge_request(project, 3, DIFFS, title="Retry better", head_sha=HEAD)
    fake.add_file(project, "src/retry.py", b"import time\n", ref=HEAD)
    return project


@pytest.fixture
async def client(gl: FakeGitLab) -> AsyncIterator[GitLabClient]:
    made = GitLabClient(gl.url, TOKEN, timeout=5)
    yield made
    made.close()


def project_of(gl: FakeGitLab) -> Project:
    return next(p for p in gl.projects.values() if p.path == REPO)


def only(gl: FakeGitLab, method: str, path: str) -> Any:
    """The one request with `method` whose path is exactly `path`; returns its body."""
    found = [r for r in gl.requests if r.method == method and r.path == path]
    assert len(found) == 1, [(r.method, r.path) for r in gl.requests]
    assert found[0].headers["PRIVATE-TOKEN"] == TOKEN
    return found[0].body


def test_the_client_is_a_host_client() -> None:
    made = GitLabClient("https://gitlab.example", TOKEN, timeout=1)
    client: HostClient = made  # mypy checks the protocol here
    assert client.host == "gitlab"
    assert client.capabilities == {RESOLVE_THREADS, COMMIT_STATUSES, REACTIONS}
    made.close()


async def test_a_client_from_settings(gl: FakeGitLab) -> None:
    settings = Settings(gitlab_url=gl.url, gitlab_token=TOKEN, host_timeout_seconds=3.0)
    made = GitLabClient.from_settings(settings)
    try:
        assert (await made.whoami()).login == "threadline-bot"
    finally:
        made.close()
    with pytest.raises(ValueError, match="GITLAB_TOKEN"):
        GitLabClient.from_settings(Settings())


# ---------------------------------------------------------------- comments


@pytest.mark.parametrize(
    ("thread", "kind"), [(ISSUE, "issues/7"), (MR, "merge_requests/3")], ids=["issue", "mr"]
)
async def test_post_comment_in_the_conversation_is_a_note(
    gl: FakeGitLab, client: GitLabClient, thread: ThreadRef, kind: str
) -> None:
    posted = await client.post_comment(thread, "hello <!-- m1 -->")

    assert only(gl, "POST", f"/projects/{PID}/{kind}/notes") == {"body": "hello <!-- m1 -->"}
    note = gl.notes[int(posted.id)]
    assert note.body == "hello <!-- m1 -->"
    assert posted.thread_id is None
    assert posted.url == f"{gl.url}/{REPO}/-/{kind}#note_{posted.id}"


@pytest.mark.parametrize("base", [ISSUE, MR], ids=["issue", "mr"])
async def test_post_comment_in_a_thread_replies_to_the_discussion(
    gl: FakeGitLab, client: GitLabClient, base: ThreadRef
) -> None:
    started = gl.add_note(project_of(gl), _kind(base), base.number, "a question")
    thread = ThreadRef("gitlab", REPO, base.target, base.number, started.discussion_id)

    posted = await client.post_comment(thread, "an answer")

    path = f"/projects/{PID}/{_kind(base)}/{base.number}/discussions/{started.discussion_id}/notes"
    assert only(gl, "POST", path) == {"body": "an answer"}
    assert posted.thread_id == started.discussion_id
    assert gl.notes[int(posted.id)].discussion_id == started.discussion_id


async def test_edit_comment_puts_the_note_or_the_discussion_note(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    posted = await client.post_comment(MR, "first")
    await client.edit_comment(MR, posted.id, "second")
    assert only(gl, "PUT", f"{MR_NOTES}/{posted.id}") == {"body": "second"}

    thread = ThreadRef("gitlab", REPO, "pull", 3, gl.notes[int(posted.id)].discussion_id)
    reply = await client.post_comment(thread, "reply")
    await client.edit_comment(thread, reply.id, "reply, edited")
    path = f"/projects/{PID}/merge_requests/3/discussions/{thread.thread_id}/notes/{reply.id}"
    assert only(gl, "PUT", path) == {"body": "reply, edited"}
    assert gl.notes[int(reply.id)].body == "reply, edited"


async def test_editing_someone_elses_note_is_refused(gl: FakeGitLab, client: GitLabClient) -> None:
    theirs = gl.add_note(project_of(gl), "merge_requests", 3, "mine", author=gl.add_user("ann"))
    with pytest.raises(HostError) as caught:
        await client.edit_comment(MR, str(theirs.id), "changed")
    assert caught.value.status == 403
    assert not caught.value.retryable


async def test_find_comment_takes_the_newest_match_from_the_first_page(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    project = project_of(gl)
    gl.add_note(project, "merge_requests", 3, "old <!-- m -->")
    for n in range(150):
        gl.add_note(project, "merge_requests", 3, f"chatter {n}")
    newest = gl.add_note(project, "merge_requests", 3, "new <!-- m -->")

    found = await client.find_comment(MR, "<!-- m -->")

    assert found is not None
    assert found.id == str(newest.id)
    assert found.thread_id is None
    (call,) = gl.calls("GET", r"/notes$")  # the newest is on page one: no more pages read
    assert call.query == {"sort": "desc", "order_by": "created_at", "per_page": "100"}


async def test_find_comment_ignores_others_quoting_the_marker(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    project = project_of(gl)
    ours = gl.add_note(project, "merge_requests", 3, "status <!-- m -->")
    gl.add_note(
        project, "merge_requests", 3, "> status <!-- m -->\nwhy?", author=gl.add_user("ann")
    )

    found = await client.find_comment(MR, "<!-- m -->")

    assert found is not None
    assert found.id == str(ours.id)


async def test_find_comment_follows_pages(gl: FakeGitLab, client: GitLabClient) -> None:
    project = project_of(gl)
    oldest = gl.add_note(project, "issues", 7, "status <!-- s-1 -->")
    for n in range(230):
        gl.add_note(project, "issues", 7, f"chatter {n}")

    found = await client.find_comment(ISSUE, "<!-- s-1 -->")
    missing = await client.find_comment(ISSUE, "<!-- nowhere -->")

    assert found is not None
    assert found.id == str(oldest.id)
    assert missing is None
    pages = [c.query.get("page", "1") for c in gl.calls("GET", r"/issues/7/notes$")]
    assert pages == ["1", "2", "3", "1", "2", "3"]


async def test_find_comment_in_a_thread_reads_the_discussion(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    started = gl.add_note(project_of(gl), "merge_requests", 3, "question")
    thread = ThreadRef("gitlab", REPO, "pull", 3, started.discussion_id)
    first = await client.post_comment(thread, "one <!-- r -->")
    second = await client.post_comment(thread, "two <!-- r -->")

    found = await client.find_comment(thread, "<!-- r -->")

    assert found is not None
    assert (found.id, found.thread_id) == (second.id, started.discussion_id)
    assert first.id != second.id
    assert gl.calls("GET", rf"/discussions/{started.discussion_id}$")
    assert await client.find_comment(thread, "<!-- nope -->") is None


# ---------------------------------------------------------------- reactions


async def test_add_reaction_awards_emoji_on_the_note(gl: FakeGitLab, client: GitLabClient) -> None:
    posted = await client.post_comment(ISSUE, "look")
    await client.add_reaction(ISSUE, posted.id, "eyes")
    await client.add_reaction(ISSUE, posted.id, "+1")

    bodies = [c.body for c in gl.calls("POST", rf"/issues/7/notes/{posted.id}/award_emoji$")]
    assert bodies == [{"name": "eyes"}, {"name": "thumbsup"}]
    assert [a.name for a in gl.notes[int(posted.id)].awards] == ["eyes", "thumbsup"]


async def test_add_reaction_twice_is_harmless(gl: FakeGitLab, client: GitLabClient) -> None:
    posted = await client.post_comment(MR, "look")
    await client.add_reaction(MR, posted.id, "eyes")
    await client.add_reaction(MR, posted.id, "eyes")  # GitLab: 404 "already been taken"

    assert [a.name for a in gl.notes[int(posted.id)].awards] == ["eyes"]
    assert len(gl.calls("POST", r"/award_emoji$")) == 2
    assert gl.calls("GET", r"/award_emoji$")  # it looked before calling it done


async def test_add_reaction_that_gitlab_refuses_is_an_error(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    posted = await client.post_comment(MR, "look")
    with pytest.raises(NotFound):
        await client.add_reaction(MR, posted.id, "no_such_emoji")
    with pytest.raises(NotFound):
        await client.add_reaction(MR, "999999", "eyes")


# ---------------------------------------------------------------- reviews


async def test_create_review_opens_one_positioned_discussion_per_comment(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    comments = [
        DiffComment("src/retry.py", 3, "added line"),
        DiffComment("src/retry.py", 5, "unchanged line"),
        DiffComment("src/retry.py", 2, "removed line", side="LEFT"),
        DiffComment("src/retry.py", 15, "between the hunks"),
        DiffComment("docs/new.md", 1, "new file"),
        DiffComment("old.txt", 1, "deleted file", side="LEFT"),
        DiffComment("src/retry.py", 3, "a range", start_line=2),
    ]

    posted = await client.create_review(MR, HEAD, comments, body="Summary")

    refs = {"base_sha": "b" * 40, "start_sha": "s" * 40, "head_sha": HEAD}
    retry = {
        "position_type": "text",
        **refs,
        "old_path": "src/retry.py",
        "new_path": "src/retry.py",
    }
    bodies = [c.body for c in gl.calls("POST", r"/merge_requests/3/discussions$")]
    assert [b["position"] for b in bodies] == [
        {**retry, "new_line": 3},
        {**retry, "old_line": 4, "new_line": 5},
        {**retry, "old_line": 2},
        {**retry, "old_line": 14, "new_line": 15},
        {
            "position_type": "text",
            **refs,
            "old_path": "docs/new.md",
            "new_path": "docs/new.md",
            "new_line": 1,
        },
        {
            "position_type": "text",
            **refs,
            "old_path": "old.txt",
            "new_path": "old.txt",
            "old_line": 1,
        },
        {
            **retry,
            "new_line": 3,
            "line_range": {
                "start": {"line_code": _code("src/retry.py", 3, 2), "type": "new", "new_line": 2},
                "end": {"line_code": _code("src/retry.py", 3, 3), "type": "new", "new_line": 3},
            },
        },
    ]
    assert [b["body"] for b in bodies] == [c.body for c in comments]
    assert len(posted) == len(comments)
    for result, comment in zip(posted, comments, strict=True):
        note = gl.notes[int(result.id)]
        assert (note.type, note.body, note.discussion_id) == (
            "DiffNote",
            comment.body,
            result.thread_id,
        )
    assert only(gl, "POST", MR_NOTES) == {"body": "Summary"}


async def test_a_review_comment_is_found_again_with_its_thread(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    (posted,) = await client.create_review(
        MR, HEAD, [DiffComment("src/retry.py", 3, "look <!-- rev.0 -->")]
    )
    found = await client.find_comment(MR, "<!-- rev.0 -->")
    assert found == posted


async def test_create_review_at_an_old_head_is_refused(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    with pytest.raises(HostError) as caught:
        await client.create_review(MR, "0" * 40, [DiffComment("src/retry.py", 3, "x")])
    assert not caught.value.retryable
    assert not gl.calls("POST")


async def test_a_review_failing_after_its_first_thread_is_ambiguous(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    comments = [DiffComment("src/retry.py", 3, "one"), DiffComment("src/retry.py", 5, "two")]
    gl.fail("POST", r"/merge_requests/3/discussions$", 400)
    with pytest.raises(HostError) as caught:
        await client.create_review(MR, HEAD, comments)
    assert not caught.value.ambiguous  # nothing was written
    assert not gl.discussions

    gl.fail("POST", r"/merge_requests/3/discussions$", 400, after=1)
    with pytest.raises(HostError) as caught:
        await client.create_review(MR, HEAD, comments)
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert caught.value.ambiguous  # the first thread exists: look before trying again
    assert len(gl.discussions) == 1


async def test_comment_on_a_file_the_review_does_not_touch(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    with pytest.raises(HostError, match="not changed"):
        await client.create_review(MR, HEAD, [DiffComment("README.md", 1, "x")])


async def test_resolve_thread(gl: FakeGitLab, client: GitLabClient) -> None:
    (posted,) = await client.create_review(MR, HEAD, [DiffComment("src/retry.py", 3, "fix")])
    assert posted.thread_id is not None
    await client.resolve_thread(ThreadRef("gitlab", REPO, "pull", 3, posted.thread_id))

    (call,) = gl.calls("PUT", rf"/merge_requests/3/discussions/{posted.thread_id}$")
    assert call.query == {"resolved": "true"}
    assert gl.notes[int(posted.id)].resolved


async def test_issue_threads_cannot_be_resolved(client: GitLabClient) -> None:
    with pytest.raises(Unsupported):
        await client.resolve_thread(ThreadRef("gitlab", REPO, "issue", 7, "abc"))


# ---------------------------------------------------------------- merge request data


async def test_pull_info_comes_from_diff_refs(gl: FakeGitLab, client: GitLabClient) -> None:
    info = await client.pull_info(MR)
    assert info == PullInfo(HEAD, "b" * 40, "s" * 40, "Retry better", "open")
    only(gl, "GET", f"/projects/{PID}/merge_requests/3")


async def test_changed_files(gl: FakeGitLab, client: GitLabClient) -> None:
    files = await client.changed_files(MR)
    assert files == [
        ChangedFile("src/retry.py", "modified", 3, 1, None, RETRY_DIFF),
        ChangedFile("docs/new.md", "added", 2, 0, None, "@@ -0,0 +1,2 @@\n+# New\n+text\n"),
        ChangedFile("old.txt", "removed", 0, 1, None, "@@ -1 +0,0 @@\n-gone\n"),
        ChangedFile("lib/b.py", "renamed", 0, 0, "lib/a.py", None),
    ]


async def test_pull_diff_is_a_git_style_unified_diff(gl: FakeGitLab, client: GitLabClient) -> None:
    diff = await client.pull_diff(MR)
    assert diff == (
        "diff --git a/src/retry.py b/src/retry.py\n--- a/src/retry.py\n+++ b/src/retry.py\n"
        + RETRY_DIFF
        + "diff --git a/docs/new.md b/docs/new.md\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/docs/new.md\n@@ -0,0 +1,2 @@\n+# New\n+text\n"
        "diff --git a/old.txt b/old.txt\ndeleted file mode 100644\n--- a/old.txt\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-gone\n"
        "diff --git a/lib/a.py b/lib/b.py\nrename from lib/a.py\nrename to lib/b.py\n"
    )


async def test_diffs_of_a_big_merge_request_are_read_page_by_page(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    many = [diff_file(f"f{n}.txt", "@@ -0,0 +1 @@\n+x\n", new_file=True) for n in range(230)]
    gl.add_merge_request(project_of(gl), 4, many)
    files = await client.changed_files(ThreadRef("gitlab", REPO, "pull", 4))
    assert [f.path for f in files] == [f"f{n}.txt" for n in range(230)]
    assert len(gl.calls("GET", r"/merge_requests/4/diffs$")) == 3


async def test_read_file_gets_the_raw_bytes_at_a_ref(gl: FakeGitLab, client: GitLabClient) -> None:
    assert await client.read_file(REPO, "src/retry.py", HEAD) == b"import time\n"
    (call,) = gl.calls("GET", r"/raw$")
    assert call.path == f"/projects/{PID}/repository/files/src%2Fretry.py/raw"
    assert call.query == {"ref": HEAD}
    with pytest.raises(NotFound):
        await client.read_file(REPO, "missing.py", HEAD)


# ---------------------------------------------------------------- people and statuses


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (50, "admin"),
        (40, "maintain"),
        (30, "write"),
        (20, "triage"),
        (15, "triage"),
        (10, "read"),
        (5, "read"),
        (None, "none"),
    ],
)
async def test_permission_maps_access_levels(
    gl: FakeGitLab, client: GitLabClient, level: int | None, expected: str
) -> None:
    person = gl.add_user("Dana")
    if level is not None:
        gl.add_member(project_of(gl), person, level)

    assert await client.permission(REPO, "dana") == expected
    (users,) = gl.calls("GET", r"^/users$")
    assert users.query["username"] == "dana"
    only(gl, "GET", f"/projects/{PID}/members/all/{person.id}")


async def test_permission_of_unknown_or_blocked_people_is_none(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    blocked = gl.add_user("mallory", state="blocked")
    gl.add_member(project_of(gl), blocked, 40)
    assert await client.permission(REPO, "nobody") == "none"
    assert await client.permission(REPO, "mallory") == "none"
    assert not gl.calls("GET", r"/members/")


async def test_permission_on_a_missing_project_is_not_found(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    gl.add_user("dana")
    with pytest.raises(NotFound):
        await client.permission("no/such", "dana")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("pending", "pending"),
        ("running", "running"),
        ("success", "success"),
        ("failure", "failed"),
        ("cancelled", "canceled"),
    ],
)
async def test_set_commit_state_posts_a_commit_status(
    gl: FakeGitLab, client: GitLabClient, ours: Any, theirs: str
) -> None:
    await client.set_commit_state(
        REPO, CommitState(HEAD, "threadline/reviewer", ours, "2/4 steps", "https://tl.example/s/1")
    )
    assert only(gl, "POST", f"/projects/{PID}/statuses/{HEAD}") == {
        "state": theirs,
        "name": "threadline/reviewer",
        "description": "2/4 steps",
        "target_url": "https://tl.example/s/1",
    }
    (status,) = project_of(gl).statuses
    assert status["status"] == theirs


async def test_set_commit_state_again_is_harmless(gl: FakeGitLab, client: GitLabClient) -> None:
    state = CommitState(HEAD, "threadline", "running")
    await client.set_commit_state(REPO, state)
    await client.set_commit_state(REPO, state)  # GitLab: 400 "Cannot transition ... from :running"
    await client.set_commit_state(REPO, CommitState(HEAD, "threadline", "success"))
    assert [s["status"] for s in project_of(gl).statuses] == ["success"]
    assert gl.calls("POST", r"/statuses/")[0].body == {"state": "running", "name": "threadline"}
    with pytest.raises(HostError) as caught:  # a real refusal still comes through
        await client.set_commit_state(REPO, CommitState("0" * 40, "threadline", "running"))
    assert isinstance(caught.value, NotFound)


async def test_whoami(gl: FakeGitLab, client: GitLabClient) -> None:
    assert await client.whoami() == Identity(
        "threadline-bot", "project or group access token", ("api",)
    )
    only(gl, "GET", "/user")
    only(gl, "GET", "/personal_access_tokens/self")


# ---------------------------------------------------------------- failures


async def test_a_wrong_token_is_unauthorized(gl: FakeGitLab) -> None:
    wrong = GitLabClient(gl.url, "glpat-wrong-token", timeout=5)
    try:
        with pytest.raises(Unauthorized) as caught:
            await wrong.post_comment(ISSUE, "hi")
    finally:
        wrong.close()
    assert caught.value.status == 401
    assert "glpat-wrong-token" not in str(caught.value)


async def test_the_token_never_reaches_a_message(gl: FakeGitLab, client: GitLabClient) -> None:
    gl.fail("POST", r"/notes$", 400, body={"message": f"bad token {TOKEN} here"})
    with pytest.raises(HostError) as caught:
        await client.post_comment(ISSUE, "hi")
    assert TOKEN not in str(caught.value)
    assert "[token]" in str(caught.value)


async def test_an_unknown_project_is_not_found(gl: FakeGitLab, client: GitLabClient) -> None:
    with pytest.raises(NotFound):
        await client.post_comment(ThreadRef("gitlab", "no/such", "issue", 1), "hi")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "RESET"}, 30.0),
        ({"RateLimit-Remaining": "3", "RateLimit-Reset": "RESET"}, None),
        ({}, None),
    ],
    ids=["retry-after", "ratelimit-reset", "remaining-left", "no-headers"],
)
async def test_429_is_rate_limited_without_retrying(
    gl: FakeGitLab, client: GitLabClient, headers: dict[str, str], expected: float | None
) -> None:
    reset = str(int(time.time()) + 30)
    gl.fail(
        "POST", r"/notes$", 429, headers={k: v.replace("RESET", reset) for k, v in headers.items()}
    )

    with pytest.raises(RateLimited) as caught:
        await client.post_comment(MR, "hi")

    assert caught.value.status == 429
    assert caught.value.retryable
    if expected is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(expected, abs=2)
    assert len(gl.calls("POST", r"/notes$")) == 1  # python-gitlab did not sleep and retry
    assert not gl.notes


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable_and_ambiguous_for_writes(
    gl: FakeGitLab, client: GitLabClient, status: int
) -> None:
    gl.fail("POST", r"/notes$", status)
    gl.fail("GET", r"/merge_requests/3$", status)

    with pytest.raises(HostError) as write:
        await client.post_comment(MR, "hi")
    with pytest.raises(HostError) as read:
        await client.pull_info(MR)

    assert (write.value.status, write.value.retryable, write.value.ambiguous) == (
        status,
        True,
        True,
    )
    assert (read.value.status, read.value.retryable, read.value.ambiguous) == (status, True, False)
    assert len(gl.requests) == 2  # no retries inside python-gitlab


async def test_other_4xx_is_final(gl: FakeGitLab, client: GitLabClient) -> None:
    gl.fail("POST", r"/notes$", 403, body={"message": "403 Forbidden"})
    with pytest.raises(HostError) as caught:
        await client.post_comment(MR, "hi")
    assert (caught.value.status, caught.value.retryable, caught.value.ambiguous) == (
        403,
        False,
        False,
    )


async def test_a_timeout_is_retryable_and_ambiguous_for_writes(gl: FakeGitLab) -> None:
    impatient = GitLabClient(gl.url, TOKEN, timeout=0.3)
    gl.slow("POST", r"/notes$", 0.8)
    gl.slow("GET", r"/merge_requests/3$", 0.8)
    try:
        with pytest.raises(HostError) as write:
            await impatient.post_comment(MR, "slow <!-- k1 -->")
        with pytest.raises(HostError) as read:
            await impatient.pull_info(MR)
        assert (write.value.retryable, write.value.ambiguous) == (True, True)
        assert (read.value.retryable, read.value.ambiguous) == (True, False)

        # The server went on and wrote the note: looking for the marker finds it.
        await _until(lambda: bool(gl.notes))
        found = await impatient.find_comment(MR, "<!-- k1 -->")
        assert found is not None
        assert gl.notes[int(found.id)].body == "slow <!-- k1 -->"
    finally:
        impatient.close()


async def test_created_but_answer_lost_then_found_by_marker(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    gl.lose_response("POST", r"/notes$")

    with pytest.raises(HostError) as caught:
        await client.post_comment(MR, "status <!-- threadline:s-1 -->")

    assert (caught.value.retryable, caught.value.ambiguous) == (True, True)
    (note,) = gl.notes.values()
    found = await client.find_comment(MR, "<!-- threadline:s-1 -->")
    assert found is not None
    assert found.id == str(note.id)


async def test_a_refused_connection_is_retryable_and_not_ambiguous() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    offline = GitLabClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2)
    try:
        with pytest.raises(HostError) as caught:
            await offline.post_comment(MR, "hi")
    finally:
        offline.close()
    assert (caught.value.retryable, caught.value.ambiguous) == (True, False)


async def test_a_self_managed_gitlab_under_a_path_prefix() -> None:
    # Behind a proxy, GitLab writes its own idea of its address into pagination links.
    async with FakeGitLab(prefix="/gitlab", external_url="https://gitlab.internal/gitlab") as gl:
        seed(gl)
        for n in range(120):
            gl.add_note(project_of(gl), "issues", 7, f"chatter {n}")
        client = GitLabClient(gl.url, TOKEN, timeout=5)
        try:
            first = await client.post_comment(ISSUE, "hello <!-- p -->")
            for n in range(120):
                gl.add_note(project_of(gl), "issues", 7, f"more {n}")
            found = await client.find_comment(ISSUE, "<!-- p -->")
            info = await client.pull_info(MR)
            me = await client.whoami()
        finally:
            client.close()
    assert found == first
    assert first.url == f"http://127.0.0.1:{gl.port}/gitlab/{REPO}/-/issues/7#note_{first.id}"
    assert info.head_sha == HEAD
    assert me.login == "threadline-bot"
    assert all(r.raw_path.startswith("/gitlab/api/v4/") for r in gl.requests)
    pages = gl.calls("GET", r"/issues/7/notes$")
    assert [p.query.get("page") for p in pages] == [None, "2"]  # page 2 came through us


# ---------------------------------------------------------------- pure helpers


def test_map_error_table() -> None:
    def gitlab(status: int, message: str = "x") -> GitlabHttpError:
        return GitlabHttpError(message, response_code=status)

    # Built as urllib3 builds them; nothing here opens a socket.
    pool = HTTPConnectionPool("127.0.0.1", 9)
    never_sent = NewConnectionError(HTTPConnection("127.0.0.1", 9), "refused")
    refused = requests.ConnectionError(MaxRetryError(pool, "/", never_sent))
    dropped = requests.ConnectionError(ProtocolError("Connection aborted."))
    cases: list[tuple[Exception, bool, type[HostError], bool, bool]] = [
        (gitlab(401), True, Unauthorized, False, False),
        (gitlab(404), True, NotFound, False, False),
        (gitlab(422), True, HostError, False, False),
        (gitlab(409, "Resource lock"), True, HostError, True, False),
        (gitlab(500), False, HostError, True, False),
        (gitlab(504), True, HostError, True, True),
        (requests.ReadTimeout(), True, HostError, True, True),
        (requests.ReadTimeout(), False, HostError, True, False),
        (requests.ConnectTimeout(), True, HostError, True, False),
        (refused, True, HostError, True, False),
        (dropped, True, HostError, True, True),
        (requests.exceptions.ChunkedEncodingError(), True, HostError, True, True),
        (requests.exceptions.SSLError(), True, HostError, True, True),
        (GitlabParsingError("bad json"), True, HostError, False, True),
    ]
    for exc, write, kind, retryable, ambiguous in cases:
        error = map_error(exc, {}, write=write, what="do it")
        assert type(error) is kind, exc
        assert (error.retryable, error.ambiguous) == (retryable, ambiguous), exc


def test_retry_after_reads_seconds_dates_and_reset_times() -> None:
    now = 1_700_000_000.0
    assert retry_after({"retry-after": "12"}, now) == 12.0
    assert retry_after({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, now) == 20.0
    assert (
        retry_after({"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(now) + 45)}, now)
        == 45.0
    )
    assert (
        retry_after({"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(now) - 5)}, now) == 0.0
    )
    assert retry_after({"Retry-After": "soon"}, now) is None


@pytest.mark.parametrize(
    ("side", "line", "expected"),
    [
        ("RIGHT", 1, DiffLine("unchanged", 1, 1)),
        ("RIGHT", 2, DiffLine("added", 3, 2)),
        ("RIGHT", 3, DiffLine("added", 3, 3)),
        ("LEFT", 2, DiffLine("removed", 2, 2)),
        ("RIGHT", 7, DiffLine("unchanged", 6, 7)),
        ("RIGHT", 10, DiffLine("unchanged", 9, 10)),  # between hunks
        ("LEFT", 9, DiffLine("unchanged", 9, 10)),
        ("RIGHT", 24, DiffLine("added", 23, 24)),
        ("RIGHT", 30, DiffLine("unchanged", 28, 30)),  # after the last hunk
    ],
)
def test_locate(side: Any, line: int, expected: DiffLine) -> None:
    assert locate(RETRY_DIFF, side, line) == expected


def test_permission_for_levels_above_owner() -> None:
    assert permission_for(60) == "admin"
    assert permission_for(0) == "none"


def _code(path: str, old: int, new: int) -> str:
    return line_code(path, DiffLine("unchanged", old, new))


def _kind(thread: ThreadRef) -> str:
    return "issues" if thread.target == "issue" else "merge_requests"


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "path", ["../../other/secrets/README.md", "src/../../x", "/etc/passwd", "src//retry.py", ""]
)
async def test_read_file_refuses_a_path_that_leaves_the_repository(
    gl: FakeGitLab, client: GitLabClient, path: str
) -> None:
    before = len(gl.requests)
    with pytest.raises(UnsafePath):
        await client.read_file(REPO, path, HEAD)
    assert gl.requests[before:] == []


async def test_a_change_set_or_review_with_an_unsafe_path_sends_nothing(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    before = len(gl.requests)
    with pytest.raises(HostError, match="not a plain relative file path"):
        await client.commit_files(
            REPO,
            branch="threadline/x",
            base_sha=HEAD,
            changes=[FileChange("../escape.txt", b"x")],
            message="m",
        )
    with pytest.raises(UnsafePath):
        await client.create_review(
            ThreadRef("gitlab", REPO, "pull", 3), HEAD, [DiffComment("/etc/passwd", 1, "hi")]
        )
    assert gl.requests[before:] == []


async def test_create_issue_posts_a_new_issue_of_the_project(
    gl: FakeGitLab, client: GitLabClient
) -> None:
    # https://docs.gitlab.com/api/issues/#new-issue
    opened = await client.create_issue(REPO, title="Triage", body="Look at them.")
    body = only(gl, "POST", "/projects/group%2Fsub%2Fproject/issues")
    assert body == {"title": "Triage", "description": "Look at them."}
    project = project_of(gl)
    assert opened.number == 8  # issue 7 was there; merge requests count apart
    assert project.issues[8] == "Triage"
    assert project.issue_bodies[8] == "Look at them."
    assert opened.url == f"http://gitlab.example/{REPO}/-/issues/8"
