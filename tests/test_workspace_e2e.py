"""Workspaces end to end on GitHub, GitLab and the playground, over real git and real
HTTP on loopback.

Each fake host serves its repository through `git http-backend` with the token header,
and the playground serves its own from Threadline's web server (/git);
a script agent writes code and a test, runs `python3 -m pytest` in the sandbox (it
fails), fixes the code (it passes), adds a binary file, an executable and (GitHub) a
symbolic link, and proposes the worktree's diff. `/approve` opens the pull/merge request
with exactly those bytes and modes. A later request in the same session is proposed
and approved again: it is pushed to the same pull/merge request as a new commit, and
the branch ends as the worktree is (a file taken back to the base is back there too).
The playground keeps plain text files only: its agent adds no binary file, executable
or link.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.diffs import unified_diff
from bot.hosts.local_git import basic_header
from bot.hosts.local_seed import BASE_FILES, DEMO_REPO, HEAD_FILES
from bot.hosts.local_store import PlaygroundStore
from tests import payloads as p
from tests.conftest import Running, needs_bwrap, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab, Project
from tests.procs import free_port
from tests.test_playground import Rig, playground_settings
from tests.test_sessions import REPO, GitHubRig, eventually, github_settings, strip


# The sandbox mounts system directories only, never the venv: `python3 -m pytest` in it
# needs the system Python's pytest (Debian's python3-pytest; .ci/run installs it).
def _system_pytest() -> bool:
    try:
        found = subprocess.run(["/usr/bin/python3", "-c", "import pytest"], capture_output=True)
    except OSError:
        return False
    return found.returncode == 0


SYSTEM_PYTEST_MISSING = not _system_pytest() and not os.environ.get("CI")
pytestmark = [
    needs_bwrap,
    pytest.mark.skipif(SYSTEM_PYTEST_MISSING, reason="the system python3 has no pytest"),
]

CALC_BAD = "def add(a, b):\n    return a - b\n"
CALC_GOOD = "def add(a, b):\n    return a + b\n"
DOUBLE = "\n\ndef double(a):\n    return add(a, a)\n"
CALC_MORE = CALC_GOOD + DOUBLE
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
BLOB = bytes(range(256))  # not text in any encoding: a NUL byte, and invalid UTF-8
SCRIPT = "#!/bin/sh\necho built\n"
README_CHANGED = "hello\nworld\n"
PYTEST = ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"]


def call(tool: str, **args: object) -> dict[str, object]:
    return {"call": {"tool": tool, "args": args}}


def agents(link: bool, binary: bool = True, readme: str = "hello\n") -> str:
    """The agent's configuration, as JSON (which YAML reads as it is). `binary`: the
    change also holds a binary file and an executable (the playground keeps neither);
    `readme`: README.md at the base."""
    first = [
        call("write_file", path="README.md", content=README_CHANGED),
        call("write_file", path="calc.py", content=CALC_BAD),
        call("write_file", path="test_calc.py", content=TEST),
        call("run_command", command=PYTEST),
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("run_command", command=" ".join(PYTEST)),
        *(
            [
                call(
                    "run_command",
                    command=["python3", "-c", "open('data.bin', 'wb').write(bytes(range(256)))"],
                ),
                call("write_file", path="build.sh", content=SCRIPT),
                call("run_command", command=["chmod", "+x", "build.sh"]),
            ]
            if binary
            else []
        ),
        *([call("run_command", command=["ln", "-s", "calc.py", "link.py"])] if link else []),
        call("propose_change", title="Make add add"),
    ]
    # The second request also takes README.md back to the base and removes the binary
    # file: the pull request's branch must lose both changes.
    more = [
        call("edit_file", path="calc.py", old="a + b\n", new="a + b\n" + DOUBLE),
        call("run_command", command=PYTEST),
        call("write_file", path="README.md", content=readme),
        *([call("run_command", command=["rm", "data.bin"])] if binary else []),
        call("propose_change", title="Add double"),
    ]
    config = {
        "agents": {
            "fixer": {
                "engine": "script",
                "workspace": "read-write",
                "active_tools": [
                    "reply",
                    "task_completed",
                    "write_file",
                    "edit_file",
                    "run_command",
                    "propose_change",
                ],
                "script": [
                    {"match": "task", "do": first},
                    {"when": "^Approved by", "do": [{"reply": "noted: {input}"}]},
                    {"when": "double", "do": more},
                    {"do": [{"reply": "heard {input}"}]},
                ],
            }
        },
        "sessions": {
            "keepSessionOpenForComments": True,
            "exitCriteria": {"userSignals": {"explicit": ["/done"]}},
        },
    }
    return json.dumps(config)


def commands(app: Running, session_id: str) -> list[dict[str, Any]]:
    events = app.runtime.sessions.store.transcript(session_id)
    return [e.data for e in events if e.kind == "command"]


def worktree_files(app: Running, session_id: str) -> dict[str, bytes]:
    """Every file of the session's worktree (a symbolic link as its target), .git aside."""
    spaces = app.runtime.sessions.workspaces
    assert spaces is not None
    root = spaces.spaces.store.tree_path(session_id)
    found = {}
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if name == ".git" or name.startswith(".git/") or (path.is_dir() and not path.is_symlink()):
            continue
        found[name] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return found


