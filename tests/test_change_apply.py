"""Applying a change set through a host's API, without a clone: a new branch at a new
commit, then a pull/merge request from it.

GitHub (Git Data API) and GitLab (commits API with actions) run against the stateful
fakes over loopback HTTP; the playground against both real databases. Each host is
checked for: the files at the new commit (added, changed, deleted), the requests it
took and their order, a second call after a lost answer returning the same commit, a
branch that already holds something else refused with Conflict, opening the pull
request twice giving the same one, and an unknown base refused before any write.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Engine

from bot.events import ThreadRef
from bot.hosts.base import (
    Conflict,
    FileChange,
    HostClient,
    HostError,
    NotFound,
    Opened,
    branch_problem,
    change_problems,
    check_change_set,
)
from bot.hosts.github import GitHubApp, GitHubClient
from bot.hosts.gitlab import GitLabClient
from bot.hosts.local import LocalHost
from bot.hosts.local_seed import BASE_FILES, DEMO_REPO
from bot.hosts.local_store import PlaygroundError, PlaygroundStore
from bot.paths import UnsafePath
from tests.fakes.github import FakeGitHub, Recorded
from tests.fakes.gitlab import TOKEN, FakeGitLab, Project

REPO = "octo-org/hello-world"
INSTALLATION = 77
BRANCH = "threadline/12-s-7f3a"
MESSAGE = "Retry uploads on failure\n\nProposed in session s-7f3a."
BASE_FILES_BYTES = {
    "README.md": b"# hello\n",
    "src/retry.py": b"RETRIES = 3\n",
    "src/old.py": b"gone soon\n",
    "bin/run": b"#!/bin/sh\nexec python -m app\n",
}
CHANGES = [
    FileChange("docs/retry.md", b"# Retries\n\nThree, then five.\n"),  # added
    FileChange("src/retry.py", b"RETRIES = 5\n"),  # changed
    FileChange("src/old.py", None),  # deleted
    FileChange("bin/run", b"#!/bin/sh\nexec python -m app --retry\n"),  # changed, executable
]
AFTER = {
    "README.md": b"# hello\n",
    "docs/retry.md": b"# Retries\n\nThree, then five.\n",
    "src/retry.py": b"RETRIES = 5\n",
    "bin/run": b"#!/bin/sh\nexec python -m app --retry\n",
}


def as_host(client: HostClient) -> HostClient:
    return client  # mypy checks here that each adapter has the whole protocol


# ---------------------------------------------------------------- the change set checks


def test_change_problems_name_each_problem() -> None:
    assert change_problems(CHANGES) == []
    assert change_problems([]) == ["the change set is empty"]
    problems = change_problems(
        [
            FileChange("/etc/passwd", b""),
            FileChange("a/../b", b""),
            FileChange(".git/config", b""),
            FileChange("ok.txt", b""),
            FileChange("ok.txt", None),
            FileChange("tab\there", b""),
            FileChange("docs", b""),
            FileChange("docs/a.md", b""),
        ]
    )
    assert problems == [
        "'/etc/passwd' is not a plain relative file path (the path is absolute; give it "
        "relative to the repository's root)",
        "'a/../b' is not a plain relative file path (the path has a '..' part; name the file "
        "from the repository's root)",
        "'.git/config' is inside .git",
        "'ok.txt' is changed more than once",
        "'tab\\there' is not a plain relative file path (the path holds a control character)",
        "'docs/a.md' is inside 'docs', also a file",
    ]


@pytest.mark.parametrize(
    ("name", "fine"),
    [
        ("threadline/12-s-7f3a", True),
        ("fix-retries", True),
        ("", False),
        ("a..b", False),
        ("a b", False),
        ("ends/", False),
        ("x.lock", False),
        ("-flag", False),
        ("a/.hidden", False),
        ("a~1", False),
        ("a:b", False),
        ("a@{1}", False),
    ],
)
def test_branch_names_follow_git_rules(name: str, fine: bool) -> None:
    assert (branch_problem(name) is None) == fine


def test_a_bad_change_set_is_refused_with_every_reason() -> None:
    with pytest.raises(HostError) as caught:
        check_change_set("a b", [FileChange("../x", b"")])
    assert "'a b' holds a character" in str(caught.value)
    assert "'../x' is not a plain relative file path" in str(caught.value)


# ---------------------------------------------------------------- GitHub


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as gh:
        gh.install(INSTALLATION, [REPO])
        yield gh


@pytest.fixture
async def gh_client(github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with aiohttp.ClientSession() as session:
        app = GitHubApp(
            session,
            app_id=github.app_id,
            private_key=github.private_key_pem,
            api_url=github.url,
            graphql_url=github.graphql_url,
            timeout=5.0,
            clock=github.clock,
        )
        yield app.client(INSTALLATION)


def calls(gh: FakeGitHub) -> list[tuple[str, str]]:
    """The requests to the repository, by method and path below it."""
    prefix = f"/repos/{REPO}"
    return [(r.method, r.path[len(prefix) :]) for r in gh.requests if r.path.startswith(prefix)]


def writes(gh: FakeGitHub) -> list[Recorded]:
    return [r for r in gh.requests if r.method != "GET" and r.path.startswith("/repos/")]


async def test_github_commits_through_the_git_data_api_in_order(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES, executable=["bin/run"])
    client = as_host(gh_client)
    assert await client.default_branch(REPO) == ("main", base)
    github.requests.clear()

    sha = await client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )

    root = github.repos[REPO].git_commits[base]["tree"]
    tree_of = {e["path"]: e["sha"] for e in github.repos[REPO].trees[root]}
    assert calls(github) == [
        ("GET", f"/git/commits/{base}"),
        ("GET", f"/git/trees/{root}"),
        ("GET", f"/git/trees/{tree_of['src']}"),  # docs/ is new: nothing to read
        ("GET", f"/git/trees/{tree_of['bin']}"),
        ("POST", "/git/blobs"),
        ("POST", "/git/blobs"),
        ("POST", "/git/blobs"),
        ("POST", "/git/trees"),
        ("POST", "/git/commits"),
        ("POST", "/git/refs"),
    ]
    blobs = [r.json for r in github.requests_to("POST", rf"/repos/{REPO}/git/blobs")]
    assert [base64.b64decode(b["content"]) for b in blobs] == [
        c.content for c in CHANGES if c.content is not None
    ]
    assert {b["encoding"] for b in blobs} == {"base64"}
    [tree] = github.requests_to("POST", rf"/repos/{REPO}/git/trees")
    assert tree.json["base_tree"] == root
    entries = {e["path"]: e for e in tree.json["tree"]}
    assert entries["src/old.py"]["sha"] is None  # null removes it
    assert entries["bin/run"]["mode"] == "100755"  # stays executable
    assert entries["docs/retry.md"]["mode"] == "100644"
    [commit] = github.requests_to("POST", rf"/repos/{REPO}/git/commits")
    assert commit.json["parents"] == [base]
    assert commit.json["message"] == MESSAGE
    [ref] = github.requests_to("POST", rf"/repos/{REPO}/git/refs")
    assert ref.json == {"ref": f"refs/heads/{BRANCH}", "sha": sha}

    # The new commit holds the base with the changes; main has not moved.
    assert github.files_at(REPO, sha) == AFTER
    assert github.files_at(REPO, BRANCH) == AFTER
    assert github.files_at(REPO, "main") == BASE_FILES_BYTES
    assert github.modes_at(REPO, sha)["bin/run"] == "100755"
    assert github.repos[REPO].git_commits[sha]["parents"] == [base]
    assert await client.read_file(REPO, "src/retry.py", sha) == b"RETRIES = 5\n"
    assert await client.read_file(REPO, "docs/retry.md", BRANCH) == AFTER["docs/retry.md"]
    assert await client.read_file(REPO, "src/old.py", base) == b"gone soon\n"
    with pytest.raises(NotFound):
        await client.read_file(REPO, "src/old.py", sha)

    github.requests.clear()
    opened = await client.open_pull(
        REPO, head=BRANCH, base="main", title="Retry uploads", body="Fixes #12"
    )
    assert calls(github) == [("GET", "/pulls"), ("POST", "/pulls")]
    [listed] = github.requests_to("GET", rf"/repos/{REPO}/pulls")
    assert listed.query["head"] == f"octo-org:{BRANCH}"
    assert listed.query["state"] == "open"
    [made] = github.requests_to("POST", rf"/repos/{REPO}/pulls")
    assert made.json == {
        "title": "Retry uploads",
        "head": BRANCH,
        "base": "main",
        "body": "Fixes #12",
    }
    pull = github.repos[REPO].issues[opened.number]
    assert (pull.head_sha, pull.base_sha, pull.body) == (sha, base, "Fixes #12")
    assert opened == Opened(opened.number, f"{github.root}/{REPO}/pull/{opened.number}")
    assert {f["filename"]: f["status"] for f in pull.files} == {
        "bin/run": "modified",
        "docs/retry.md": "added",
        "src/old.py": "removed",
        "src/retry.py": "modified",
    }

    # Asked again, the same pull request, and nothing written.
    github.requests.clear()
    again = await client.open_pull(REPO, head=BRANCH, base="main", title="Other", body="")
    assert again == opened
    assert writes(github) == []


async def test_github_commit_again_returns_the_same_commit(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    first = await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    github.clock = lambda: time.time() + 90  # the retry's commit gets another date, so another sha
    github.requests.clear()
    second = await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    assert second == first
    assert github.repos[REPO].refs[f"refs/heads/{BRANCH}"] == first
    made = github.requests_to("POST", rf"/repos/{REPO}/git/commits")
    assert [m.status for m in made] == [201]  # a second commit object, left unnamed
    [ref] = github.requests_to("POST", rf"/repos/{REPO}/git/refs")
    assert ref.status == 422  # the branch was there: looked at, found alike
    assert calls(github)[-2:] == [
        ("GET", f"/git/ref/heads/{BRANCH}"),
        ("GET", f"/git/commits/{first}"),
    ]


async def test_github_a_lost_answer_to_the_branch_is_looked_up(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    github.lose_response("POST", rf"/repos/{REPO}/git/refs", "502")
    sha = await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    assert github.repos[REPO].refs[f"refs/heads/{BRANCH}"] == sha
    assert github.files_at(REPO, BRANCH) == AFTER
    assert calls(github)[-2:] == [("POST", "/git/refs"), ("GET", f"/git/ref/heads/{BRANCH}")]


async def test_github_a_branch_holding_something_else_is_a_conflict(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    other = github.add_commit(REPO, {"README.md": b"other\n"}, parents=[base], branch=BRANCH)
    with pytest.raises(Conflict, match=f"already has a branch {BRANCH}"):
        await gh_client.commit_files(
            REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
        )
    assert github.repos[REPO].refs[f"refs/heads/{BRANCH}"] == other

    # The same files on another base are another change, too.
    moved = github.add_commit(REPO, {**BASE_FILES_BYTES, "NEWS": b"1.1\n"}, parents=[base])
    await gh_client.commit_files(
        REPO, branch="threadline/two", base_sha=moved, changes=CHANGES, message=MESSAGE
    )
    with pytest.raises(Conflict):
        await gh_client.commit_files(
            REPO, branch="threadline/two", base_sha=base, changes=CHANGES, message=MESSAGE
        )


async def test_github_an_unknown_base_or_a_change_that_does_not_fit_writes_nothing(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    unknown = "0" * 40
    with pytest.raises(NotFound, match=f"has no commit {unknown} to build on"):
        await gh_client.commit_files(
            REPO, branch=BRANCH, base_sha=unknown, changes=CHANGES, message=MESSAGE
        )
    with pytest.raises(HostError, match=r"cannot delete nope\.txt"):
        await gh_client.commit_files(
            REPO, branch=BRANCH, base_sha=base, changes=[FileChange("nope.txt", None)], message="m"
        )
    with pytest.raises(HostError, match="src is a tree"):
        await gh_client.commit_files(
            REPO, branch=BRANCH, base_sha=base, changes=[FileChange("src", b"x")], message="m"
        )
    with pytest.raises(HostError, match=r"README\.md is a file"):
        await gh_client.commit_files(
            REPO,
            branch=BRANCH,
            base_sha=base,
            changes=[FileChange("README.md/x", b"")],
            message="m",
        )
    with pytest.raises(HostError, match="cannot be committed"):
        await gh_client.commit_files(
            REPO, branch="bad..name", base_sha=base, changes=CHANGES, message="m"
        )
    assert writes(github) == []
    assert f"refs/heads/{BRANCH}" not in github.repos[REPO].refs


async def test_github_a_lost_answer_to_the_pull_request_is_looked_up(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    github.lose_response("POST", rf"/repos/{REPO}/pulls", "502")
    opened = await gh_client.open_pull(REPO, head=BRANCH, base="main", title="T", body="B")
    assert [p.number for p in github.repos[REPO].issues.values()] == [opened.number]
    assert calls(github)[-2:] == [("POST", "/pulls"), ("GET", "/pulls")]
    # A branch with no commits of its own is refused by GitHub, and the refusal kept.
    github.repos[REPO].refs["refs/heads/empty"] = base
    with pytest.raises(HostError, match="422"):
        await gh_client.open_pull(REPO, head="empty", base="main", title="T", body="B")


# ---------------------------------------------------------------- GitLab

PROJECT = "group/sub/project"
PID = "group%2Fsub%2Fproject"


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        yield fake


@pytest.fixture
async def gl_client(gitlab: FakeGitLab) -> AsyncIterator[GitLabClient]:
    made = GitLabClient(gitlab.url, TOKEN, timeout=5)
    yield made
    made.close()


def seeded(gitlab: FakeGitLab) -> tuple[Project, str]:
    project = gitlab.add_project(PROJECT)
    return project, gitlab.add_commit(project, BASE_FILES_BYTES)


def gl_calls(gitlab: FakeGitLab) -> list[tuple[str, str]]:
    prefix = f"/projects/{PID}"
    return [(r.method, r.path[len(prefix) :]) for r in gitlab.requests]


async def test_gitlab_commits_with_create_update_and_delete_actions(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    client = as_host(gl_client)
    assert await client.default_branch(PROJECT) == ("main", base)
    gitlab.requests.clear()

    sha = await client.commit_files(
        PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )

    assert gl_calls(gitlab) == [
        ("GET", f"/repository/commits/{base}"),
        ("HEAD", "/repository/files/docs%2Fretry.md"),
        ("HEAD", "/repository/files/src%2Fretry.py"),
        ("HEAD", "/repository/files/src%2Fold.py"),
        ("HEAD", "/repository/files/bin%2Frun"),
        ("POST", "/repository/commits"),
    ]
    assert {r.query.get("ref") for r in gitlab.requests if r.method == "HEAD"} == {base}
    [posted] = [r.body for r in gitlab.requests if r.method == "POST"]
    assert {k: posted[k] for k in ("branch", "start_sha", "commit_message")} == {
        "branch": BRANCH,
        "start_sha": base,
        "commit_message": MESSAGE,
    }
    assert [(a["action"], a["file_path"]) for a in posted["actions"]] == [
        ("create", "docs/retry.md"),
        ("update", "src/retry.py"),
        ("delete", "src/old.py"),
        ("update", "bin/run"),
    ]
    assert base64.b64decode(posted["actions"][1]["content"]) == b"RETRIES = 5\n"
    assert {a.get("encoding") for a in posted["actions"] if a["action"] != "delete"} == {"base64"}

    assert gitlab.files_at(project, sha) == AFTER
    assert gitlab.files_at(project, BRANCH) == AFTER
    assert gitlab.files_at(project, "main") == BASE_FILES_BYTES
    assert project.parents[sha] == [base]
    assert await client.read_file(PROJECT, "src/retry.py", sha) == b"RETRIES = 5\n"
    assert await client.read_file(PROJECT, "docs/retry.md", BRANCH) == AFTER["docs/retry.md"]
    with pytest.raises(NotFound):
        await client.read_file(PROJECT, "src/old.py", sha)

    gitlab.requests.clear()
    opened = await client.open_pull(
        PROJECT, head=BRANCH, base="main", title="Retry uploads", body="Closes #12"
    )
    assert gl_calls(gitlab) == [("GET", "/merge_requests"), ("POST", "/merge_requests")]
    assert gitlab.requests[0].query["source_branch"] == BRANCH
    assert gitlab.requests[0].query["state"] == "opened"
    assert gitlab.requests[1].body == {
        "source_branch": BRANCH,
        "target_branch": "main",
        "title": "Retry uploads",
        "description": "Closes #12",
    }
    mr = project.merge_requests[opened.number]
    assert (mr.head_sha, mr.base_sha, mr.description) == (sha, base, "Closes #12")
    assert opened.url == f"http://gitlab.example/{PROJECT}/-/merge_requests/{opened.number}"

    gitlab.requests.clear()
    assert await client.open_pull(PROJECT, head=BRANCH, base="main", title="x", body="") == opened
    assert [r.method for r in gitlab.requests] == ["GET"]


async def test_gitlab_commit_again_returns_the_same_commit(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    first = await gl_client.commit_files(
        PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    gitlab.requests.clear()
    second = await gl_client.commit_files(
        PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    assert second == first
    assert project.branches[BRANCH] == first
    [refused] = [r for r in gitlab.requests if r.method == "POST"]
    assert refused.path.endswith("/repository/commits")
    assert ("GET", f"/repository/commits/{first}/diff") in gl_calls(gitlab)


async def test_gitlab_a_lost_answer_to_the_commit_is_looked_up(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    gitlab.lose_response("POST", r"/repository/commits$")
    sha = await gl_client.commit_files(
        PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    assert project.branches[BRANCH] == sha
    assert gitlab.files_at(project, sha) == AFTER
    assert [c for c in gl_calls(gitlab) if c[0] == "POST"] == [("POST", "/repository/commits")]
    assert ("GET", f"/repository/branches/{BRANCH.replace('/', '%2F')}") in gl_calls(gitlab)


async def test_gitlab_a_branch_holding_something_else_is_a_conflict(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    # Alike but for one more file: still another change.
    other = gitlab.add_commit(project, {**AFTER, "extra.txt": b"!"}, parents=[base], branch=BRANCH)
    with pytest.raises(Conflict, match=f"already has a branch {BRANCH}"):
        await gl_client.commit_files(
            PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
        )
    assert project.branches[BRANCH] == other


async def test_gitlab_an_unknown_base_or_a_change_that_does_not_fit_writes_nothing(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    _, base = seeded(gitlab)
    unknown = "0" * 40
    with pytest.raises(NotFound, match=f"has no commit {unknown} to build on"):
        await gl_client.commit_files(
            PROJECT, branch=BRANCH, base_sha=unknown, changes=CHANGES, message=MESSAGE
        )
    with pytest.raises(HostError, match=r"cannot delete nope\.txt"):
        await gl_client.commit_files(
            PROJECT,
            branch=BRANCH,
            base_sha=base,
            changes=[FileChange("nope.txt", None)],
            message="m",
        )
    assert [r for r in gitlab.requests if r.method == "POST"] == []


async def test_gitlab_a_lost_answer_to_the_merge_request_is_looked_up(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    await gl_client.commit_files(
        PROJECT, branch=BRANCH, base_sha=base, changes=CHANGES, message=MESSAGE
    )
    gitlab.lose_response("POST", r"/merge_requests$")
    opened = await gl_client.open_pull(PROJECT, head=BRANCH, base="main", title="T", body="B")
    assert list(project.merge_requests) == [opened.number]
    assert gl_calls(gitlab)[-2:] == [("POST", "/merge_requests"), ("GET", "/merge_requests")]
    with pytest.raises(HostError, match="400"):  # no such branch
        await gl_client.open_pull(PROJECT, head="nope", base="main", title="T", body="B")


async def test_the_fake_gitlab_refuses_actions_as_gitlab_does(gitlab: FakeGitLab) -> None:
    """Create on a file that is there, update or delete on one that is not: 400, and the
    branch is not made (so the adapter's choice above is a real one)."""
    project, base = seeded(gitlab)
    url = f"{gitlab.url}/api/v4/projects/{PID}/repository/commits"
    wrong = [
        ({"action": "create", "file_path": "README.md", "content": "x"}, "already exists"),
        ({"action": "update", "file_path": "nope.md", "content": "x"}, "doesn't exist"),
        ({"action": "delete", "file_path": "nope.md"}, "doesn't exist"),
    ]
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": TOKEN}) as http:
        for action, words in wrong:
            body = {"branch": BRANCH, "start_sha": base, "commit_message": "m", "actions": [action]}
            async with http.post(url, json=body) as answer:
                assert answer.status == 400
                assert words in (await answer.json())["message"]
    assert BRANCH not in project.branches


# ---------------------------------------------------------------- the playground

BOT = "threadline"
TEXT_CHANGES = [
    FileChange("docs/retry.md", b"# Retries\n"),
    FileChange("src/uploader.py", BASE_FILES["src/uploader.py"].encode() + b"# retried\n"),
    FileChange("README.md", None),
]


@pytest.fixture
def local(engine: Engine) -> LocalHost:
    store = PlaygroundStore(engine)
    store.prepare(BOT)
    return LocalHost(store, BOT)


async def test_playground_commits_on_a_branch_and_opens_a_pull_request(local: LocalHost) -> None:
    client = as_host(local)
    name, base = await client.default_branch(DEMO_REPO)
    assert name == "main"
    assert await client.read_file(DEMO_REPO, "README.md", base) == BASE_FILES["README.md"].encode()

    sha = await client.commit_files(
        DEMO_REPO, branch=BRANCH, base_sha=base, changes=TEXT_CHANGES, message=MESSAGE
    )
    for ref in (sha, BRANCH):
        assert await client.read_file(DEMO_REPO, "docs/retry.md", ref) == b"# Retries\n"
        assert await client.read_file(DEMO_REPO, "src/uploader.py", ref) == TEXT_CHANGES[1].content
        with pytest.raises(NotFound):
            await client.read_file(DEMO_REPO, "README.md", ref)
    assert await client.read_file(DEMO_REPO, "README.md") == BASE_FILES["README.md"].encode()
    assert await client.default_branch(DEMO_REPO) == ("main", base)  # main stays

    # Again (a retry): the same commit; another change on that branch: a conflict.
    again = await client.commit_files(
        DEMO_REPO, branch=BRANCH, base_sha=base, changes=TEXT_CHANGES, message=MESSAGE
    )
    assert again == sha
    with pytest.raises(Conflict):
        await client.commit_files(
            DEMO_REPO, branch=BRANCH, base_sha=base, changes=TEXT_CHANGES[:1], message=MESSAGE
        )
    with pytest.raises(Conflict):  # the seeded pull request's branch
        await client.commit_files(
            DEMO_REPO, branch="retry-uploads", base_sha=base, changes=TEXT_CHANGES, message="m"
        )

    opened = await client.open_pull(
        DEMO_REPO, head=BRANCH, base="main", title="Retry uploads", body="Fixes #1"
    )
    assert opened == Opened(2, "/playground?pr=2")  # #1 is the seeded one
    assert await client.open_pull(DEMO_REPO, head=BRANCH, base="main", title="x", body="") == opened
    pull = ThreadRef("local", DEMO_REPO, "pull", opened.number)
    info = await client.pull_info(pull)
    assert (info.head_sha, info.base_sha, info.title) == (sha, base, "Retry uploads")
    changed = {f.path: f.status for f in await client.changed_files(pull)}
    assert changed == {
        "README.md": "removed",
        "docs/retry.md": "added",
        "src/uploader.py": "modified",
    }
    assert "+# retried" in await client.pull_diff(pull)


async def test_playground_refuses_what_it_cannot_apply(local: LocalHost) -> None:
    _, base = await local.default_branch(DEMO_REPO)
    unknown = "0" * 40
    with pytest.raises(NotFound, match=f"has no commit {unknown} to build on"):
        await local.commit_files(
            DEMO_REPO, branch=BRANCH, base_sha=unknown, changes=TEXT_CHANGES, message="m"
        )
    with pytest.raises(HostError, match=r"cannot delete nope\.txt"):
        await local.commit_files(
            DEMO_REPO,
            branch=BRANCH,
            base_sha=base,
            changes=[FileChange("nope.txt", None)],
            message="m",
        )
    with pytest.raises(HostError, match="text files only"):
        await local.commit_files(
            DEMO_REPO,
            branch=BRANCH,
            base_sha=base,
            changes=[FileChange("a.bin", b"\xff")],
            message="m",
        )
    with pytest.raises(HostError, match="no branch nope"):
        await local.open_pull(DEMO_REPO, head="nope", base="main", title="T", body="")
    with pytest.raises(NotFound):
        await local.default_branch("playground/none")
    with pytest.raises(NotFound):
        await local.read_file(DEMO_REPO, "README.md", BRANCH)  # no such branch was made


@pytest.mark.parametrize("path", ["../README.md", "/README.md", "docs/./retry.md", "a\\b"])
async def test_playground_refuses_paths_outside_the_repository(local: LocalHost, path: str) -> None:
    _, base = await local.default_branch(DEMO_REPO)
    with pytest.raises(UnsafePath):
        await local.read_file(DEMO_REPO, path, base)
    with pytest.raises(UnsafePath):
        local.store.read_file(DEMO_REPO, path, base)
    with pytest.raises(HostError, match="not a plain relative file path"):
        await local.commit_files(
            DEMO_REPO, branch=BRANCH, base_sha=base, changes=[FileChange(path, b"x")], message="m"
        )
    with pytest.raises(PlaygroundError, match="not a plain relative file path"):
        local.store.commit_files(
            DEMO_REPO, branch=BRANCH, base_sha=base, changes=[(path, "x")], message="m", author=BOT
        )


def test_playground_store_commits_and_opens(engine: Engine) -> None:
    """The store's own calls, as the adapter makes them (blocking, text contents)."""
    store = PlaygroundStore(engine)
    store.prepare(BOT)
    name, base = store.default_branch(DEMO_REPO)
    sha = store.commit_files(
        DEMO_REPO,
        branch=BRANCH,
        base_sha=base,
        changes=[("docs/x.md", "x\n")],
        message="m",
        author=BOT,
    )
    pull = store.open_pull(DEMO_REPO, head=BRANCH, base=name, title="T", body="B", author=BOT)
    values: dict[str, Any] = {"head": pull.head_sha, "base": pull.base_sha, "author": pull.author}
    assert values == {"head": sha, "base": base, "author": BOT}
    assert store.read_file(DEMO_REPO, "docs/x.md", BRANCH) == "x\n"
