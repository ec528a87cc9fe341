"""Mirrors and worktrees with real git repositories served over loopback HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.workspaces.git import Credential, git_env
from bot.workspaces.store import WorkspaceError, WorkspaceStore
from tests.fakes.git_http import basic, git, make_repo, serve_git

TOKEN = "ghs_test-installation-token-0123456789"
FILES = {"README.md": "hello\n", "src/app.py": "print('hi')\n"}


def _grep_tree(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_mirror_is_fetched_with_the_token_as_a_header_and_keeps_no_trace_of_it(
    tmp_path: Path,
) -> None:
    make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws")
        credential = Credential.github(server.url, TOKEN)
        mirror = await store.fetch(
            "github", "acme/widgets", f"{server.url}/acme/widgets.git", credential
        )
    assert basic("x-access-token", TOKEN) in server.seen
    head = await store.default_head(mirror, "main")
    assert len(head) == 40
    # Not in the mirror's config, its refs or anything else git wrote.
    assert _grep_tree(tmp_path / "ws", TOKEN.encode()) == []
    assert _grep_tree(tmp_path / "ws", basic("x-access-token", TOKEN).split()[1].encode()) == []
    assert "url" not in (mirror / "config").read_text()


async def test_a_wrong_token_fails_with_a_message_that_does_not_show_it(tmp_path: Path) -> None:
    make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws")
        wrong = "ghs_wrong-token-9876543210"
        with pytest.raises(WorkspaceError) as caught:
            await store.fetch(
                "github",
                "acme/widgets",
                f"{server.url}/acme/widgets.git",
                Credential.github(server.url, wrong),
            )
    assert "fetch failed" in str(caught.value)
    assert wrong not in str(caught.value)


async def test_the_token_never_goes_to_another_origin(tmp_path: Path) -> None:
    make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws")
        # The configured host is elsewhere: the clone URL on this server is refused.
        credential = Credential.github("https://github.example.com", TOKEN)
        with pytest.raises(WorkspaceError, match="refusing to send"):
            await store.fetch(
                "github", "acme/widgets", f"{server.url}/acme/widgets.git", credential
            )
    assert server.seen == []


def test_the_header_is_scoped_to_the_hosts_origin_and_only_in_the_environment() -> None:
    credential = Credential.gitlab("https://gitlab.example.com/", "glpat-secret")
    env = git_env(Path("/nonexistent"), credential)
    keys = [env[f"GIT_CONFIG_KEY_{n}"] for n in range(int(env["GIT_CONFIG_COUNT"]))]
    assert "http.https://gitlab.example.com/.extraHeader" in keys
    assert env["GIT_CONFIG_VALUE_" + str(keys.index(keys[-1]))] == (
        "Authorization: " + basic("oauth2", "glpat-secret")
    )
    assert "glpat-secret" not in repr(credential)
    assert not any(k.startswith("THREADLINE_") for k in env)


@pytest.mark.parametrize(
    ("host", "ref"), [("github", "refs/pull/7/head"), ("gitlab", "refs/merge-requests/7/head")]
)
async def test_a_fork_pull_request_head_is_fetched_by_the_hosts_ref(
    tmp_path: Path, host: str, ref: str
) -> None:
    bare = make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    work = tmp_path / "served" / "acme" / "widgets-work"
    (work / "fork.txt").write_text("from a fork\n")
    git(work, "add", "fork.txt")
    git(work, "commit", "--quiet", "-m", "fork change")
    fork_sha = git(work, "rev-parse", "HEAD").strip()
    git(work, "push", "--quiet", str(bare), f"HEAD:{ref}")
    async with serve_git(tmp_path / "served", basic("oauth2", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws")
        mirror = await store.fetch(
            host,
            "acme/widgets",
            f"{server.url}/acme/widgets.git",
            Credential.basic(server.url, "oauth2", TOKEN),
            pulls=[7],
        )
    assert await store.resolve(mirror, ref) == fork_sha
    tree = await store.add_worktree("s-fork", mirror, fork_sha, "threadline/s-fork")
    assert (tree.path / "fork.txt").read_text() == "from a fork\n"


async def test_worktree_diff_remove_and_orphans(tmp_path: Path) -> None:
    make_repo(tmp_path / "served" / "acme", "widgets", FILES)
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws")
        mirror = await store.fetch(
            "github",
            "acme/widgets",
            f"{server.url}/acme/widgets.git",
            Credential.github(server.url, TOKEN),
        )
    head = await store.default_head(mirror, "main")
    one = await store.add_worktree("s-1", mirror, head, "threadline/s-1")
    two = await store.add_worktree("s-2", mirror, head, "threadline/s-2")
    assert one.branch == "threadline/s-1"
    (one.path / "new.txt").write_text("new\n")
    (one.path / "README.md").write_text("changed\n")
    (one.path / "src" / "app.py").unlink()
    diff = await store.diff(one)
    assert "+++ b/new.txt" in diff
    assert "-hello" in diff
    assert "deleted file mode" in diff
    assert await store.diff(two) == ""
    await store.remove_worktree("s-1")
    assert not one.path.exists()
    removed = await store.clean_orphans(lambda session_id: session_id == "s-2")
    assert removed == []
    removed = await store.clean_orphans(lambda session_id: False)
    assert removed == ["s-2"]
    assert not two.path.exists()
    assert "s-2" not in git(mirror, "worktree", "list")


async def test_a_repository_over_the_quota_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    make_repo(tmp_path / "served" / "acme", "big", {"blob.bin": "x" * 3_000_000})
    async with serve_git(tmp_path / "served", basic("x-access-token", TOKEN)) as server:
        store = WorkspaceStore(tmp_path / "ws", quota_bytes=10_000)
        with pytest.raises(WorkspaceError, match=r"acme/big takes .* over the workspace quota"):
            await store.fetch(
                "github",
                "acme/big",
                f"{server.url}/acme/big.git",
                Credential.github(server.url, TOKEN),
            )
    full = WorkspaceStore(tmp_path / "ws", dir_quota_bytes=10_000)
    with pytest.raises(WorkspaceError, match="over its quota"):
        await full.add_worktree("s-3", tmp_path / "ws", "0" * 40, "b")


def test_names_that_could_climb_out_are_refused(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path)
    for repo in ("../x", "a/../../b", "a//b", ""):
        with pytest.raises(WorkspaceError):
            store.mirror_path("github", repo)
    with pytest.raises(WorkspaceError):
        store.tree_path("../s")
