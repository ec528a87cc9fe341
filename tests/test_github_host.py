"""The GitHub adapter against the fake GitHub over real HTTP on loopback.

Each HostClient method is checked for the request GitHub documents (method, path,
headers, body); App auth for its JWT and token cache; errors for their mapping
(rate limits, 5xx, timeouts, lost answers, refused tokens); and the same calls on a
GitHub Enterprise Server base URL and with a plain token.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import gidgethub
import jwt
import pytest

from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts.base import (
    CHECK_RUNS,
    COMMIT_STATUSES,
    REACTIONS,
    RESOLVE_THREADS,
    ChangedFile,
    CommitState,
    DiffComment,
    HostClient,
    HostError,
    NotFound,
    PullInfo,
    RateLimited,
    Unauthorized,
)
from bot.hosts.github import (
    API_VERSION,
    GitHubApp,
    GitHubClient,
    GitHubToken,
    GraphQLErrors,
    github_from_settings,
    host_error,
)
from bot.paths import UnsafePath
from tests.fakes.github import FakeGitHub, Recorded
from tests.payloads import rsa_private_key_pem

REPO = "octo-org/hello-world"
INSTALLATION = 77
HEAD = "a" * 40
BASE = "b" * 40
ISSUE = ThreadRef("github", REPO, "issue", 3)
PULL = ThreadRef("github", REPO, "pull", 7)
TOKENS = r"/app/installations/\d+/access_tokens"
PULL_PATH = rf"/repos/{REPO}/pulls/7"
DIFF = (
    "diff --git a/retry.py b/retry.py\n--- a/retry.py\n+++ b/retry.py\n@@ -1 +1 @@\n-old\n+new é\n"
)
FILES: list[dict[str, Any]] = [
    {"filename": "retry.py", "status": "modified", "additions": 1, "deletions": 1, "patch": "@@ -1 +1 @@\n-old\n+new"},
    {"filename": "docs/new.md", "status": "added", "additions": 4, "deletions": 0},
    {"filename": "util.py", "status": "renamed", "previous_filename": "helpers.py"},
]  # fmt: skip


class Clock:
    """Epoch seconds that move only when told; shared by the client and the fake."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def app_key() -> str:
    return rsa_private_key_pem()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def seed(gh: FakeGitHub) -> None:
    gh.install(INSTALLATION, [REPO])
    gh.add_issue(REPO, 3, "Retry logic drops errors")
    gh.add_pull(REPO, 7, head_sha=HEAD, base_sha=BASE, title="Fix retries", files=FILES, diff=DIFF)
    gh.add_user("reviewer")


@pytest.fixture
async def github(app_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(private_key_pem=app_key, clock=clock) as gh:
        seed(gh)
        yield gh


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as shared:
        yield shared


def make_app(
    session: aiohttp.ClientSession, gh: FakeGitHub, clock: Clock, *, timeout: float = 2.0
) -> GitHubApp:
    return GitHubApp(
        session,
        app_id=gh.app_id,
        private_key=gh.private_key_pem,
        api_url=gh.url,
        graphql_url=gh.graphql_url,
        timeout=timeout,
        clock=clock,
    )


@pytest.fixture
def github_app(session: aiohttp.ClientSession, github: FakeGitHub, clock: Clock) -> GitHubApp:
    return make_app(session, github, clock)


@pytest.fixture
def client(github_app: GitHubApp) -> GitHubClient:
    return github_app.client(INSTALLATION)


def only(gh: FakeGitHub, method: str, path: str) -> Recorded:
    found = gh.requests_to(method, path)
    assert len(found) == 1, [(r.method, r.path) for r in gh.requests]
    return found[0]


def token_of(gh: FakeGitHub, index: int = -1) -> str:
    return gh.installation_tokens(INSTALLATION)[index].value


def assert_rest_headers(
    record: Recorded, *, accept: str = "application/vnd.github+json", auth: str | None = None
) -> None:
    assert record.headers["accept"] == accept
    assert record.headers["x-github-api-version"] == API_VERSION
    assert record.headers["user-agent"] == "threadline"
    if auth is not None:
        assert record.headers["authorization"] == auth


def review_root(gh: FakeGitHub, body: str = "Why retry here?") -> int:
    return int(gh.add_review_comment(REPO, 7, body, path="retry.py", login="reviewer")["id"])


# ---------------------------------------------------------------- App authentication


def test_jwt_claims(github_app: GitHubApp, github: FakeGitHub, clock: Clock) -> None:
    token = github_app.jwt()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, github.public_key_pem, algorithms=["RS256"])
    assert claims["iat"] == int(clock.now) - 60
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] > clock.now
    assert claims["iss"] == str(github.app_id)


async def test_token_request_shape(client: GitHubClient, github: FakeGitHub, clock: Clock) -> None:
    await client.pull_info(PULL)
    minted = only(github, "POST", f"/app/installations/{INSTALLATION}/access_tokens")
    scheme, _, credential = minted.headers["authorization"].partition(" ")
    assert scheme.lower() == "bearer"
    claims = jwt.decode(credential, github.public_key_pem, algorithms=["RS256"])
    assert claims["iss"] == str(github.app_id)
    assert minted.json is None  # no body
    assert_rest_headers(minted)
    assert_rest_headers(only(github, "GET", PULL_PATH), auth=f"token {token_of(github)}")


