"""A change pushed onto a branch the bot opened a pull/merge request from (a later
approval in the same line of work), and file modes in a change set, per host: GitHub
and GitLab against their stateful fakes over loopback, the playground on both
databases. The branch must be where the bot left it; a symlink GitLab cannot write and
a mode the playground cannot keep are refused before anything is written."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine

from bot.events import ThreadRef
from bot.hosts.base import EXECUTABLE, SYMLINK, Conflict, FileChange, HostError
from bot.hosts.github import GitHubClient
from bot.hosts.gitlab import GitLabClient
from bot.hosts.local import LocalHost
from bot.hosts.local_seed import DEMO_REPO
from bot.sessions.approvals import APPLIED, ChangeSetInfo, FileContent
from bot.sessions.changes import apply_change_set
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab
from tests.test_change_apply import (
    BASE_FILES_BYTES,
    BRANCH,
    PID,
    REPO,
    gh_client,
    github,
    gitlab,
    gl_client,
    local,
    seeded,
    writes,
)

__all__ = ["gh_client", "github", "gitlab", "gl_client", "local"]  # fixtures, used by name

FIRST = [
    FileChange("src/retry.py", b"RETRIES = 5\n"),
    FileChange("tool.sh", b"#!/bin/sh\n", EXECUTABLE),
]
SECOND = [FileChange("src/retry.py", b"RETRIES = 7\n")]


async def test_github_pushes_a_second_commit_onto_the_branch(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES, executable=["bin/run"])
    first = await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=base, changes=FIRST, message="one"
    )
    assert github.modes_at(REPO, BRANCH)["tool.sh"] == "100755"
    second = await gh_client.commit_files(
        REPO, branch=BRANCH, base_sha=first, changes=SECOND, message="two", existing=True
    )
    found = github.add_repo(REPO)
    assert found.refs["refs/heads/" + BRANCH] == second
    assert found.git_commits[second]["parents"] == [first]
    assert github.files_at(REPO, BRANCH)["src/retry.py"] == b"RETRIES = 7\n"  # type: ignore[index]
    assert github.modes_at(REPO, BRANCH)["tool.sh"] == "100755"  # kept
    [update] = [r for r in writes(github) if r.method == "PATCH"]
    assert update.path == f"/repos/{REPO}/git/refs/heads/{BRANCH}"
    assert update.json == {"sha": second, "force": False}
    # Someone pushed meanwhile (the branch is not at the base given): nothing is written.
    before = len(writes(github))
    with pytest.raises(Conflict, match="moved to"):
        await gh_client.commit_files(
            REPO, branch=BRANCH, base_sha=first, changes=SECOND, message="three", existing=True
        )
    assert len(writes(github)) == before


async def test_github_writes_a_symlink_as_a_blob_of_its_target(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    base = github.add_commit(REPO, BASE_FILES_BYTES)
    link = FileChange("latest", b"src/retry.py", SYMLINK)
    await gh_client.commit_files(REPO, branch=BRANCH, base_sha=base, changes=[link], message="l")
    assert github.modes_at(REPO, BRANCH)["latest"] == "120000"
    assert github.files_at(REPO, BRANCH)["latest"] == b"src/retry.py"  # type: ignore[index]


async def test_gitlab_pushes_onto_the_branch_and_keeps_modes(
    gitlab: FakeGitLab, gl_client: GitLabClient
) -> None:
    project, base = seeded(gitlab)
    first = await gl_client.commit_files(
        "group/sub/project", branch=BRANCH, base_sha=base, changes=FIRST, message="one"
    )
    [made] = gitlab.calls("POST", f"/projects/{PID}/repository/commits")
    assert {"action": "chmod", "file_path": "tool.sh", "execute_filemode": True} in made.body[
        "actions"
    ]
    assert gitlab.modes_at(project, BRANCH)["tool.sh"] == "100755"
    second = await gl_client.commit_files(
        "group/sub/project",
        branch=BRANCH,
        base_sha=first,
        changes=SECOND,
        message="two",
        existing=True,
    )
    pushed = gitlab.calls("POST", f"/projects/{PID}/repository/commits")[-1]
    assert pushed.body["branch"] == BRANCH
    assert "start_sha" not in pushed.body
    assert [a["action"] for a in pushed.body["actions"]] == ["update"]  # no mode: no chmod
    assert project.branches[BRANCH] == second
    assert project.parents[second] == [first]
    assert gitlab.modes_at(project, BRANCH)["tool.sh"] == "100755"
    posts = len(gitlab.calls("POST"))
    with pytest.raises(Conflict, match="moved to"):
        await gl_client.commit_files(
            "group/sub/project",
            branch=BRANCH,
            base_sha=first,
            changes=SECOND,
            message="three",
            existing=True,
        )
    link = FileChange("latest", b"src/retry.py", SYMLINK)
    with pytest.raises(HostError, match="cannot write symbolic links"):
        await gl_client.commit_files(
            "group/sub/project", branch="other", base_sha=base, changes=[link], message="l"
        )
    assert len(gitlab.calls("POST")) == posts  # refused before any write


async def test_playground_pushes_onto_the_branch_and_its_pull_request_shows_it(
    local: LocalHost,
) -> None:
    _, base = await local.default_branch(DEMO_REPO)
    text = [FileChange("docs/retry.md", b"# Retries\n")]
    first = await local.commit_files(
        DEMO_REPO, branch=BRANCH, base_sha=base, changes=text, message="one"
    )
    opened = await local.open_pull(DEMO_REPO, head=BRANCH, base="main", title="t", body="")
    more = [FileChange("docs/retry.md", b"# Retries\n\nFive of them.\n")]
    second = await local.commit_files(
        DEMO_REPO, branch=BRANCH, base_sha=first, changes=more, message="two", existing=True
    )
    pull = ThreadRef("local", DEMO_REPO, "pull", opened.number)
    info = await local.pull_info(pull)
    assert info.head_sha == second
    assert "+Five of them." in await local.pull_diff(pull)
    assert (
        await local.commit_files(  # a retry after a lost answer: done already
            DEMO_REPO, branch=BRANCH, base_sha=first, changes=more, message="two", existing=True
        )
        == second
    )
    with pytest.raises(Conflict):
        await local.commit_files(
            DEMO_REPO, branch=BRANCH, base_sha=first, changes=text, message="x", existing=True
        )
    with pytest.raises(HostError, match="plain files only"):
        await local.commit_files(
            DEMO_REPO,
            branch="other",
            base_sha=base,
            changes=[FileChange("run.sh", b"#!/bin/sh\n", EXECUTABLE)],
            message="x",
        )


def change_set(number: int, content: str, base: str) -> ChangeSetInfo:
    return ChangeSetInfo(
        id=number,
        session_id="s-7f3a",
        title=f"change {number}",
        description="",
        files=(FileContent("docs/retry.md", content),),
        base_branch="main",
        base_sha=base,
        status="proposed",
        branch=None,
        commit_sha=None,
        pull_number=None,
        pull_url=None,
        error=None,
    )


async def test_a_later_approval_pushes_to_the_pull_request_the_first_one_opened(
    local: LocalHost, engine: Engine
) -> None:
    _, base = await local.default_branch(DEMO_REPO)
    issue = ThreadRef("local", DEMO_REPO, "issue", 1)
    first = await apply_change_set(
        local, change_set(1, "# one\n", base), issue, agent="fixer", approver="maintainer"
    )
    assert (first.status, first.pushed) == (APPLIED, False)
    earlier = replace(
        change_set(1, "# one\n", base),
        status=APPLIED,
        branch=first.branch,
        commit_sha=first.commit_sha,
        pull_number=first.pull_number,
        pull_url=first.pull_url,
    )
    second = await apply_change_set(
        local,
        change_set(2, "# two\n", base),
        issue,
        agent="fixer",
        approver="maintainer",
        earlier=earlier,
    )
    assert (second.status, second.pushed) == (APPLIED, True)
    assert (second.branch, second.pull_number) == (first.branch, first.pull_number)
    assert second.commit_sha != first.commit_sha
    pull = ThreadRef("local", DEMO_REPO, "pull", first.pull_number or 0)
    assert (await local.pull_info(pull)).head_sha == second.commit_sha
    assert await local.read_file(DEMO_REPO, "docs/retry.md", first.branch) == b"# two\n"


async def test_a_later_push_takes_files_back_to_the_base_with_their_modes(
    github: FakeGitHub, gh_client: GitHubClient
) -> None:
    """The first approval changed an executable's text, made a plain file executable,
    deleted one and added one; the worktree then took all four back. The second push
    leaves the branch as the base plus its own change only, modes included."""
    base = github.add_commit(REPO, BASE_FILES_BYTES, executable=["bin/run"])
    issue = ThreadRef("github", REPO, "issue", 5)
    github.add_issue(REPO, 5)
    files = (
        FileContent("bin/run", "#!/bin/sh\nexit 1\n", mode=EXECUTABLE, base_mode=EXECUTABLE),
        FileContent("src/retry.py", "RETRIES = 3\n", mode=EXECUTABLE),
        FileContent("src/old.py", None),
        FileContent("new.txt", "new\n", base_mode="000000"),
    )
    opened = replace(change_set(1, "", base), files=files)
    first = await apply_change_set(gh_client, opened, issue, agent="fixer", approver="m")
    assert first.status == APPLIED
    assert first.branch is not None
    assert github.modes_at(REPO, first.branch)["src/retry.py"] == EXECUTABLE
    earlier = replace(
        opened,
        status=APPLIED,
        branch=first.branch,
        commit_sha=first.commit_sha,
        pull_number=first.pull_number,
        pull_url=first.pull_url,
    )
    later = replace(change_set(2, "", base), files=(FileContent("README.md", "# hi\n"),))
    second = await apply_change_set(
        gh_client, later, issue, agent="fixer", approver="m", earlier=earlier
    )
    assert (second.status, second.pushed) == (APPLIED, True)
    assert github.files_at(REPO, first.branch) == {**BASE_FILES_BYTES, "README.md": b"# hi\n"}
    modes = github.modes_at(REPO, first.branch)
    assert (modes["bin/run"], modes["src/retry.py"]) == (EXECUTABLE, "100644")
