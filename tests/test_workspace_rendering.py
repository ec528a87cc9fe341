"""Workspace and CLI-agent events read well: a command (argv, exit code, capped output),
the worktree diff, and the cli_* events of a command engine, in `threadline sessions
show` / `sessions transcript` and on the inspector's transcript page."""

from __future__ import annotations

import asyncio
import html

import pytest
from sqlalchemy import Engine

from bot.cli import main
from bot.cli.workspace_events import describe, diff_files
from bot.config import Settings
from bot.db import make_engine
from bot.sessions.store import SessionStore
from tests.conftest import run_app, with_settings
from tests.test_cli import env
from tests.test_inspector import VIEWER_TOKEN, browser, launch, sign_in

__all__ = ["env"]  # the fixture, used by name

DIFF = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
    " def add(a, b):\n-    return a - b\n+    return a + b\n"
    "diff --git a/data.bin b/data.bin\nnew file mode 100644\nBinary files differ\n"
)
LONG_OUTPUT = "".join(f"line {n}\n" for n in range(100)) + "FAILED test_calc.py::test_add\n"
EVENTS = [
    (
        "command",
        {
            "turn": 1,
            "argv": ["python3", "-m", "pytest", "-q"],
            "cwd": ".",
            "exit_code": 1,
            "seconds": 0.42,
            "timed_out": False,
            "output": LONG_OUTPUT,
        },
    ),
    ("worktree_diff", {"turn": 1, "base": "a" * 40, "diff": DIFF}),
    (
        "cli_started",
        {"cli": "claude", "argv": ["claude", "-p"], "resume": "sess-1", "network": False},
    ),
    ("cli_tool_call", {"cli": "claude", "id": "t1", "tool": "Bash", "input": '{"command": "ls"}'}),
    ("cli_tool_result", {"cli": "claude", "id": "t1", "ok": False, "content": "no such file"}),
    ("cli_file_change", {"cli": "codex", "changes": [{"kind": "update", "path": "calc.py"}]}),
    (
        "cli_result",
        {"cli": "claude", "input_tokens": 120, "output_tokens": 30, "cost_usd": 0.0123, "turns": 2},
    ),
]


@pytest.mark.parametrize(
    ("kind", "first"),
    [
        ("command", "$ python3 -m pytest -q  [exit 1, 0.42 s]"),
        ("worktree_diff", f"worktree diff against {'a' * 12}: calc.py +1 -1, data.bin +0 -0"),
        ("cli_started", "claude started: claude -p, resuming sess-1"),
        ("cli_tool_call", 'claude calls Bash: {"command": "ls"}'),
        ("cli_tool_result", "claude tool result (failed): no such file"),
        ("cli_file_change", "codex changed files: update calc.py"),
        (
            "cli_result",
            "claude finished: input_tokens 120, output_tokens 30, cost_usd 0.0123, turns 2",
        ),
    ],
)
def test_each_kind_has_a_readable_first_line(kind: str, first: str) -> None:
    data = dict(EVENTS)[kind]
    lines = describe(kind, data)
    assert lines is not None
    assert lines[0] == first


def test_a_commands_output_is_capped_to_its_tail_and_unknown_kinds_are_left_alone() -> None:
    lines = describe("command", dict(EVENTS)["command"]) or []
    assert lines[1] == "    [... 81 lines above ...]"
    assert lines[-1] == "    FAILED test_calc.py::test_add"
    assert len(lines) == 22
    stopped = describe("command", {"argv": "sleep 9", "timed_out": True, "exit_code": -9})
    assert stopped == ["$ sleep 9  [stopped at its time limit]"]
    assert describe("message", {"text": "hi"}) is None
    assert diff_files("") == []


def record(engine: Engine, session_id: str) -> None:
    store = SessionStore(engine)
    for kind, data in EVENTS:
        store.record(session_id, kind, data)


def test_sessions_show_and_transcript_print_commands_diffs_and_cli_events(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.db.migrate import upgrade

    engine = make_engine(env)
    try:
        upgrade(engine)
        session = launch(engine, 3)
        record(engine, session.id)
        assert main(["sessions", "show", session.id]) == 0
        shown = capsys.readouterr().out
        assert "$ python3 -m pytest -q  [exit 1, 0.42 s]" in shown
        assert "worktree diff: worktree diff against aaaaaaaaaaaa: calc.py +1 -1" in shown
        assert main(["sessions", "transcript", session.id]) == 0
        text = capsys.readouterr().out
        assert "**command** $ python3 -m pytest -q  [exit 1, 0.42 s]" in text
        assert "  FAILED test_calc.py::test_add" in text
        assert "line 0\n" not in text  # the head of a long output is cut
        assert "**worktree_diff** worktree diff against" in text
        assert "  +    return a + b" in text
        assert "**cli_started** claude started: claude -p, resuming sess-1" in text
        assert "**cli_result** claude finished" in text
    finally:
        engine.dispose()


async def test_the_inspector_renders_commands_diffs_and_cli_events(settings: Settings) -> None:
    configured = with_settings(settings, viewer_token=VIEWER_TOKEN)
    async with run_app(configured, workers=0) as site:
        session = await asyncio.to_thread(launch, site.engine, 4)
        await asyncio.to_thread(record, site.engine, session.id)
        async with browser() as http:
            await sign_in(http, site.url, VIEWER_TOKEN)
            async with http.get(f"{site.url}/inspect/sessions/{session.id}/transcript") as resp:
                assert resp.status == 200
                page = html.unescape(await resp.text())
    assert "<code>$ python3 -m pytest -q</code>" in page
    assert 'data-testid="exit-code">exit 1</strong>' in page
    assert "FAILED test_calc.py::test_add" in page
    assert "<details open><summary>output</summary>" in page  # a failure shows its output
    assert "worktree diff against <code>aaaaaaaaaaaa</code> · 2 file(s)" in page
    assert "+    return a + b" in page
    assert (
        "<code>claude</code> started: <code>claude -p</code> · resuming <code>sess-1</code>" in page
    )
    assert "<code>claude</code> calls <code>Bash</code>" in page
    assert "tool result · failed" in page
    assert "<code>codex</code> changed: update <code>calc.py</code>" in page
    assert "120 tokens in, 30 out · $0.0123 · 2 turns" in page
