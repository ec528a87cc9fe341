"""The `threadline` command: config check, db upgrade, deliveries list/show/replay, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.cli import main
from bot.db import make_engine
from bot.db.migrate import current_revision, head_revision, include_name, upgrade
from bot.db.models import Base
from bot.inbox import Inbox
from bot.outbox import Outbox
from tests import payloads as p
from tests.procs import Proc, free_port, start
from tests.test_inbox import incoming


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    """A clean THREADLINE_* environment pointing at the test database."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", p.SECRET)
    return database_url


pem = p.rsa_private_key_pem


def test_migrations_match_the_models_and_upgrade_is_repeatable(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_name}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_db_upgrade_and_current(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current"]) == 1
    assert main(["db", "upgrade"]) == 0
    assert "upgraded from empty to" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "already at" in capsys.readouterr().out
    assert main(["db", "current"]) == 0


def test_config_check_masks_secrets_and_reports_missing(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = pem()
    monkeypatch.setenv("THREADLINE_GITHUB_APP_ID", "1234")
    monkeypatch.setenv("THREADLINE_GITHUB_PRIVATE_KEY", key)
    monkeypatch.setenv("THREADLINE_GITLAB_TOKEN", "glpat-very-secret-token-value")
    assert main(["config", "check"]) == 2  # GitLab token without a webhook token
    out = capsys.readouterr().out
    assert p.SECRET not in out
    assert "glpat-very-secret-token-value" not in out
    assert "PRIVATE KEY" not in out
    assert "THREADLINE_GITHUB_WEBHOOK_SECRET" in out
    assert "hidden" in out
    assert "THREADLINE_GITLAB_WEBHOOK_TOKEN" in out
    assert "not set, optional" in out
    assert "error: GitLab is configured but THREADLINE_GITLAB_WEBHOOK_TOKEN is not set" in out

    monkeypatch.setenv("THREADLINE_GITLAB_WEBHOOK_TOKEN", "another-long-secret-token")
    assert main(["config", "check"]) == 0
    assert "ok: `threadline serve` can start" in capsys.readouterr().out


def test_unusable_settings_are_reported_together(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("THREADLINE_PORT", "70000")
    monkeypatch.setenv("THREADLINE_GITHUB_API_URL", "api.github.com")
    assert main(["config", "check"]) == 2
    err = capsys.readouterr().err
    assert "THREADLINE_PORT must be between 0 and 65535" in err
    assert "THREADLINE_GITHUB_API_URL must start with http" in err


def test_serve_refuses_to_start_without_a_webhook_secret(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("THREADLINE_GITHUB_WEBHOOK_SECRET")
    monkeypatch.setenv("THREADLINE_GITHUB_APP_ID", "1234")
    monkeypatch.setenv("THREADLINE_GITHUB_PRIVATE_KEY", pem())
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "THREADLINE_GITHUB_WEBHOOK_SECRET" in err


def test_serve_refuses_an_outdated_schema_with_no_migrate(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", "--no-migrate"]) == 1
    assert "run `threadline db upgrade` first" in capsys.readouterr().err


def test_deliveries_list_show_and_replay(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(env)
    try:
        upgrade(engine)
        inbox = Inbox(engine)
        inbox.store_many([incoming(1), incoming(2, event="star", handled=False)])
        [claimed] = inbox.claim("w", limit=1, lease_seconds=60)
        inbox.fail(claimed.pk, "w", "RuntimeError: host said no")

        assert main(["deliveries", "list"]) == 0
        out = capsys.readouterr().out
        assert "failed" in out
        assert "RuntimeError: host said no" in out
        assert "ignored" in out

        assert main(["deliveries", "list", "--status", "failed", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(d["delivery_id"], d["status"]) for d in listed] == [("d-1", "failed")]

        assert main(["deliveries", "show", "d-1", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["headers"]["X-GitHub-Event"] == "issue_comment"
        assert json.loads(shown["body"])["comment"]["body"] == "comment 1"

        assert main(["deliveries", "show", "d-1"]) == 0
        assert '"body": "comment 1"' in capsys.readouterr().out

        assert main(["deliveries", "replay", str(claimed.pk)]) == 0
        assert "queued again" in capsys.readouterr().out
        row = inbox.get("d-1")
        assert row is not None
        assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)

        assert main(["deliveries", "show", "nope"]) == 1
        assert "no delivery nope" in capsys.readouterr().err
    finally:
        engine.dispose()


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["serve"],
        ["worker"],
        ["db", "upgrade"],
        ["config", "check"],
        ["deliveries", "list"],
        ["deliveries", "show"],
        ["deliveries", "replay"],
        ["outbox", "list"],
        ["outbox", "retry"],
        ["webhook", "send"],
        ["schedules", "list"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        assert "usage: threadline" in capsys.readouterr().out


def test_webhook_send_delivers_through_a_running_server(
    env: str,
    tmp_path: Path,
    procs: list[Proc],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = str(free_port())
    server = start(procs, ["serve"], env, tmp_path, "serve", {"THREADLINE_PORT": port})
    server.wait_for(r"listening on http://127.0.0.1:" + port)
    monkeypatch.setenv("THREADLINE_PORT", port)
    example = Path(__file__).resolve().parents[1] / "examples" / "github_issue_comment.json"
    argv = ["webhook", "send", "github", "issue_comment", str(example)]
    assert main(argv) == 0  # to this server's own address, from the settings
    answer = capsys.readouterr().out
    assert answer.startswith("202 ")
    assert '"queued"' in answer
    server.wait_for(r"delivery 1 done .*CommentEvent created")

    assert main([*argv, "--url", "http://127.0.0.1:1/webhooks/github"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_outbox_list_and_retry(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bot import outbox as ob
    from bot.events import ThreadRef

    engine = make_engine(env)
    try:
        upgrade(engine)
        box = ob.Outbox(engine)
        thread = ThreadRef("github", "octo-org/hello-world", "issue", 7)
        pk = box.enqueue(ob.comment("reply-1", thread, "hello", 42))
        box.enqueue(ob.comment("reply-2", thread, "again", 42))
        row = box.claim("s", min_interval=0, lease_seconds=30)
        assert row is not None
        box.fail(row, "s", "Unauthorized: token revoked (HTTP 401)")

        assert main(["outbox", "list"]) == 0
        out = capsys.readouterr().out
        assert "failed" in out
        assert "token revoked" in out
        assert "github:octo-org/hello-world/issues/7" in out
        assert main(["outbox", "list", "--status", "failed", "--json"]) == 0
        assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [pk]

        assert main(["outbox", "retry", str(pk)]) == 0
        assert "queued again" in capsys.readouterr().out
        assert main(["outbox", "retry", str(pk)]) == 1
        assert "only failed writes" in capsys.readouterr().err
    finally:
        engine.dispose()


def test_sessions_commands(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.events import ThreadRef
    from bot.sessions.store import Launch, SessionOptions, SessionStore

    engine = make_engine(env)
    try:
        upgrade(engine)
        store = SessionStore(engine)
        thread = ThreadRef("github", "octo-org/hello-world", "issue", 7)
        launched = store.launch(
            Launch(
                "d-1",
                thread,
                42,
                "echo",
                "review this",
                "maintainer",
                "5001",
                None,
                SessionOptions(),
            ),
            max_live=10,
        ).session

        assert main(["sessions", "list", "--state", "live"]) == 0
        assert launched.id in capsys.readouterr().out
        assert main(["sessions", "list", "--json", "--repo", "octo-org/hello-world"]) == 0
        assert [s["id"] for s in json.loads(capsys.readouterr().out)] == [launched.id]

        assert main(["sessions", "send", launched.id, "please also check the tests"]) == 0
        assert "queued" in capsys.readouterr().out
        assert main(["sessions", "show", launched.id, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["cost_usd"] == "0.000000"
        assert shown["tokens"] == {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        assert [(i["kind"], i["body"]) for i in shown["inputs"]] == [
            ("task", "review this"),
            ("operator", "please also check the tests"),
        ]

        assert main(["sessions", "transcript", launched.id, "--format", "jsonl"]) == 0
        kinds = [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()]
        assert kinds == ["launched", "input"]

        assert main(["sessions", "close", launched.id]) == 0
        assert "closed" in capsys.readouterr().out
        assert main(["sessions", "close", launched.id]) == 1
        closed = store.get(launched.id)
        assert closed is not None
        assert (closed.state, closed.close_reason) == ("closed", "operator")
        # The closed status is queued for the thread's status comment.
        assert [r.kind for r in Outbox(engine).recent()] == ["upsert"]

        assert main(["sessions", "purge", launched.id]) == 1
        assert "--yes" in capsys.readouterr().err
        assert main(["sessions", "purge", launched.id, "--yes"]) == 0
        assert store.transcript(launched.id) == []
        assert main(["sessions", "show", "s-00000000"]) == 1
    finally:
        engine.dispose()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`threadline ARGS` as a real process, with only `env`'s THREADLINE_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,  # a serve that started anyway would run on: that fails the test
        check=False,
    )


@pytest.mark.slow
def test_a_malformed_private_key_stops_config_check_serve_and_doctor_alike(
    tmp_path: Path,
) -> None:
    key = pem().strip().splitlines()
    cut = "\n".join([*key[:5], key[-1]]) + "\n"  # a paste that lost most of its lines
    key_file = tmp_path / "app.pem"
    key_file.write_text(cut, encoding="ascii")
    base = {
        "THREADLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'threadline.db'}",
        "THREADLINE_GITHUB_WEBHOOK_SECRET": p.SECRET,
        "THREADLINE_GITHUB_APP_ID": "1234",
        "THREADLINE_PORT": "0",
    }
    ways = {
        "THREADLINE_GITHUB_PRIVATE_KEY cannot be read as a PEM private key": {
            "THREADLINE_GITHUB_PRIVATE_KEY": cut.strip().replace("\n", "\\n")
        },
        f"THREADLINE_GITHUB_PRIVATE_KEY_PATH {key_file} cannot be read as a PEM private key": {
            "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(key_file)
        },
    }
    commands = (["config", "check"], ["serve"], ["doctor"])
    for (problem, variables), tried in zip(ways.items(), (commands, commands[1:2]), strict=True):
        reports = []
        for command in tried:
            done = _cli(command, {**base, **variables}, tmp_path)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, command
            assert problem in done.stderr, (command, done.stderr)
            for line in key[1:-1]:
                assert line not in done.stdout + done.stderr, "a line of the key is shown"
            reports.append(done.stderr)
        assert all(report == reports[0] for report in reports), "all say it the same way"
        assert reports[0].startswith("threadline: the settings are not usable:\n")