async def test_token_is_cached_and_reused(client: GitHubClient, github: FakeGitHub) -> None:
    for _ in range(3):
        await client.pull_info(PULL)
    assert len(github.requests_to("POST", TOKENS)) == 1
    auths = {r.headers["authorization"] for r in github.requests_to("GET", PULL_PATH)}
    assert auths == {f"token {token_of(github)}"}


async def test_token_is_refreshed_five_minutes_before_expiry(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    await client.pull_info(PULL)
    clock.advance(3600 - 300 - 1)
    await client.pull_info(PULL)
    assert len(github.requests_to("POST", TOKENS)) == 1
    clock.advance(2)
    await client.pull_info(PULL)
    assert len(github.requests_to("POST", TOKENS)) == 2
    last = github.requests_to("GET", PULL_PATH)[-1]
    assert last.headers["authorization"] == f"token {token_of(github, -1)}"


async def test_concurrent_calls_share_one_token_fetch(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.delay("POST", TOKENS, 0.2)
    results = await asyncio.gather(*(client.pull_info(PULL) for _ in range(8)))
    assert {r.head_sha for r in results} == {HEAD}
    assert len(github.requests_to("POST", TOKENS)) == 1


async def test_forget_drops_the_cached_token(
    github_app: GitHubApp, client: GitHubClient, github: FakeGitHub
) -> None:
    await client.pull_info(PULL)
    github_app.forget(INSTALLATION)
    await client.pull_info(PULL)
    assert len(github.requests_to("POST", TOKENS)) == 2


@pytest.mark.parametrize("end", ["revoke_installation", "expire_installation"])
async def test_refused_token_is_refreshed_once(
    client: GitHubClient, github: FakeGitHub, end: str
) -> None:
    await client.pull_info(PULL)
    getattr(github, end)(INSTALLATION)
    assert (await client.pull_info(PULL)).head_sha == HEAD
    assert len(github.requests_to("POST", TOKENS)) == 2
    assert [r.status for r in github.requests_to("GET", PULL_PATH)] == [200, 401, 200]


async def test_refused_after_refresh_is_unauthorized(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.fail("GET", PULL_PATH, 401, body={"message": "Bad credentials"}, times=2)
    with pytest.raises(Unauthorized) as caught:
        await client.pull_info(PULL)
    assert caught.value.status == 401
    assert len(github.requests_to("POST", TOKENS)) == 2
    assert len(github.requests_to("GET", PULL_PATH)) == 2


@pytest.mark.parametrize(("end", "status"), [("uninstall", 404), ("suspend", 403)])
async def test_uninstalled_or_suspended_installation_is_unauthorized(
    client: GitHubClient, github: FakeGitHub, end: str, status: int
) -> None:
    await client.pull_info(PULL)
    getattr(github, end)(INSTALLATION)
    with pytest.raises(Unauthorized) as caught:
        await client.post_comment(ISSUE, "hello")
    assert caught.value.status == status
    assert not github.issue_comments


async def test_a_key_github_does_not_know_is_unauthorized(
    session: aiohttp.ClientSession, github: FakeGitHub, clock: Clock
) -> None:
    stranger = GitHubApp(
        session,
        app_id=github.app_id,
        private_key=rsa_private_key_pem(),
        api_url=github.url,
        clock=clock,
    )
    with pytest.raises(Unauthorized, match="JSON web token"):
        await stranger.client(INSTALLATION).pull_info(PULL)


def test_app_refuses_a_key_that_is_not_rsa_pem(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="cannot be read as a PEM private key") as caught:
        GitHubApp(session, app_id=1, private_key="-----BEGIN RSA PRIVATE KEY-----\nnope\n")
    assert "nope" not in str(caught.value)


# ---------------------------------------------------------------- comments


async def test_post_comment_in_a_conversation(client: GitHubClient, github: FakeGitHub) -> None:
    posted = await client.post_comment(ISSUE, "On it <!-- threadline:k1 -->")
    sent = only(github, "POST", f"/repos/{REPO}/issues/3/comments")
    assert sent.json == {"body": "On it <!-- threadline:k1 -->"}
    assert_rest_headers(sent, auth=f"token {token_of(github)}")
    assert sent.status == 201
    stored = github.issue_comments[int(posted.id)]
    assert stored["body"] == "On it <!-- threadline:k1 -->"
    assert posted.url == stored["html_url"]
    assert posted.thread_id is None


async def test_post_comment_in_a_review_thread_is_a_reply(
    client: GitHubClient, github: FakeGitHub
) -> None:
    root = review_root(github)
    thread = ThreadRef("github", REPO, "pull", 7, str(root))
    posted = await client.post_comment(thread, "Because of 502s")
    sent = only(github, "POST", f"/repos/{REPO}/pulls/7/comments/{root}/replies")
    assert sent.json == {"body": "Because of 502s"}
    assert_rest_headers(sent)
    assert github.review_comments[int(posted.id)]["in_reply_to_id"] == root
    assert posted.thread_id == str(root)


async def test_edit_comment_in_a_conversation(client: GitHubClient, github: FakeGitHub) -> None:
    posted = await client.post_comment(ISSUE, "status: queued")
    await client.edit_comment(ISSUE, posted.id, "status: running")
    sent = only(github, "PATCH", f"/repos/{REPO}/issues/comments/{posted.id}")
    assert sent.json == {"body": "status: running"}
    assert_rest_headers(sent)
    assert github.issue_comments[int(posted.id)]["body"] == "status: running"


async def test_edit_comment_in_a_review_thread(client: GitHubClient, github: FakeGitHub) -> None:
    thread = ThreadRef("github", REPO, "pull", 7, str(review_root(github)))
    posted = await client.post_comment(thread, "first")
    await client.edit_comment(thread, posted.id, "second")
    sent = only(github, "PATCH", f"/repos/{REPO}/pulls/comments/{posted.id}")
    assert sent.json == {"body": "second"}
    assert github.review_comments[int(posted.id)]["body"] == "second"


async def test_edit_of_a_deleted_comment_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        await client.edit_comment(ISSUE, "999999", "gone")


async def test_find_comment_pages_through_and_returns_the_newest(
    client: GitHubClient, github: FakeGitHub
) -> None:
    marker = "<!-- threadline:status s-1 -->"
    bot = f"{github.app_slug}[bot]"
    for n in range(130):
        if n in (5, 120):
            github.add_issue_comment(
                REPO, 3, f"{'older' if n == 5 else 'newer'} {marker}", login=bot
            )
        else:  # someone quoting the marker is not us
            github.add_issue_comment(REPO, 3, f"quoting {marker}" if n == 125 else f"chatter {n}")
    found = await client.find_comment(ISSUE, marker)
    assert found is not None
    assert github.issue_comments[int(found.id)]["body"] == "newer " + marker
    pages = github.requests_to("GET", f"/repos/{REPO}/issues/3/comments")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]
    assert {r.query["per_page"] for r in pages} == {"100"}
    assert_rest_headers(pages[0])


async def test_find_comment_without_a_match_is_none(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_issue_comment(REPO, 3, "nothing to see")
    assert await client.find_comment(ISSUE, "<!-- threadline:x -->") is None


async def test_find_comment_in_a_review_thread_stays_in_that_thread(
    client: GitHubClient, github: FakeGitHub
) -> None:
    marker = "<!-- threadline:answer -->"
    bot = f"{github.app_slug}[bot]"
    mine, other = review_root(github, "first"), review_root(github, "second")
    in_mine = github.add_review_comment(REPO, 7, f"answer {marker}", in_reply_to=mine, login=bot)
    github.add_review_comment(REPO, 7, f"elsewhere {marker}", in_reply_to=other, login=bot)
    github.add_review_comment(REPO, 7, f"quoting {marker}", in_reply_to=mine)
    found = await client.find_comment(ThreadRef("github", REPO, "pull", 7, str(mine)), marker)
    assert found is not None
    assert (found.id, found.thread_id) == (str(in_mine["id"]), str(mine))
    sent = only(github, "GET", f"/repos/{REPO}/pulls/7/comments")
    assert sent.query["per_page"] == "100"


async def test_find_comment_in_a_pull_conversation_also_finds_review_comments(
    client: GitHubClient, github: FakeGitHub
) -> None:
    marker = "<!-- threadline:review-1.0 -->"
    posted = await client.create_review(
        PULL, HEAD, [DiffComment(path="retry.py", line=1, body=f"finding {marker}")]
    )
    found = await client.find_comment(PULL, marker)
    assert found == posted[0]


async def test_add_reaction_to_a_conversation_comment(
    client: GitHubClient, github: FakeGitHub
) -> None:
    comment = github.add_issue_comment(REPO, 3, "@threadline review this")
    await client.add_reaction(ISSUE, str(comment["id"]), "eyes")
    await client.add_reaction(ISSUE, str(comment["id"]), "eyes")  # harmless twice
    sent = github.requests_to("POST", f"/repos/{REPO}/issues/comments/{comment['id']}/reactions")
    assert [r.json for r in sent] == [{"content": "eyes"}] * 2
    assert [r.status for r in sent] == [201, 200]
    assert_rest_headers(sent[0])
    assert len(github.reactions) == 1


async def test_add_reaction_to_a_review_comment(client: GitHubClient, github: FakeGitHub) -> None:
    root = review_root(github)
    thread = ThreadRef("github", REPO, "pull", 7, str(root))
    await client.add_reaction(thread, str(root), "rocket")
    sent = only(github, "POST", f"/repos/{REPO}/pulls/comments/{root}/reactions")
    assert sent.json == {"content": "rocket"}


async def test_unknown_reaction_is_refused_before_sending(
    client: GitHubClient, github: FakeGitHub
) -> None:
    with pytest.raises(HostError, match="no reaction"):
        await client.add_reaction(ISSUE, "1", "party")
    assert not github.requests


# ---------------------------------------------------------------- reviews and threads


async def test_create_review_is_one_request_with_every_comment(
    client: GitHubClient, github: FakeGitHub
) -> None:
    comments = [
        DiffComment(path="retry.py", line=1, body="retry forever?"),
        DiffComment(path="docs/new.md", line=4, start_line=2, side="RIGHT", body="typo"),
        DiffComment(path="retry.py", line=1, side="LEFT", body="old code"),
    ]
    posted = await client.create_review(PULL, HEAD, comments, body="Review by threadline")
    sent = only(github, "POST", f"/repos/{REPO}/pulls/7/reviews")
    assert sent.json == {
        "commit_id": HEAD,
        "body": "Review by threadline",
        "event": "COMMENT",
        "comments": [
            {"path": "retry.py", "line": 1, "side": "RIGHT", "body": "retry forever?"},
            {
                "path": "docs/new.md",
                "line": 4,
                "side": "RIGHT",
                "start_line": 2,
                "start_side": "RIGHT",
                "body": "typo",
            },
            {"path": "retry.py", "line": 1, "side": "LEFT", "body": "old code"},
        ],
    }
    assert_rest_headers(sent)
    review_id = next(iter(github.reviews))
    only(github, "GET", f"/repos/{REPO}/pulls/7/reviews/{review_id}/comments")
    assert [github.review_comments[int(p.id)]["body"] for p in posted] == [c.body for c in comments]
    assert all(p.thread_id == p.id for p in posted)
    assert all(p.url and p.url.endswith(f"#discussion_r{p.id}") for p in posted)


async def test_review_without_comments(client: GitHubClient, github: FakeGitHub) -> None:
    assert await client.create_review(PULL, HEAD, []) == []
    assert not github.requests
    assert await client.create_review(PULL, HEAD, [], body="Looks fine overall") == []
    sent = only(github, "POST", f"/repos/{REPO}/pulls/7/reviews")
    assert sent.json == {
        "commit_id": HEAD,
        "body": "Looks fine overall",
        "event": "COMMENT",
        "comments": [],
    }
    assert not github.requests_to("GET", rf"/repos/{REPO}/pulls/7/reviews/\d+/comments")


async def test_review_created_but_listing_failed_is_ambiguous(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.fail("GET", rf"/repos/{REPO}/pulls/7/reviews/\d+/comments", 500)
    with pytest.raises(HostError) as caught:
        await client.create_review(PULL, HEAD, [DiffComment(path="retry.py", line=1, body="x")])
    assert caught.value.ambiguous
    assert caught.value.retryable
    assert len(github.reviews) == 1


async def test_review_on_a_line_github_rejects_is_not_retryable(
    client: GitHubClient, github: FakeGitHub
) -> None:
    with pytest.raises(HostError) as caught:
        await client.create_review(PULL, HEAD, [DiffComment(path="nope.py", line=1, body="x")])
    assert (caught.value.status, caught.value.retryable) == (422, False)
    assert "Path could not be resolved" in str(caught.value)


async def test_resolve_thread_through_graphql(client: GitHubClient, github: FakeGitHub) -> None:
    review_root(github, "unrelated")
    root = review_root(github)
    thread = ThreadRef("github", REPO, "pull", 7, str(root))
    await client.resolve_thread(thread)
    assert root in github.resolved
    query, mutation = github.requests_to("POST", "/graphql")
    assert_rest_headers(query, auth=f"token {token_of(github)}")
    assert query.json["variables"] == {
        "owner": "octo-org",
        "name": "hello-world",
        "number": 7,
        "cursor": None,
    }
    assert "reviewThreads(first: 100" in query.json["query"]
    assert "resolveReviewThread(input: {threadId: $threadId})" in mutation.json["query"]
    assert mutation.json["variables"] == {"threadId": github.thread_node_id(root)}

    await client.resolve_thread(thread)  # already resolved: looked up, not resolved again
    assert len(github.requests_to("POST", "/graphql")) == 3


async def test_resolve_thread_pages_through_review_threads(
    client: GitHubClient, github: FakeGitHub
) -> None:
    roots = [review_root(github, f"thread {n}") for n in range(120)]
    await client.resolve_thread(ThreadRef("github", REPO, "pull", 7, str(roots[110])))
    assert github.resolved == {roots[110]}
    first, second, _ = github.requests_to("POST", "/graphql")
    assert first.json["variables"]["cursor"] is None
    assert second.json["variables"]["cursor"] == "100"


async def test_resolve_an_unknown_thread_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        await client.resolve_thread(ThreadRef("github", REPO, "pull", 7, "123456"))
    with pytest.raises(NotFound):
        await client.resolve_thread(ThreadRef("github", REPO, "pull", 99, "1"))


# ---------------------------------------------------------------- pull requests and files


async def test_pull_info(client: GitHubClient, github: FakeGitHub) -> None:
    info = await client.pull_info(PULL)
    assert info == PullInfo(
        head_sha=HEAD, base_sha=BASE, title="Fix retries", state="open", from_fork=False
    )
    assert_rest_headers(only(github, "GET", PULL_PATH))


async def test_changed_files_follow_every_page(client: GitHubClient, github: FakeGitHub) -> None:
    extra: list[dict[str, Any]] = [
        {"filename": f"gen/{n}.py", "status": "added", "additions": 1} for n in range(130)
    ]
    github.repos[REPO].issues[7].files = FILES + extra
    files = await client.changed_files(PULL)
    assert len(files) == 133
    assert files[:3] == [
        ChangedFile("retry.py", "modified", 1, 1, None, "@@ -1 +1 @@\n-old\n+new"),
        ChangedFile("docs/new.md", "added", 4, 0),
        ChangedFile("util.py", "renamed", previous_path="helpers.py"),
    ]
    pages = github.requests_to("GET", f"{PULL_PATH}/files")
    assert [(r.query["per_page"], r.query.get("page", "1")) for r in pages] == [
        ("100", "1"),
        ("100", "2"),
    ]


async def test_pull_diff_asks_for_the_diff_media_type(
    client: GitHubClient, github: FakeGitHub
) -> None:
    assert await client.pull_diff(PULL) == DIFF
    assert_rest_headers(only(github, "GET", PULL_PATH), accept="application/vnd.github.diff")


async def test_read_file_returns_raw_bytes(client: GitHubClient, github: FakeGitHub) -> None:
    blob = bytes(range(256))
    github.add_file(REPO, "assets/logo v2#1.bin", blob, ref="feature/x")
    assert await client.read_file(REPO, "assets/logo v2#1.bin", "feature/x") == blob
    sent = only(github, "GET", f"/repos/{REPO}/contents/assets/logo v2#1.bin")
    assert sent.query == {"ref": "feature/x"}
    assert_rest_headers(sent, accept="application/vnd.github.raw+json")


async def test_read_file_of_a_directory_or_nothing(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_file(REPO, "src/a.py", b"a = 1\n", ref=HEAD)
    with pytest.raises(HostError, match="not a file"):
        await client.read_file(REPO, "src", HEAD)
    with pytest.raises(NotFound):
        await client.read_file(REPO, "src/missing.py", HEAD)


@pytest.mark.parametrize(
    ("permission", "role_name", "expected"),
    [
        ("admin", "admin", "admin"),
        ("admin", "maintain", "maintain"),
        ("write", "write", "write"),
        ("read", "triage", "triage"),
        ("read", "read", "read"),
        ("write", "security-manager", "write"),  # a custom role: its base decides
        ("none", "none", "none"),
    ],
)
async def test_permission(
    client: GitHubClient, github: FakeGitHub, permission: str, role_name: str, expected: str
) -> None:
    github.set_permission(REPO, "maintainer", permission, role_name)
    assert await client.permission(REPO, "maintainer") == expected
    sent = only(github, "GET", f"/repos/{REPO}/collaborators/maintainer/permission")
    assert_rest_headers(sent)


async def test_permission_of_a_stranger_is_none(client: GitHubClient) -> None:
    assert await client.permission(REPO, "reviewer") == "none"


# ---------------------------------------------------------------- commit state


async def test_commit_state_creates_then_updates_one_check_run(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    name = "threadline / s-7f3a"
    await client.set_commit_state(REPO, CommitState(HEAD, name, "pending"))
    created = only(github, "POST", f"/repos/{REPO}/check-runs")
    assert created.json == {
        "name": name,
        "head_sha": HEAD,
        "status": "queued",
        "output": {"title": "Queued", "summary": "Queued"},
    }
    assert_rest_headers(created)
    lookup = github.requests_to("GET", f"/repos/{REPO}/commits/{HEAD}/check-runs")[0]
    assert lookup.query == {"check_name": name, "app_id": str(github.app_id), "per_page": "100"}

    await client.set_commit_state(
        REPO, CommitState(HEAD, name, "running", "2/4 steps", "https://tl.example/s/7f3a")
    )
    await client.set_commit_state(REPO, CommitState(HEAD, name, "success", "all done"))
    (run_id,) = github.check_runs
    updates = github.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run_id}")
    assert [u.json for u in updates] == [
        {
            "status": "in_progress",
            "details_url": "https://tl.example/s/7f3a",
            "output": {"title": "Running", "summary": "2/4 steps"},
        },
        {
            "status": "completed",
            "conclusion": "success",
            "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now)),
            "output": {"title": "Succeeded", "summary": "all done"},
        },
    ]
    assert github.check_runs[run_id]["conclusion"] == "success"


@pytest.mark.parametrize(
    ("state", "status", "conclusion"),
    [("failure", "completed", "failure"), ("cancelled", "completed", "cancelled")],
)
async def test_commit_state_conclusions(
    client: GitHubClient, github: FakeGitHub, state: Any, status: str, conclusion: str
) -> None:
    await client.set_commit_state(REPO, CommitState(HEAD, "threadline", state))
    (run,) = github.check_runs.values()
    assert (run["status"], run["conclusion"]) == (status, conclusion)


# ---------------------------------------------------------------- identity


async def test_whoami_as_an_app(client: GitHubClient, github: FakeGitHub) -> None:
    me = await client.whoami()
    assert (me.login, me.kind) == (f"{github.app_slug}[bot]", "app installation")
    assert "issues:write" in me.scopes
    sent = only(github, "GET", "/app")
    assert sent.headers["authorization"].lower().startswith("bearer ")
    assert_rest_headers(sent)
    assert client.capabilities == frozenset({RESOLVE_THREADS, CHECK_RUNS, REACTIONS})


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "headers", "message", "retry_after"),
    [
        (429, {"Retry-After": "7"}, "Too many requests", 7.0),
        (403, {"Retry-After": "30"}, "You have exceeded a secondary rate limit.", 30.0),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "+120"},
            "API rate limit exceeded for installation ID 77.",
            120.0,
        ),
        (403, {}, "You have exceeded a secondary rate limit.", None),
        (429, {}, "Too many requests", None),
    ],
)
async def test_rate_limits(
    client: GitHubClient,
    github: FakeGitHub,
    clock: Clock,
    status: int,
    headers: dict[str, str],
    message: str,
    retry_after: float | None,
) -> None:
    if headers.get("x-ratelimit-reset") == "+120":
        headers = {**headers, "x-ratelimit-reset": str(int(clock.now) + 120)}
    github.fail(
        "POST",
        rf"/repos/{REPO}/issues/3/comments",
        status,
        headers=headers,
        body={"message": message},
    )
    with pytest.raises(RateLimited) as caught:
        await client.post_comment(ISSUE, "hi")
    assert caught.value.status == status
    assert caught.value.retryable
    if retry_after is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(retry_after, abs=1)


@pytest.mark.parametrize("kind", ["primary", "secondary", "429"])
async def test_rate_limits_from_the_fakes_helper(
    client: GitHubClient, github: FakeGitHub, kind: Any
) -> None:
    github.rate_limited("PATCH", rf"/repos/{REPO}/issues/comments/\d+", kind, seconds=90)
    posted = await client.post_comment(ISSUE, "status")
    with pytest.raises(RateLimited) as caught:
        await client.edit_comment(ISSUE, posted.id, "status 2")
    assert caught.value.retry_after == pytest.approx(90, abs=1)
    assert caught.value.status == (429 if kind == "429" else 403)


async def test_forbidden_is_final(client: GitHubClient, github: FakeGitHub) -> None:
    github.fail(
        "POST",
        rf"/repos/{REPO}/issues/3/comments",
        403,
        body={"message": "Resource not accessible by integration"},
    )
    with pytest.raises(HostError) as caught:
        await client.post_comment(ISSUE, "hi")
    assert not isinstance(caught.value, RateLimited)
    assert (caught.value.status, caught.value.retryable) == (403, False)


@pytest.mark.parametrize(("method", "ambiguous"), [("POST", True), ("GET", False)])
async def test_server_errors_are_retryable_and_never_retried_here(
    client: GitHubClient, github: FakeGitHub, method: str, ambiguous: bool
) -> None:
    path = rf"/repos/{REPO}/issues/3/comments"
    github.fail(method, path, 502, times=5)
    call = client.post_comment(ISSUE, "hi") if method == "POST" else client.find_comment(ISSUE, "m")
    with pytest.raises(HostError) as caught:
        await call
    assert (caught.value.status, caught.value.retryable, caught.value.ambiguous) == (
        502,
        True,
        ambiguous,
    )
    assert len(github.requests_to(method, path)) == 1


@pytest.mark.parametrize(("method", "ambiguous"), [("POST", True), ("GET", False)])
async def test_timeouts_are_retryable(
    session: aiohttp.ClientSession, github: FakeGitHub, clock: Clock, method: str, ambiguous: bool
) -> None:
    client = make_app(session, github, clock, timeout=0.3).client(INSTALLATION)
    path = rf"/repos/{REPO}/issues/3/comments"
    github.delay(method, path, 1.0)
    started = time.monotonic()
    call = client.post_comment(ISSUE, "hi") if method == "POST" else client.find_comment(ISSUE, "m")
    with pytest.raises(HostError, match="no answer in time") as caught:
        await call
    assert time.monotonic() - started < 0.9
    assert (caught.value.retryable, caught.value.ambiguous) == (True, ambiguous)


async def test_connection_refused_is_retryable_and_not_ambiguous(
    session: aiohttp.ClientSession, app_key: str, clock: Clock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitHubToken(session, token="ghp_x", api_url=f"http://127.0.0.1:{port}").client()
    with pytest.raises(HostError, match="cannot connect") as caught:
        await client.post_comment(ISSUE, "hi")
    assert (caught.value.retryable, caught.value.ambiguous) == (True, False)


@pytest.mark.parametrize("mode", ["502", "close", "hang"])
async def test_created_but_answer_lost_then_found_by_marker(
    session: aiohttp.ClientSession, github: FakeGitHub, clock: Clock, mode: Any
) -> None:
    client = make_app(session, github, clock, timeout=0.3).client(INSTALLATION)
    marker = "<!-- threadline:outbox-42 -->"
    github.lose_response("POST", rf"/repos/{REPO}/issues/3/comments", mode)
    with pytest.raises(HostError) as caught:
        await client.post_comment(ISSUE, f"Session started {marker}")
    assert (caught.value.retryable, caught.value.ambiguous) == (True, True)
    found = await client.find_comment(ISSUE, marker)
    assert found is not None
    assert list(github.issue_comments) == [int(found.id)]


async def test_secrets_stay_out_of_errors_and_logs(
    client: GitHubClient,
    github_app: GitHubApp,
    github: FakeGitHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.pull_info(PULL)
    github.fail("GET", PULL_PATH, 401, times=2)
    github.fail("POST", rf"/repos/{REPO}/issues/3/comments", 500)
    github.fail("POST", rf"/repos/{REPO}/issues/3/comments", 429, headers={"Retry-After": "1"})
    failures: list[BaseException] = []
    for call in (
        client.pull_info(PULL),
        client.post_comment(ISSUE, "x"),
        client.post_comment(ISSUE, "x"),
    ):
        with pytest.raises(HostError) as caught:
            await call
        failures.append(caught.value)
    secrets = [t.value for t in github.installation_tokens(INSTALLATION)]
    secrets += [github_app.jwt(), github.private_key_pem.splitlines()[1]]
    shown = caplog.text + repr(client) + repr(github_app)
    shown += "".join(f"{e!s}{e!r}{e.__cause__!s}{e.__cause__!r}" for e in failures)
    for secret in secrets:
        assert secret not in shown


def as_host_client(client: GitHubClient) -> HostClient:
    return client  # mypy checks that GitHubClient has every HostClient method


def test_host_error_table() -> None:
    """The mapping on its own, without sockets."""
    now = 1_000_000.0

    def mapped(exc: BaseException, method: str = "POST") -> HostError:
        return host_error(exc, method=method, path="/x", write=method in ("POST", "PATCH"), now=now)

    limited = mapped(
        gidgethub.RateLimitExceeded(
            None,
            "API rate limit exceeded",
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000030"},
        )
    )
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 30.0
    assert isinstance(mapped(gidgethub.BadRequest(http.HTTPStatus.UNAUTHORIZED)), Unauthorized)
    assert isinstance(mapped(gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND)), NotFound)
    broken = mapped(gidgethub.GitHubBroken(http.HTTPStatus.SERVICE_UNAVAILABLE), "PATCH")
    assert (broken.retryable, broken.ambiguous) == (True, True)
    assert not mapped(gidgethub.GitHubBroken(http.HTTPStatus.BAD_GATEWAY), "GET").ambiguous
    invalid = mapped(gidgethub.InvalidField([], "Validation Failed"))
    assert (invalid.status, invalid.retryable) == (422, False)
    assert isinstance(mapped(GraphQLErrors([{"type": "NOT_FOUND", "message": "x"}])), NotFound)
    assert isinstance(
        mapped(GraphQLErrors([{"type": "RATE_LIMITED", "message": "x"}])), RateLimited
    )
    assert mapped(TimeoutError()).ambiguous
    assert not mapped(aiohttp.ConnectionTimeoutError()).ambiguous
    assert mapped(aiohttp.ServerDisconnectedError()).ambiguous
    assert mapped(ValueError("bad json")).retryable


# ---------------------------------------------------------------- GHES and token auth


async def test_enterprise_server_base_url_end_to_end(
    session: aiohttp.ClientSession, app_key: str, clock: Clock
) -> None:
    async with FakeGitHub(
        prefix="/api/v3", graphql_path="/api/graphql", private_key_pem=app_key, clock=clock
    ) as ghes:
        seed(ghes)
        settings = Settings(
            github_app_id=ghes.app_id,
            github_private_key=app_key,
            github_api_url=f"{ghes.root}/api/v3",
            host_timeout_seconds=2.0,
        )
        app = github_from_settings(session, settings, clock=clock)
        assert isinstance(app, GitHubApp)
        client = app.client(INSTALLATION)
        posted = await client.post_comment(ISSUE, "hello from GHES")
        (finding,) = await client.create_review(PULL, HEAD, [DiffComment("retry.py", 1, "hm")])
        await client.resolve_thread(ThreadRef("github", REPO, "pull", 7, finding.thread_id))
        assert (await client.whoami()).login == f"{ghes.app_slug}[bot]"
        assert int(posted.id) in ghes.issue_comments
        assert int(finding.id) in ghes.resolved
        paths = {r.raw_path for r in ghes.requests}
        assert "/api/graphql" in paths
        assert all(p.startswith("/api/v3/") or p == "/api/graphql" for p in paths), paths
        assert all(r.status < 400 for r in ghes.requests)


async def test_token_auth(session: aiohttp.ClientSession, github: FakeGitHub, clock: Clock) -> None:
    github.add_personal_token("ghp_single_repo", "octo-bot", scopes=("repo", "read:org"))
    settings = Settings(github_token="ghp_single_repo", github_api_url=github.url)
    auth = github_from_settings(session, settings, clock=clock)
    assert isinstance(auth, GitHubToken)
    client = auth.client(None)
    posted = await client.post_comment(ISSUE, "hi")
    sent = only(github, "POST", f"/repos/{REPO}/issues/3/comments")
    assert_rest_headers(sent, auth="token ghp_single_repo")
    assert github.issue_comments[int(posted.id)]["user"]["login"] == "octo-bot"
    me = await client.whoami()
    assert (me.login, me.kind, me.scopes) == ("octo-bot", "token", ("repo", "read:org"))
    assert client.capabilities == frozenset({RESOLVE_THREADS, COMMIT_STATUSES, REACTIONS})
    assert not github.requests_to("POST", TOKENS)


async def test_token_auth_writes_commit_statuses(
    session: aiohttp.ClientSession, github: FakeGitHub
) -> None:
    github.add_personal_token("ghp_t", "octo-bot")
    client = GitHubToken(session, token="ghp_t", api_url=github.url).client()
    state = CommitState(HEAD, "threadline", "cancelled", "x" * 200, "https://tl.example/s/1")
    await client.set_commit_state(REPO, state)
    sent = only(github, "POST", f"/repos/{REPO}/statuses/{HEAD}")
    assert sent.json == {
        "state": "error",
        "context": "threadline",
        "description": "x" * 140,
        "target_url": "https://tl.example/s/1",
    }


async def test_refused_token_is_unauthorized_without_refresh(
    session: aiohttp.ClientSession, github: FakeGitHub
) -> None:
    client = GitHubToken(session, token="ghp_revoked", api_url=github.url).client()
    with pytest.raises(Unauthorized):
        await client.pull_info(PULL)
    assert len(github.requests) == 1


def test_settings_without_credentials(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="App"):
        github_from_settings(session, Settings())


# ---------------------------------------------------------------- the fake's own checks


async def test_fake_refuses_what_github_would(
    session: aiohttp.ClientSession, github: FakeGitHub, github_app: GitHubApp
) -> None:
    github.add_personal_token("ghp_t", "octo-bot")
    good = {
        "accept": "application/vnd.github+json",
        "x-github-api-version": API_VERSION,
        "authorization": "token ghp_t",
    }
    url = f"{github.url}/repos/{REPO}/issues/3/comments"

    async def status(headers: dict[str, str], body: Any = None, target: str = url) -> int:
        async with session.post(target, headers=headers, json=body) as response:
            return response.status

    assert await status(good, {"body": "ok"}) == 201
    assert await status({**good, "x-github-api-version": "2010-01-01"}, {"body": "x"}) == 400
    assert (
        await status({k: v for k, v in good.items() if k != "x-github-api-version"}, {"body": "x"})
        == 400
    )
    assert await status({**good, "accept": "text/html"}, {"body": "x"}) == 415
    assert (
        await status({k: v for k, v in good.items() if k != "authorization"}, {"body": "x"}) == 401
    )
    assert await status(good, {"text": "x"}) == 422
    tokens = f"{github.url}/app/installations/{INSTALLATION}/access_tokens"
    assert await status({**good, "authorization": "Bearer not-a-jwt"}, None, tokens) == 401
    assert (
        await status({**good, "authorization": f"Bearer {github_app.jwt()}"}, None, tokens) == 201
    )


# Paths that must never reach a URL: each is refused before any request is made.
UNSAFE_PATHS = [
    "../../other-org/secrets/README.md",
    "docs/../../../other-org/secrets/README.md",
    "/etc/passwd",
    "./README.md",
    "docs//a.md",
    "docs/",
    "..",
    "",
    "docs\\..\\..\\x",
    "a\0b",
    "a\nb",
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
async def test_read_file_refuses_a_path_that_leaves_the_repository(
    client: GitHubClient, github: FakeGitHub, path: str
) -> None:
    github.add_file("other-org/secrets", "README.md", b"token=hunter2\n")
    before = len(github.requests)
    with pytest.raises(UnsafePath):
        await client.read_file(REPO, path, HEAD)
    assert github.requests[before:] == []


async def test_read_file_quotes_each_part_of_the_path(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_file(REPO, "docs/a%2F..%2Fb?c.md", b"odd\n", ref=HEAD)
    assert await client.read_file(REPO, "docs/a%2F..%2Fb?c.md", HEAD) == b"odd\n"
    [sent] = github.requests_to("GET", rf"/repos/{REPO}/contents/.*")
    # Unquoted, the "?" would start the query and "%2F" would be read as "/".
    assert sent.path == f"/repos/{REPO}/contents/docs/a%2F..%2Fb?c.md"
    assert sent.query == {"ref": HEAD}


async def test_a_review_comment_on_an_unsafe_path_is_refused_before_any_request(
    client: GitHubClient, github: FakeGitHub
) -> None:
    before = len(github.requests)
    with pytest.raises(UnsafePath):
        await client.create_review(PULL, HEAD, [DiffComment("../x.py", 1, "hi")])
    assert github.requests[before:] == []


async def test_create_issue_posts_to_the_repository_s_issues(
    github: FakeGitHub, client: GitHubClient
) -> None:
    # https://docs.github.com/en/rest/issues/issues#create-an-issue
    opened = await client.create_issue(REPO, title="Triage 2026-12-04", body="Look at them.")
    record = only(github, "POST", f"/repos/{REPO}/issues")
    assert record.json == {"title": "Triage 2026-12-04", "body": "Look at them."}
    assert record.status == 201
    issue = github.repos[REPO].issues[opened.number]
    assert (issue.title, issue.body, issue.pull) == ("Triage 2026-12-04", "Look at them.", False)
    assert opened.url == f"https://github.com/{REPO}/issues/{opened.number}"


@pytest.mark.parametrize(
    ("base", "url", "url_vars"),
    [
        (
            "https://api.github.com",
            "/repos/{owner}/{repo}/issues/{n}/comments",
            {"owner": "o", "repo": "r", "n": 5},
        ),
        (
            "https://ghe.example/api/v3/",
            "/repos/{owner}/{repo}/git/ref/{+ref}",
            {"owner": "o", "repo": "r", "ref": "heads/feature/x y"},
        ),
        (
            "https://api.github.com",
            "/repos/{owner}/{repo}/contents/{path}",
            {"owner": "o", "repo": "r", "path": "a/b?c"},
        ),
        ("https://api.github.com", "https://uploads.example/x/{id}", {"id": 7}),
    ],
)
def test_urls_are_filled_as_gidgethub_fills_them(
    base: str, url: str, url_vars: dict[str, Any]
) -> None:
    from gidgethub import sansio

    from bot.hosts.github.transport import fill

    expected = sansio.format_url(url, url_vars, base_url=base)
    assert fill(base, url, url_vars) == expected
    assert fill(base, url, url_vars) == expected  # the parsed template, from the cache
    # What gidgethub then makes of the filled URL (no variables left): the same URL.
    assert sansio.format_url(expected, {}, base_url=base) == expected
