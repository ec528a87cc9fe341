"""Restarting a failed session from its last completed turn, and a resumed session that
carries the pending change set of the one it resumes (issue 16, item 3), end to end:
webhooks in over loopback HTTP, the fake GitHub, a fake OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.cli import main
from bot.config import Settings
from bot.events import ThreadRef
from bot.sessions.store import Launch, RestartRefused, SessionStore
from tests.conftest import needs_bwrap, run_app, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Answer, Failure, FakeOpenAI, LLMRequest, Reply
from tests.test_cli import env
from tests.test_session_store import launch
from tests.test_sessions import (
    REPO,
    GitHubRig,
    eventually,
    fake_github,
    github_settings,
)

__all__ = ["env", "fake_github"]

KEY = "sk-openai-test-restart-0a1b2c3d4e5f"
OPERATOR = "operator-token-restart-0123456789abc"

LLM_AGENT = """
providers:
  local:
    kind: openai
    baseUrl: {url}
    apiKeyEnv: TL_TEST_RESTART_KEY
    defaults: {{model: talk-model}}
agents:
  talker:
    engine: llm
    provider: local
    systemPrompt: You talk.
sessions:
  keepSessionOpenForComments: true
"""


class Flaky:
    """Answers, except that a request whose last words say "explode" fails (401) while
    `broken` is set."""

    def __init__(self) -> None:
        self.broken = True

    def __call__(self, request: LLMRequest) -> Answer:
        if self.broken and "explode" in request.last_user_text:
            return Failure(401, message="the key was revoked")
        return Reply(text=[f"answer to: {request.last_user_text}"])


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("TL_TEST_RESTART_KEY", KEY)
    async with FakeOpenAI(api_key=KEY) as fake:
        yield fake


def user_texts(request: LLMRequest) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "user"]


async def test_a_failed_session_restarts_from_its_last_completed_turn(
    settings: Settings, fake_github: FakeGitHub, llm: FakeOpenAI, tmp_path: Path
) -> None:
    flaky = Flaky()
    llm.responder = flaky
    config = tmp_path / "threadline.yml"
    config.write_text(LLM_AGENT.format(url=llm.base_url), encoding="utf-8")
    configured = with_settings(
        github_settings(settings, fake_github, str(config)), operator_token=OPERATOR
    )
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    async with run_app(configured) as app:
        rig = GitHubRig(app, fake_github)
        await rig.comment(7, "@threadline remember the word heron")
        await eventually(lambda: "waiting for comments" in rig.status(7), "the first turn", 30)
        [session] = rig.sessions()
        await rig.comment(7, "now explode")
        await eventually(lambda: rig.sessions()[0].state == "failed", "the failure", 30)
        await eventually(lambda: "failed" in rig.status(7), "the failed status", 30)

        # The inspector offers a restart on the failed session's page.
        page_url = f"{app.url}/inspect/sessions/{session.id}"
        async with app.http.get(page_url, headers=auth) as resp:
            assert 'data-testid="restart-button"' in await resp.text()
        flaky.broken = False  # the operator fixed what failed
        calls = len(llm.requests)
        async with app.http.post(f"{page_url}/restart", headers=auth) as resp:
            assert resp.status == 200  # followed the 303 back to the session's page
            assert "Session restarted from its last completed turn" in await resp.text()

        await eventually(lambda: "waiting for comments" in rig.status(7), "the turn again", 30)
        restarted = rig.sessions()[0]
        assert restarted.id == session.id
        assert restarted.state == "idle"
        assert len(llm.requests) == calls + 1
        # The next request holds the completed turn, and the failed turn's input once.
        said = user_texts(llm.requests[-1])
        assert any("heron" in text for text in said)
        assert sum("now explode" in text for text in said) == 1
        store = app.runtime.sessions.store
        texts = [e.data.get("text") for e in store.transcript(session.id) if e.kind == "message"]
        assert texts[-1].endswith("now explode")
        events = rig.session_events(session.id)
        assert events.count("restarted") == 1
        assert events.index("failed") < events.index("restarted")

        # Only a failed session restarts: the API says why not.
        async with app.http.post(
            f"{app.url}/api/sessions/{session.id}/restart", headers=auth
        ) as resp:
            assert resp.status == 409
            assert "only a failed session can be restarted" in (await resp.json())["error"]
        # A viewer (or nobody) may not.
        async with app.http.post(f"{app.url}/api/sessions/{session.id}/restart") as resp:
            assert resp.status == 401


def test_sessions_restart_says_why_not(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["sessions", "restart", "s-00000000"]) == 1
    assert "no session s-00000000" in capsys.readouterr().err


WRITER = """
agents:
  writer:
    engine: script
    workspace: read-write
    active_tools: [reply, write_file, run_command]
    script:
      - when: write
        do:
          - call: {tool: write_file, args: {path: note.txt, content: "heron\\n"}}
          - reply: wrote it
      - when: read
        do:
          - call: {tool: run_command, args: {command: [cat, note.txt]}}
          - reply: read it