# ----------------------------------------------------------------- GitHub


@pytest.fixture
async def github(
    settings: Settings, tmp_path: Path, workspace_dir: Path
) -> AsyncIterator[GitHubRig]:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n", "calc.py": b"def add(a, b):\n    pass\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        config.write_text(agents(link=True), encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        changed = with_settings(github_settings(settings, gh, str(config)), workspace_dir=str(ws))
        async with run_app(changed) as app:
            yield GitHubRig(app, gh)


async def test_github_pull_request_holds_the_tested_bytes_and_modes_and_a_second_push(
    github: GitHubRig,
) -> None:
    rig, gh = github, github.gh
    approvals = rig.app.runtime.sessions.approvals
    await rig.comment(7, "@threadline make add work")
    await eventually(
        lambda: rig.sessions() and approvals.change_sets(rig.sessions()[0].id), "a change set"
    )
    [session] = rig.sessions()
    ran = commands(rig.app, session.id)
    assert [c["exit_code"] for c in ran] == [1, 0, 0, 0, 0]
    assert "1 failed" in ran[0]["output"]
    assert "1 passed" in ran[1]["output"]
    await rig.comment(7, "/approve")
    await eventually(lambda: any("opened #" in r for r in rig.replies(7)), "the PR is linked")
    [opening] = gh.requests_to("POST", r"/repos/.*/pulls$")
    branch = opening.json["head"]
    assert gh.files_at(REPO, branch) == {
        "README.md": README_CHANGED.encode(),
        "calc.py": CALC_GOOD.encode(),
        "test_calc.py": TEST.encode(),
        "data.bin": BLOB,
        "build.sh": SCRIPT.encode(),
        "link.py": b"calc.py",
    }
    modes = gh.modes_at(REPO, branch)
    assert (modes["build.sh"], modes["link.py"], modes["data.bin"]) == (
        "100755",
        "120000",
        "100644",
    )
    # The binary file went as a base64 blob; the tree named each mode.
    blobs = [r.json for r in gh.requests_to("POST", r"/repos/.*/git/blobs")]
    assert {"content": base64.b64encode(BLOB).decode(), "encoding": "base64"} in blobs
    [tree] = [r.json for r in gh.requests_to("POST", r"/repos/.*/git/trees")]
    entries = {e["path"]: e["mode"] for e in tree["tree"]}
    assert entries["build.sh"] == "100755"
    assert entries["link.py"] == "120000"
    first = gh.add_repo(REPO).refs["refs/heads/" + branch]

    # Later in the same session: more work, a second approval, the same pull request.
    await rig.comment(7, "please add double")
    await eventually(lambda: len(approvals.change_sets(session.id)) == 2, "a second proposal")
    await rig.comment(7, "/approve")
    await eventually(lambda: any("pushed `" in r for r in rig.replies(7)), "the push is linked")
    assert len(gh.requests_to("POST", r"/repos/.*/pulls$")) == 1  # no second pull request
    [update] = gh.requests_to("PATCH", r"/repos/.*/git/refs/heads/.*")
    assert update.json["force"] is False
    second = gh.add_repo(REPO).refs["refs/heads/" + branch]
    assert gh.add_repo(REPO).git_commits[second]["parents"] == [first]
    after = gh.files_at(REPO, branch)
    # The branch ends as the worktree is: README.md back as at the base, data.bin gone.
    assert after == worktree_files(rig.app, session.id)
    assert after == {
        "README.md": b"hello\n",
        "calc.py": CALC_MORE.encode(),
        "test_calc.py": TEST.encode(),
        "build.sh": SCRIPT.encode(),
        "link.py": b"calc.py",
    }
    assert gh.modes_at(REPO, branch)["build.sh"] == "100755"
    number = opening_number(rig)
    assert any(f"to #{number}" in r for r in rig.replies(7))
    assert all(h and h.startswith("Basic ") for h in gh.git_auth)


def opening_number(rig: GitHubRig) -> int:
    reply = next(r for r in rig.replies(7) if r.startswith("Approved by") and "opened #" in r)
    return int(reply.split("opened #", 1)[1].split()[0])


# ----------------------------------------------------------------- GitLab


@dataclass
class GitLabRig:
    app: Running
    gl: FakeGitLab
    project: Project

    async def note(self, body: str) -> None:
        person = next(u for u in self.gl.users.values() if u.username == "maintainer")
        note = self.gl.add_note(self.project, "issues", 3, body, author=person)
        payload = p.gitlab_fixture("docs/note_hook.issue.json")
        payload["project"]["path_with_namespace"] = self.project.path
        payload["object_attributes"].update(id=note.id, note=body)
        payload["issue"]["iid"] = 3
        payload["user"]["username"] = "maintainer"
        async with self.app.http.post(
            f"{self.app.url}/webhooks/gitlab",
            data=p.encode(payload),
            headers=p.gitlab_headers("Note Hook"),
        ) as resp:
            assert resp.status == 202, await resp.text()

    def notes(self) -> list[str]:
        return [strip(n.body) for n in sorted(self.gl.notes.values(), key=lambda n: n.id)]


@pytest.fixture
async def gitlab(
    settings: Settings, tmp_path: Path, workspace_dir: Path
) -> AsyncIterator[GitLabRig]:
    async with FakeGitLab() as gl:
        project = gl.add_project("grp/calc")
        gl.add_issue(project, 3)
        gl.add_member(project, gl.add_user("maintainer"), 40)
        gl.add_commit(
            project,
            {"README.md": b"hello\n", "calc.py": b"def add(a, b):\n    pass\n", "old.sh": b"x\n"},
            executable=("old.sh",),
        )
        gl.git_root = tmp_path / "git"
        gl.export_git(project)
        config = tmp_path / "threadline.yml"
        config.write_text(agents(link=False), encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        configured = with_settings(
            settings,
            gitlab_url=gl.url,
            gitlab_token=GITLAB_TOKEN,
            outbox_min_interval_seconds=0.0,
            config=str(config),
            workspace_dir=str(ws),
        )
        async with run_app(configured) as app:
            yield GitLabRig(app, gl, project)


async def test_gitlab_merge_request_holds_the_tested_bytes_and_modes_and_a_second_push(
    gitlab: GitLabRig,
) -> None:
    rig, gl, project = gitlab, gitlab.gl, gitlab.project
    store = rig.app.runtime.sessions.store
    approvals = rig.app.runtime.sessions.approvals
    await rig.note("@threadline make add work")

    def session_id() -> str | None:
        found = [s for s in store.recent(limit=10) if s.thread.host == "gitlab"]
        return found[0].id if found else None

    await eventually(lambda: session_id() and approvals.change_sets(session_id()), "a change set")
    sid = session_id()
    assert sid is not None
    assert [c["exit_code"] for c in commands(rig.app, sid)] == [1, 0, 0, 0]
    await rig.note("/approve")
    await eventually(lambda: any("opened !" in n or "opened #" in n for n in rig.notes()), "MR")
    [commit] = gl.calls("POST", "/projects/grp%2Fcalc/repository/commits")
    actions = {(a["action"], a["file_path"]): a for a in commit.body["actions"]}
    assert actions[("create", "data.bin")]["content"] == base64.b64encode(BLOB).decode()
    assert actions[("create", "data.bin")]["encoding"] == "base64"
    assert actions[("chmod", "build.sh")]["execute_filemode"] is True
    assert ("chmod", "calc.py") not in actions  # a plain file says nothing of modes
    branch = commit.body["branch"]
    assert commit.body["start_sha"] == project.branches["main"]
    assert gl.files_at(project, branch) == {
        "README.md": README_CHANGED.encode(),
        "calc.py": CALC_GOOD.encode(),
        "old.sh": b"x\n",
        "test_calc.py": TEST.encode(),
        "data.bin": BLOB,
        "build.sh": SCRIPT.encode(),
    }
    modes = gl.modes_at(project, branch)
    assert (modes["build.sh"], modes["old.sh"], modes["calc.py"]) == ("100755", "100755", "100644")
    [opening] = gl.calls("POST", "/projects/grp%2Fcalc/merge_requests")
    assert opening.body["source_branch"] == branch
    first = project.branches[branch]

    await rig.note("please add double")
    await eventually(lambda: len(approvals.change_sets(sid)) == 2, "a second proposal")
    await rig.note("/approve")
    await eventually(lambda: any("pushed `" in n for n in rig.notes()), "the push is linked")
    assert len(gl.calls("POST", "/projects/grp%2Fcalc/merge_requests")) == 1
    second = gl.calls("POST", "/projects/grp%2Fcalc/repository/commits")[-1]
    assert second.body["branch"] == branch
    assert "start_sha" not in second.body  # on top of the branch, not a new one
    assert project.parents[project.branches[branch]] == [first]
    after = gl.files_at(project, branch)
    # The branch ends as the worktree is: README.md back as at the base, data.bin gone.
    assert after == worktree_files(rig.app, sid)
    assert after == {
        "README.md": b"hello\n",
        "calc.py": CALC_MORE.encode(),
        "old.sh": b"x\n",
        "test_calc.py": TEST.encode(),
        "build.sh": SCRIPT.encode(),
    }
    pushed = {(a["action"], a["file_path"]) for a in second.body["actions"]}
    assert {("update", "README.md"), ("delete", "data.bin")} <= pushed
    assert gl.modes_at(project, branch)["build.sh"] == "100755"
    assert gl.git_auth
    assert all(h and h.startswith("Basic ") for h in gl.git_auth)


# ----------------------------------------------------------------- the playground


@pytest.fixture
async def playground(settings: Settings, tmp_path: Path, workspace_dir: Path) -> AsyncIterator[Rig]:
    config = tmp_path / "threadline.yml"
    config.write_text(agents(link=False, binary=False, readme=BASE_FILES["README.md"]))
    ws = workspace_dir / "ws"
    ws.mkdir(mode=0o755)
    port = free_port()  # the workers fetch from the web server: its address is set first
    changed = playground_settings(settings, config=str(config), workspace_dir=str(ws), port=port)
    async with run_app(changed, port=port) as app:
        yield Rig(app, PlaygroundStore(app.engine))


async def test_playground_pull_request_holds_the_tested_files_and_a_second_push(
    playground: Rig,
) -> None:
    rig, store = playground, playground.store
    approvals = rig.app.runtime.sessions.approvals
    git = f"{rig.app.url}/git/{DEMO_REPO}.git"
    await rig.comment("@threadline make add work")
    await eventually(
        lambda: rig.sessions() and approvals.change_sets(rig.sessions()[0].id), "a change set"
    )
    [session] = rig.sessions()
    ran = commands(rig.app, session.id)
    assert [c["exit_code"] for c in ran] == [1, 0]
    assert "1 failed" in ran[0]["output"]
    assert "1 passed" in ran[1]["output"]
    # The worktree was cloned over git from the playground's own server, at #1's head.
    spaces = rig.app.runtime.sessions.workspaces
    assert spaces is not None
    mirror = spaces.spaces.store.mirror_path("local", DEMO_REPO)
    assert (mirror / "HEAD").exists()
    tested = {**HEAD_FILES, "README.md": README_CHANGED, "calc.py": CALC_GOOD, "test_calc.py": TEST}
    assert worktree_files(rig.app, session.id) == {k: v.encode() for k, v in tested.items()}

    await rig.comment("/approve")
    await eventually(lambda: any("opened #2" in r for r in rig.replies()), "the PR is linked")
    pull = store.pull(DEMO_REPO, 2)
    assert pull is not None
    # Exactly the worktree's diff against its base, applied to the default branch.
    opened = {**BASE_FILES, "README.md": README_CHANGED, "calc.py": CALC_GOOD, "test_calc.py": TEST}
    assert store.files(DEMO_REPO, pull.head_sha) == opened
    assert pull.diff == unified_diff(BASE_FILES, opened)
    first = pull.head_sha

    await rig.comment("please add double")
    await eventually(lambda: len(approvals.change_sets(session.id)) == 2, "a second proposal")
    await rig.comment("/approve")
    await eventually(lambda: any("pushed `" in r for r in rig.replies()), "the push is linked")
    assert store.pull(DEMO_REPO, 3) is None  # no second pull request
    pull = store.pull(DEMO_REPO, 2)
    assert pull is not None
    pushed_commit = store.commit_row(DEMO_REPO, pull.head_sha)
    assert pushed_commit is not None
    assert pushed_commit.parent == first
    # README.md is back as at the base: the branch holds only what the worktree changed.
    pushed = {**BASE_FILES, "calc.py": CALC_MORE, "test_calc.py": TEST}
    assert store.files(DEMO_REPO, pull.head_sha) == pushed
    assert pull.diff == unified_diff(BASE_FILES, pushed)
    assert worktree_files(rig.app, session.id) == {
        k: v.encode() for k, v in {**HEAD_FILES, "calc.py": CALC_MORE, "test_calc.py": TEST}.items()
    }

    # The git server: the branch's commit is served as the database names it; no
    # password, no answer; pushing is refused.
    secret = store.webhook_secret()
    assert secret is not None
    auth = {"Authorization": basic_header(secret)}
    refs = f"{git}/info/refs?service=git-upload-pack"
    async with rig.app.http.get(refs, headers=auth) as resp:
        assert resp.status == 200
        assert f"{pull.head_sha} refs/pull/2/head".encode() in await resp.read()
    async with rig.app.http.get(refs) as resp:
        assert resp.status == 401
    async with rig.app.http.get(refs, headers={"Authorization": "Basic eDp5"}) as resp:
        assert resp.status == 401
    async with rig.app.http.get(f"{git}/info/refs?service=git-receive-pack", headers=auth) as resp:
        assert resp.status == 403
    async with rig.app.http.get(
        f"{rig.app.url}/git/nobody/nothing.git/info/refs?service=git-upload-pack", headers=auth
    ) as resp:
        assert resp.status == 404
