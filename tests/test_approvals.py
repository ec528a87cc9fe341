"""Approval gates end to end: an agent proposes a change, maintainers answer, and an
approved change becomes a branch and a pull/merge request through the host's API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from tests import payloads as p
from tests.conftest import run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab
from tests.test_sessions import REPO, GitHubRig, eventually, fake_github, github_settings, strip

__all__ = ["fake_github"]

AGENTS = """
agents:
  fixer:
    engine: script
    active_tools: [reply, update_status, task_completed, propose_change]
    script:
      - match: task
        do:
          - call:
              tool: propose_change
              args:
                title: Keep the last error
                description: "Retries now re-raise the last error (asked by @{author})."
                files: [{path: src/retry.py, content: "def retry():\\n    raise LastError\\n"}]
          - reply: "I proposed a change; it needs a maintainer's approval."
      - when: '^Approved by'
        do:
          - reply: "Thanks: {input}"
          - task_completed: "{input}"
      - do:
          - reply: "Revising after: {input}"
          - call:
              tool: propose_change
              args:
                title: Keep the last error (revised)
                description: Revised as asked.
                diff: |
                  --- a/src/retry.py
                  +++ b/src/retry.py
                  @@ -1,2 +1,3 @@
                   def retry():
                  -    pass
                  +    # keep the last error
                  +    raise LastError
sessions:
  branchTemplate: "threadline/{kind}-{number}-{change}"