sessions:
  keepSessionOpenForComments: true
  idleExpiryMinutes: 0.05
"""


@needs_bwrap
async def test_a_resumed_session_carries_the_pending_change_set(
    settings: Settings, tmp_path: Path, workspace_dir: Path
) -> None:
    async with FakeGitHub() as gh:
        gh.install(4242, [REPO])
        gh.add_issue(REPO, 7)
        gh.set_permission(REPO, "maintainer", "write")
        gh.add_commit(REPO, {"README.md": b"hello\n"})
        gh.git_root = tmp_path / "git"
        gh.export_git(REPO)
        config = tmp_path / "threadline.yml"
        config.write_text(WRITER, encoding="utf-8")
        ws = workspace_dir / "ws"
        ws.mkdir(mode=0o755)
        configured = with_settings(
            github_settings(settings, gh, str(config)), workspace_dir=str(ws)
        )
        async with run_app(configured) as app:
            rig = GitHubRig(app, gh)
            await rig.comment(7, "@threadline write a note")
            await eventually(lambda: "wrote it" in rig.replies(7), "the first session's turn", 30)
            # Idle expiry ends it (3 s); its worktree goes, its diff stays in the transcript.
            await eventually(lambda: "idle too long" in rig.status(7), "idle expiry", 30)
            [first] = rig.sessions()
            await rig.comment(7, "@threadline read the note")
            await eventually(lambda: "read it" in rig.replies(7), "the resumed session's turn", 30)
            second = rig.sessions()[0]
            assert second.resumed_from == first.id
            store = app.runtime.sessions.store
            [command] = [e.data for e in store.transcript(second.id) if e.kind == "command"]
            assert command["exit_code"] == 0
            assert command["output"].strip() == "heron"

            def diffs() -> list[str]:
                events = store.transcript(second.id)
                return [str(e.data.get("diff")) for e in events if e.kind == "worktree_diff"]

            await eventually(diffs, "the resumed session's diff")
            assert "+heron" in diffs()[0]


def _fail_turn(store: SessionStore, session_id: str) -> None:
    claimed = store.claim_turn("runner", lease_seconds=30, session_id=session_id)
    assert claimed is not None
    session, inputs = claimed
    finished = store.finish_turn(
        session_id,
        "runner",
        consumed=[i.id for i in inputs],
        turn=session.turns,
        completed=False,
        failed=True,
        error="boom",
    )
    assert finished is not None
    assert finished.state == "failed"


def test_a_restart_is_refused_for_a_delegation_or_a_taken_thread(engine: Engine) -> None:
    store = SessionStore(engine)
    thread = ThreadRef("github", REPO, "issue", 7)
    first = launch(store, "d-1", thread)
    parent = store.live_for(thread.key)
    assert parent is not None
    child = store.launch(
        Launch(
            **{
                **first.__dict__,
                "client_request_id": "d-1.d1",
                "parent_id": parent.id,
                "thread_key": f"{thread.key}/delegations/1",
            }
        ),
        max_live=10,
    ).session
    _fail_turn(store, child.id)
    with pytest.raises(RestartRefused, match="is a delegation of session"):
        store.restart(child.id, by="operator")

    _fail_turn(store, parent.id)
    launch(store, "d-2", thread)  # a new session in the thread since
    with pytest.raises(RestartRefused, match="is live in the same thread"):
        store.restart(parent.id, by="operator")
    # Its failed turn's input was consumed and stays so: nothing was changed.
    assert [i.status for i in store.inputs(parent.id)] == ["consumed"]
    assert store.get(parent.id).state == "failed"  # type: ignore[union-attr]
