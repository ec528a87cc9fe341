"""A newcomer's first commands: help, --env-file anywhere, ports, an empty folder, and
`config check` / `doctor` refusing exactly what `serve` refuses."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import SETTINGS, load_settings
from bot.db import make_engine
from bot.db.migrate import current_revision
from bot.server import StartupError, serve
from tests import payloads as p


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    """A clean THREADLINE_* environment pointing at the test database, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", p.SECRET)
    return database_url


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty folder and no THREADLINE_* variables: the defaults, as after a fresh clone."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("THREADLINE_"):
            monkeypatch.delenv(name)
    return tmp_path


# ---------------------------------------------------------------- arguments


def test_no_arguments_prints_the_whole_help(capsys: pytest.CaptureFixture[str]) -> None:
    # Exit 2, argparse's status for a missing command, but with the help, not a usage error.
    assert main([]) == 2
    out = capsys.readouterr()
    assert "usage: threadline" in out.out
    assert "doctor" in out.out  # the commands are listed
    assert "error" not in out.err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_port_is_checked_like_the_variable(
    port: str, bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port:" in err
    assert "Traceback" not in err
    assert not (bare / "threadline.db").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_env_file_works_before_and_after_the_command(
    where: str, bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = bare / "elsewhere.env"
    env_file.write_text("THREADLINE_PORT=8123\n", encoding="utf-8")
    option = ["--env-file", str(env_file)]
    argv = [*option, "config", "check"] if where == "before" else ["config", "check", *option]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"settings file: {env_file}" in out
    assert "THREADLINE_PORT" in out
    assert "8123" in out


def test_env_file_after_a_nested_command(bare: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = bare / "nope.env"
    assert main(["db", "current", "--env-file", str(missing)]) == 2
    assert f"settings file {missing} does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- a bad agents file

_FIXER = "agents:\n  fixer:\n    engine: script\n    script:\n      - do: [{reply: hi}]\n"
BAD_AGENTS_FILES = {
    "yaml-syntax": ("agents:\n  fixer:\n    engine: script\n   script: [\n", "threadline.yml:"),
    "unknown-engine": ("agents:\n  fixer:\n    engine: gpt\n", "unknown engine 'gpt'"),
    "unknown-key": ("agents:\n  fixer:\n    engine: script\nagnets: {}\n", "agnets"),
    "duplicate-key": (
        "agents:\n  fixer:\n    engine: script\n  fixer:\n    engine: script\n",
        "threadline.yml:4",
    ),
    "not-a-mapping": ("- just\n- a list\n", "threadline.yml"),
    "unknown-default-agent": (
        "agents:\n  fixer:\n    engine: script\ndefaultAgent: nobody\n",
        "nobody",
    ),
    # Files YAML reads well whose meaning is wrong: each names its line and field.
    "unknown-tool": (
        _FIXER + "    active_tools: [reply, fly]\n",
        "threadline.yml:6: agents.fixer.active_tools[1]: unknown tool 'fly'",
    ),
    "bad-regex": (
        "agents:\n  fixer:\n    engine: script\n    script:\n      - when: '(open'\n"
        "        do: [{reply: hi}]\n",
        "threadline.yml:5: agents.fixer.script[0].when: invalid regular expression",
    ),
    "workflow-unknown-agent": (
        _FIXER + "workflows:\n  fix:\n    steps:\n      - {name: a, agent: ghost}\n",
        "threadline.yml:9: workflows.fix.steps[0].agent: unknown agent 'ghost'",
    ),
    "wrong-type": (
        _FIXER + "sessions:\n  keepSessionOpenForComments: maybe\n",
        "sessions.keepSessionOpenForComments: expected true or false, got 'maybe'",
    ),
    "missing-required": (
        "agents:\n  thinker:\n    engine: llm\n",
        "threadline.yml:2: agents.thinker.provider: required",
    ),
}


def _write_agents(folder: Path, kind: str) -> str:
    if kind == "unreadable":
        return str(folder / "missing.yml")
    path = folder / "threadline.yml"
    if kind == "not-utf8":
        path.write_bytes(b"agents:\n  fixer:\n    description: caf\xe9\n")
    else:
        path.write_text(BAD_AGENTS_FILES[kind][0], encoding="utf-8")
    return str(path)


KINDS = [*BAD_AGENTS_FILES, "unreadable", "not-utf8"]


@pytest.mark.parametrize("kind", KINDS)
def test_serve_refuses_a_bad_agents_file_and_so_do_config_check_and_doctor(
    kind: str,
    env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _write_agents(tmp_path, kind)
    if kind == "unreadable":
        monkeypatch.setenv("THREADLINE_CONFIG", config)  # else ./threadline.yml is found
    settings = load_settings()
    assert settings.config is not None

    # serve refuses it (a `stop` already set makes a serve that started return at once).
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(StartupError) as refused:
        asyncio.run(serve(settings, workers=0, stop=stop))
    assert "refusing to start" in str(refused.value)
    expected = {"unreadable": config, "not-utf8": "not UTF-8"}.get(kind) or BAD_AGENTS_FILES[kind][
        1
    ]

    assert main(["config", "check"]) == 2
    out = capsys.readouterr().out
    assert "not ok: serve would refuse to start" in out
    assert expected in out
    assert "error: " in out

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "fail  settings: " in out
    assert expected in out


def test_a_good_agents_file_passes_all_three(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "approvals.yml"
    (tmp_path / "threadline.yml").write_text(example.read_text(encoding="utf-8"), "utf-8")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "agents file: threadline.yml" in out
    assert "ok: `threadline serve` can start" in out


# ---------------------------------------------------------------- listening and the database


def test_a_port_in_use_is_found_before_the_database_is_touched(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    engine = make_engine(env)
    try:
        assert current_revision(engine) is None  # not migrated: nothing was touched
    finally:
        engine.dispose()


def test_doctor_in_an_empty_folder_creates_no_database(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "warn  database: threadline.db does not exist yet" in out
    assert "threadline serve" in out
    assert list(bare.iterdir()) == []


def test_doctor_without_auto_migrate_fails_on_a_missing_database(
    bare: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("THREADLINE_AUTO_MIGRATE", "false")
    assert main(["doctor"]) == 1
    assert "run `threadline db upgrade`" in capsys.readouterr().out
    assert list(bare.iterdir()) == []


def test_an_unopenable_sqlite_file_is_named(
    bare: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    where = bare / "no-such-folder" / "t.db"
    monkeypatch.setenv("THREADLINE_DATABASE_URL", f"sqlite:///{where}")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "unable to open database file" in err
    assert str(where) in err
    assert "Traceback" not in err
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "unable to open database file" in err
    assert str(where) in err
    assert main(["doctor"]) == 1
    assert f"the folder {where.parent} does not exist" in capsys.readouterr().out


# ---------------------------------------------------------------- the status comment's footer


@pytest.mark.parametrize(
    ("host", "public_url", "footer"),
    [
        (
            "github",
            "https://tl.example.com/",
            "[Transcript](https://tl.example.com/inspect/sessions/{id})",
        ),
        ("local", None, "[Transcript](/inspect/sessions/{id})"),
        ("github", None, "Transcript: `threadline sessions transcript {id}`"),
    ],
)
def test_a_closed_sessions_status_links_the_inspector(
    host: str,
    public_url: str | None,
    footer: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.db.migrate import upgrade
    from bot.events import ThreadRef
    from bot.outbox import Outbox
    from bot.sessions.store import Launch, SessionOptions, SessionStore

    if public_url:
        monkeypatch.setenv("THREADLINE_PUBLIC_URL", public_url)
    engine = make_engine(env)
    try:
        upgrade(engine)
        thread = ThreadRef(host, "octo-org/hello-world", "pull", 7)
        launch = Launch(
            "d-1", thread, 42, "echo", "hi", "maintainer", "5001", None, SessionOptions()
        )
        launched = SessionStore(engine).launch(launch, max_live=10).session
        assert main(["sessions", "close", launched.id]) == 0
        [row] = Outbox(engine).recent()
        assert f"<sub>{footer.format(id=launched.id)}</sub>" in row.payload["body"]
    finally:
        engine.dispose()


def test_the_readme_settings_table_is_the_settings_definition() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `(THREADLINE_[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE)
    assert table == [s.env for s in SETTINGS]  # the same variables, in the same order


def test_serve_listens_on_every_address_of_its_host_name() -> None:
    from bot.server import bind

    socks = bind("localhost", 0)
    try:
        assert socks
        assert all(s.getsockname()[1] > 0 for s in socks)
    finally:
        for sock in socks:
            sock.close()
    with pytest.raises(StartupError, match=re.escape("cannot listen on no-such-host.invalid:3000")):
        bind("no-such-host.invalid", 3000)