"""
OLD = b"def retry():\n    pass\n"


@pytest.fixture
async def rig(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> AsyncIterator[GitHubRig]:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    fake_github.add_commit(REPO, {"src/retry.py": OLD, "README.md": b"hello\n"})
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        yield GitHubRig(app, fake_github)


async def send(rig: GitHubRig, event: str, payload: dict[str, Any]) -> None:
    raw = p.encode(payload)
    async with rig.app.http.post(
        f"{rig.app.url}/webhooks/github", data=raw, headers=p.github_headers(event, raw)
    ) as resp:
        assert resp.status == 202, await resp.text()


def events(rig: GitHubRig, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.data) for e in rig.app.runtime.sessions.store.transcript(session_id)]


async def test_an_issue_run_ends_in_an_approved_pull_request(rig: GitHubRig) -> None:
    await send(rig, "issues", p.issues_event("labeled", number=7))
    await eventually(lambda: "**Awaiting approval**" in rig.status(7), "the gate shows")
    await eventually(lambda: rig.sessions()[0].state == "awaiting_approval", "waiting")
    [session] = rig.sessions()
    assert "`/approve` or `/request-changes" in rig.status(7)

    # Not approvals: an outsider, a quoted /approve, an edit of an old comment, the bot.
    await rig.comment(7, "/approve", author="outsider")
    await eventually(lambda: "Sorry @outsider" in rig.replies(7)[-1], "the refusal")
    await rig.comment(7, "> /approve\n\nquoting the docs")
    made = rig.gh.add_issue_comment(REPO, 7, "looks fine", login="maintainer")
    edited = p.issue_comment("/approve", number=7, comment_id=made["id"], action="edited")
    await send(rig, "issue_comment", edited)
    await rig.comment(7, "/approve", author="threadline[bot]")
    rig.gh.add_issue(REPO, 8)
    await rig.comment(8, "/approve")  # another thread: not this session's gate
    await rig.app.drain()
    gate_events = [k for k, _ in events(rig, session.id) if k in ("approved", "change_applied")]
    assert gate_events == []
    assert rig.gh.requests_to("POST", r"/repos/.*/git/.*") == []

    # Changes requested: the text goes back to the agent, which proposes again.
    await rig.comment(7, "/request-changes keep a comment about the error")
    await eventually(
        lambda: (
            "Revising after: @maintainer requested changes: keep a comment about the error"
            in rig.replies(7)
        ),
        "the agent hears the request",
    )
    await eventually(lambda: "(revised)" in rig.status(7), "the new gate")
    await eventually(lambda: rig.sessions()[0].state == "awaiting_approval", "waiting again")

    # A maintainer approves: the Git Data API calls, in order, then the pull request.
    await rig.comment(7, "/approve")
    await eventually(lambda: any("opened #" in r for r in rig.replies(7)), "the PR is linked")
    calls = [
        (r.method, re.sub(r"^/repos/[^/]+/[^/]+", "", r.path))
        for r in rig.gh.requests
        if r.method == "POST" and re.match(r"^/repos/.*/(git/|pulls$)", r.path)
    ]
    assert calls == [
        ("POST", "/git/blobs"),
        ("POST", "/git/trees"),
        ("POST", "/git/commits"),
        ("POST", "/git/refs"),
        ("POST", "/pulls"),
    ]
    [pull_request] = rig.gh.requests_to("POST", r"/repos/.*/pulls$")
    assert pull_request.json["head"].startswith("threadline/issue-7-")
    assert pull_request.json["base"] == "main"
    assert "Closes #7" in pull_request.json["body"]
    assert pull_request.json["title"] == "Keep the last error (revised)"
    branch = pull_request.json["head"]
    assert rig.gh.files_at(REPO, branch)["src/retry.py"] == (
        b"def retry():\n    # keep the last error\n    raise LastError\n"
    )
    await eventually(lambda: rig.sessions()[0].state == "closed", "done after the approval")
    kinds = [k for k, _ in events(rig, session.id)]
    for kind in ("change_proposed", "approval_requested", "changes_requested", "approved"):
        assert kind in kinds, kind
    approved = next(d for k, d in events(rig, session.id) if k == "approved")
    assert (approved["by"], approved["how"]) == ("maintainer", "comment")
    # The status comment is edited through the outbox, after the session closed.
    await eventually(lambda: "approved by @maintainer" in rig.status(7), "the status names it")


async def test_on_a_pull_request_approvals_are_pinned_to_its_head(rig: GitHubRig) -> None:
    await rig.comment(12, "@threadline fix the retries")
    await eventually(lambda: "**Awaiting approval**" in rig.status(12), "the gate shows")
    [session] = rig.sessions()
    gate = rig.app.runtime.sessions.approvals.waiting_gate(session.id)
    assert gate is not None
    assert gate.pinned_sha == "a" * 40

    # A review approving an older commit than the head does not count.
    await send(rig, "pull_request_review", p.review("approved", number=12))
    await eventually(lambda: "does not count" in rig.replies(12)[-1], "old commit refused")
    assert rig.sessions()[0].state == "awaiting_approval"

    # A push moves the head: the gate goes stale and the agent proposes again.
    rig.gh.add_repo(REPO).issues[12].head_sha = "c" * 40
    rig.gh.add_repo(REPO).issues[12].commits.add("c" * 40)
    pushed = {
        "action": "synchronize",
        "number": 12,
        "pull_request": {**p._pull(12), "head": {"ref": "fix-retry", "sha": "c" * 40}},
        "repository": p.repository(),
        "sender": p.user("contributor", 3),
        "installation": {"id": 4242},
    }
    await send(rig, "pull_request", pushed)
    await eventually(lambda: any("stale" in r for r in rig.replies(12)), "stale")
    await eventually(lambda: "(revised)" in rig.status(12), "proposed again")
    gate = rig.app.runtime.sessions.approvals.waiting_gate(session.id)
    assert gate is not None
    assert gate.pinned_sha == "c" * 40
    await rig.comment(12, "/approve")
    await eventually(lambda: any("opened #" in r for r in rig.replies(12)), "applied")
    [pull_request] = rig.gh.requests_to("POST", r"/repos/.*/pulls$")
    assert "From the discussion in #12" in pull_request.json["body"]
    decided = [d for k, d in events(rig, session.id) if k in ("stale", "approved")]
    assert [d["sha"] for d in decided] == ["c" * 40, "c" * 40]


async def test_a_change_that_no_longer_applies_is_reported(rig: GitHubRig) -> None:
    await send(rig, "issues", p.issues_event("labeled", number=7))
    await eventually(lambda: "**Awaiting approval**" in rig.status(7), "the gate shows")
    # Someone changes the same file on main meanwhile.
    rig.gh.add_commit(REPO, {"src/retry.py": b"def retry():\n    return 1\n", "README.md": b"x"})
    await rig.comment(7, "/approve")
    await eventually(lambda: any("no longer applies" in r for r in rig.replies(7)), "conflict")
    assert rig.gh.requests_to("POST", r"/repos/.*/pulls$") == []
    [session] = rig.sessions()
    [change] = rig.app.runtime.sessions.approvals.change_sets(session.id)
    assert change.status == "conflict"
    assert "src/retry.py" in (change.error or "")


async def test_gitlab_merge_request_approval_applies_the_change(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS, encoding="utf-8")
    async with FakeGitLab() as gl:
        project = gl.add_project("group/app")
        gl.add_commit(project, {"src/retry.py": OLD})
        gl.add_merge_request(project, 5, [], head_sha="d" * 40)
        maintainer = gl.add_user("maintainer")
        gl.add_member(project, maintainer, 40)
        configured = with_settings(
            settings,
            gitlab_url=gl.url,
            gitlab_token=GITLAB_TOKEN,
            outbox_min_interval_seconds=0.0,
            config=str(path),
        )
        async with run_app(configured) as app:
            note = gl.add_note(project, "merge_requests", 5, "@threadline fix", author=maintainer)
            payload = p.gitlab_fixture("docs/note_hook.merge_request.json")
            payload["project"]["path_with_namespace"] = "group/app"
            payload["object_attributes"].update(id=note.id, note="@threadline fix")
            payload["merge_request"]["iid"] = 5
            payload["user"]["username"] = "maintainer"
            await post_gitlab(app, "Note Hook", payload)

            def notes() -> list[str]:
                return [strip(n.body) for n in sorted(gl.notes.values(), key=lambda n: n.id)]

            await eventually(lambda: any("**Awaiting approval**" in n for n in notes()), "gate")
            approval = p.gitlab_fixture("docs/merge_request_hook.open.json")
            approval["project"]["path_with_namespace"] = "group/app"
            approval["object_attributes"].update(iid=5, action="approval")
            approval["object_attributes"]["last_commit"]["id"] = "d" * 40
            approval["user"]["username"] = "maintainer"
            await post_gitlab(app, "Merge Request Hook", approval)
            await eventually(lambda: any("opened !" in n or "opened #" in n for n in notes()), "MR")
            [mr] = [m for iid, m in project.merge_requests.items() if iid != 5]
            assert gl.files_at(project, mr.source_branch)["src/retry.py"].startswith(b"def retry")
            [session] = [
                s for s in app.runtime.sessions.store.recent(limit=5) if s.parent_id is None
            ]
            kinds = [e.kind for e in app.runtime.sessions.store.transcript(session.id)]
            assert "approved" in kinds
            assert "change_applied" in kinds


async def post_gitlab(app: Any, event: str, payload: dict[str, Any]) -> None:
    async with app.http.post(
        f"{app.url}/webhooks/gitlab", data=p.encode(payload), headers=p.gitlab_headers(event)
    ) as resp:
        assert resp.status == 202, await resp.text()


async def test_approve_as_a_reply_in_the_session_s_review_thread(rig: GitHubRig) -> None:
    root = rig.gh.add_review_comment(REPO, 12, "@threadline fix this line", login="maintainer")
    await send(
        rig,
        "pull_request_review_comment",
        p.review_comment("@threadline fix this line", comment_id=root["id"]),
    )

    def thread_bodies() -> list[str]:
        return [
            strip(c["body"]) for c in sorted(rig.gh.review_comments.values(), key=lambda c: c["id"])
        ]

    await eventually(
        lambda: any("**Awaiting approval**" in b for b in thread_bodies()), "the gate", 30
    )
    [session] = rig.sessions()
    assert session.thread.thread_id is not None
    # An outsider's reply in the thread is refused; a maintainer's reply approves.
    await rig.review_reply("/approve", root=int(root["id"]), author="outsider")
    await eventually(lambda: any("Sorry @outsider" in b for b in thread_bodies()), "refused")
    await rig.review_reply("/approve", root=int(root["id"]))
    await eventually(lambda: any("opened #" in b for b in thread_bodies()), "applied")
    [pull_request] = rig.gh.requests_to("POST", r"/repos/.*/pulls$")
    assert "From the discussion in #12" in pull_request.json["body"]
    approved = next(d for k, d in events(rig, session.id) if k == "approved")
    assert (approved["by"], approved["sha"]) == ("maintainer", "a" * 40)


async def test_the_starter_can_be_kept_from_approving_their_own_run(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    path = tmp_path / "threadline.yml"
    path.write_text(AGENTS + "  approvalExcludesStarter: true\n", encoding="utf-8")
    fake_github.add_commit(REPO, {"src/retry.py": OLD})
    async with run_app(github_settings(settings, fake_github, str(path))) as app:
        rig = GitHubRig(app, fake_github)
        await send(rig, "issues", p.issues_event("labeled", number=7))  # by maintainer
        await eventually(lambda: "**Awaiting approval**" in rig.status(7), "the gate")
        await rig.comment(7, "/approve")
        await eventually(lambda: any("who started this run" in r for r in rig.replies(7)), "no")
        assert rig.gh.requests_to("POST", r"/repos/.*/pulls$") == []
        await rig.comment(7, "/approve", author="admin-person")
        await eventually(lambda: any("opened #" in r for r in rig.replies(7)), "applied")
