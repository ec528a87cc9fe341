"""Git access from the settings: the clone URL on the configured host, the App's token
as the header, fetched from the fake GitHub's own git endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Engine

from bot.config import Settings
from bot.hosts import Hosts
from bot.hosts.github import _from_fork as github_from_fork
from bot.hosts.gitlab import _from_fork as gitlab_from_fork
from bot.hosts.local_git import GitExport, basic_header
from bot.hosts.local_seed import DEMO_REPO, HEAD_FILES
from bot.hosts.local_store import PlaygroundStore
from bot.workspaces.access import git_access, github_web_url, own_url, playground_access
from bot.workspaces.store import WorkspaceError, WorkspaceStore
from tests.conftest import with_settings
from tests.fakes.git_http import git, make_repo
from tests.fakes.github import FakeGitHub

REPO = "octo-org/hello-world"


@pytest.mark.parametrize(
    ("api_url", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_where_github_serves_git(api_url: str, web: str) -> None:
    assert github_web_url(api_url) == web


async def test_a_mirror_is_fetched_from_the_host_with_the_installation_token(
    tmp_path: Path,
) -> None:
    async with FakeGitHub() as gh, aiohttp.ClientSession() as http:
        gh.install(4242, [REPO])
        gh.install(5000, ["someone/else"])
        make_repo(tmp_path / "git" / "octo-org", "hello-world", {"README.md": "hi\n"})
        gh.git_root = tmp_path / "git"
        settings = with_settings(
            Settings(),
            github_app_id=gh.app_id,
            github_private_key=gh.private_key_pem,
            github_api_url=gh.url,
            github_graphql_url=gh.graphql_url,
        )
        hosts = Hosts.from_settings(settings, http)
        store = WorkspaceStore(tmp_path / "ws")
        access = await git_access(settings, hosts, "github", REPO, 4242)
        assert access.clone_url == f"{gh.root}/{REPO}.git"
        mirror = await store.fetch("github", REPO, access.clone_url, access.credential)
        assert len(await store.default_head(mirror, "main")) == 40
        assert all(header and header.startswith("Basic ") for header in gh.git_auth)
        # Another installation's token does not open this repository.
        other = await git_access(settings, hosts, "github", REPO, 5000)
        with pytest.raises(WorkspaceError, match="fetch failed"):
            await store.fetch("github", REPO, other.clone_url, other.credential)
        with pytest.raises(WorkspaceError, match="no git access"):
            await git_access(settings, hosts, "gitlab", "grp/x", None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"head": {"repo": {"full_name": "a/b"}}, "base": {"repo": {"full_name": "a/b"}}}, False),
        ({"head": {"repo": {"full_name": "x/b"}}, "base": {"repo": {"full_name": "a/b"}}}, True),
        ({"head": {"repo": None}, "base": {"repo": {"full_name": "a/b"}}}, True),  # fork deleted
        ({"head": {"sha": "1"}, "base": {"sha": "2"}}, None),
    ],
)
def test_github_says_whether_a_head_is_a_forks(
    payload: dict[str, Any], expected: bool | None
) -> None:
    assert github_from_fork(payload) is expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"source_project_id": 5, "target_project_id": 5}, False),
        ({"source_project_id": 9, "target_project_id": 5}, True),
        ({}, None),
    ],
)
def test_gitlab_says_whether_a_source_is_a_fork(
    payload: dict[str, Any], expected: bool | None
) -> None:
    assert gitlab_from_fork(payload) is expected


@pytest.mark.parametrize(
    ("changes", "url"),
    [
        ({"host": "0.0.0.0", "port": 8000}, "http://127.0.0.1:8000"),  # noqa: S104
        ({"host": "::1", "port": 8000}, "http://[::1]:8000"),
        ({"public_url": "https://bot.example.com/"}, "https://bot.example.com"),
    ],
)
def test_where_this_server_is_reached(
    settings: Settings, changes: dict[str, Any], url: str
) -> None:
    assert own_url(with_settings(settings, **changes)) == url


async def test_the_playground_is_fetched_from_this_server_with_its_derived_password(
    settings: Settings, engine: Engine
) -> None:
    store = PlaygroundStore(engine)
    configured = with_settings(settings, playground=True, host="127.0.0.1", port=8000)
    with pytest.raises(WorkspaceError, match="no secret yet"):
        await playground_access(configured, store, DEMO_REPO)
    secret = store.prepare("threadline")
    access = await playground_access(configured, store, DEMO_REPO)
    assert access.clone_url == "http://127.0.0.1:8000/git/playground/demo.git"
    assert access.credential is not None
    assert access.credential.host_origin == "http://127.0.0.1:8000"
    assert access.credential.header == f"Authorization: {basic_header(secret)}"
    assert secret not in access.credential.header  # only a password derived from it travels
    given = with_settings(configured, playground_secret="configured-secret")
    found = await playground_access(given, store, DEMO_REPO)
    assert found.credential is not None
    assert found.credential.header == f"Authorization: {basic_header('configured-secret')}"


def test_the_playground_export_is_a_valid_repository_with_the_database_s_ids(
    engine: Engine, tmp_path: Path
) -> None:
    store = PlaygroundStore(engine)
    store.prepare("threadline")
    _, main = store.default_branch(DEMO_REPO)
    head = store.pull(DEMO_REPO, 1)
    assert head is not None
    export = GitExport(store, tmp_path)
    bare = export.sync(DEMO_REPO)
    assert export.sync(DEMO_REPO) == bare  # again: nothing to write, the same refs

    def run(*args: str) -> str:
        return git(bare, *args)

    run("fsck", "--strict", "--no-dangling")
    assert run("rev-parse", "refs/heads/main").strip() == main
    assert run("rev-parse", "refs/pull/1/head").strip() == head.head_sha
    assert run("rev-parse", f"{head.head_sha}^").strip() == main
    assert run("show", f"{head.head_sha}:README.md") == HEAD_FILES["README.md"]
    listed = run("ls-tree", "-r", "--name-only", head.head_sha).split()
    assert sorted(listed) == sorted(HEAD_FILES)
