"""bot.config: settings from an explicit environment and env file, validated all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import (
    SETTINGS,
    ConfigError,
    Settings,
    describe,
    load_settings,
    mask,
    normalize_database_url,
    parse_env_file,
)
from tests.payloads import rsa_private_key_pem

LEAK = "s3cr3t-value-that-must-not-leak"
LONG_SECRET = "0123456789abcdef-long-enough"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its empty tmp_path, so no real ./threadline.env is read."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def pem() -> str:
    return rsa_private_key_pem()


def problems_of(environ: dict[str, str], env_file: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ, env_file)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


# ---------------------------------------------------------------- defaults and sources


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///threadline.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    assert settings.github_api_url == "https://api.github.com"
    assert settings.gitlab_url == "https://gitlab.com"
    assert settings.bot_names == ("threadline",)
    assert settings.auto_migrate is True
    assert (settings.log_level, settings.log_format) == ("INFO", "text")
    assert settings.source_file is None
    assert settings.unknown_variables == ()
    assert not settings.github_enabled
    assert not settings.gitlab_enabled


def test_documented_defaults_match_the_dataclass_defaults() -> None:
    documented = {s.env: s.default for s in SETTINGS if s.default is not None}
    assert load_settings(documented) == Settings()


def test_variables_without_the_prefix_in_the_environment_are_ignored() -> None:
    settings = load_settings({"PORT": "8080", "PATH": "/usr/bin", "DATABASE_URL": "mysql://x"})
    assert settings == Settings()


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_values_mean_the_default(blank: str) -> None:
    assert load_settings({"THREADLINE_PORT": blank, "THREADLINE_HOST": blank}) == Settings()


ENV_FILE = """\
# Threadline settings
   # an indented comment

export THREADLINE_PORT=4000
THREADLINE_HOST = "0.0.0.0"
export   THREADLINE_BOT_NAME='@Threadline, tl-helper '
THREADLINE_LOG_LEVEL=debug
THREADLINE_DATABASE_URL="postgres://tl@db:5432/threadline"
THREADLINE_GITLAB_URL=https://gitlab.example.com/
THREADLINE_LOG_FORMAT="JSON"
THREADLINE_WORKER_POLL_SECONDS='0.5'
"""


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "custom.env"
    path.write_text(ENV_FILE, encoding="utf-8")
    settings = load_settings({}, path)
    assert settings.port == 4000
    assert settings.host == "0.0.0.0"  # noqa: S104 (the file binds all interfaces on purpose)
    assert settings.bot_names == ("Threadline", "tl-helper")
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.database_url == "postgresql+psycopg://tl@db:5432/threadline"
    assert settings.gitlab_url == "https://gitlab.example.com"
    assert settings.worker_poll_seconds == 0.5
    assert settings.source_file == str(path)
    assert settings.unknown_variables == ()


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    path = tmp_path / "custom.env"
    path.write_text(ENV_FILE, encoding="utf-8")
    settings = load_settings({"THREADLINE_PORT": "5000", "THREADLINE_LOG_LEVEL": "error"}, path)
    assert settings.port == 5000
    assert settings.log_level == "ERROR"
    assert settings.host == "0.0.0.0"  # noqa: S104 (still from the file)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("export A=1", {"A": "1"}),
        ("  export   A = 1  ", {"A": "1"}),
        ('A="quoted value"', {"A": "quoted value"}),
        ("A='single'", {"A": "single"}),
        ("A=\"mismatched'", {"A": "\"mismatched'"}),
        ('A="', {"A": '"'}),
        ("A=", {"A": ""}),
        ("A=x=y", {"A": "x=y"}),
        ("A=1\nA=2", {"A": "2"}),
        ("# c\n\n  \nB=2\n# A=1", {"B": "2"}),
        ("A=has # no inline comments", {"A": "has # no inline comments"}),
    ],
)
def test_parse_env_file(text: str, expected: dict[str, str]) -> None:
    assert parse_env_file(text, "t.env") == expected


@pytest.mark.parametrize(
    ("text", "where"),
    [("A=1\njust words", "t.env:2"), ("=1", "t.env:1"), ("export", "t.env:1")],
)
def test_parse_env_file_refuses_lines_without_a_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_env_file(text, "t.env")
    assert caught.value.problems[0].startswith(where + ": expected KEY=VALUE")


def test_default_env_file_is_read_from_the_working_directory(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path
    (tmp_path / "threadline.env").write_text("THREADLINE_PORT=4100\n", encoding="utf-8")
    settings = load_settings({})
    assert settings.port == 4100
    assert settings.source_file == "threadline.env"


def test_env_file_named_in_the_environment_is_read(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.env"
    path.write_text("THREADLINE_PORT=4200\n", encoding="utf-8")
    settings = load_settings({"THREADLINE_ENV_FILE": str(path)})
    assert settings.port == 4200
    assert settings.source_file == str(path)
    assert settings.unknown_variables == ()  # THREADLINE_ENV_FILE itself is not unknown


def test_explicit_env_file_argument_wins_over_the_variable(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("THREADLINE_PORT=4001\n", encoding="utf-8")
    (tmp_path / "b.env").write_text("THREADLINE_PORT=4002\n", encoding="utf-8")
    settings = load_settings({"THREADLINE_ENV_FILE": str(tmp_path / "a.env")}, tmp_path / "b.env")
    assert settings.port == 4002


def test_missing_env_file_named_in_the_environment_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    assert problems_of({"THREADLINE_ENV_FILE": str(missing)}) == [
        f"settings file {missing} does not exist"
    ]


def test_missing_env_file_argument_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of({}, tmp_path / "nope.env")
    assert "does not exist" in problem


def test_missing_default_env_file_is_fine() -> None:
    assert load_settings({}).source_file is None


def test_malformed_env_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("THREADLINE_PORT=1\nnot a setting\n", encoding="utf-8")
    (problem,) = problems_of({}, path)
    assert problem.startswith(f"{path}:2: expected KEY=VALUE")


# ---------------------------------------------------------------- validation


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "THREADLINE_PORT": "http",
            "THREADLINE_GITHUB_APP_ID": "my-app",
            "THREADLINE_AUTO_MIGRATE": "maybe",
            "THREADLINE_LOG_LEVEL": "verbose",
        }
    )
    assert len(problems) == 4
    text = "\n".join(problems)
    for name in (
        "THREADLINE_PORT",
        "THREADLINE_GITHUB_APP_ID",
        "THREADLINE_AUTO_MIGRATE",
        "THREADLINE_LOG_LEVEL",
    ):
        assert name in text
    assert "'http'" in text
    assert "'verbose'" in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("THREADLINE_PORT", "http", "THREADLINE_PORT must be a whole number, got 'http'"),
        ("THREADLINE_PORT", "70000", "THREADLINE_PORT must be between 0 and 65535, got 70000"),
        ("THREADLINE_PORT", "-1", "THREADLINE_PORT must be between 0 and 65535, got -1"),
        ("THREADLINE_PORT", "30.5", "THREADLINE_PORT must be a whole number"),
        ("THREADLINE_GITHUB_APP_ID", "0", "THREADLINE_GITHUB_APP_ID must be between 1"),
        ("THREADLINE_GITHUB_APP_ID", "abc", "THREADLINE_GITHUB_APP_ID must be a whole number"),
        ("THREADLINE_AUTO_MIGRATE", "maybe", "THREADLINE_AUTO_MIGRATE must be true or false"),
        ("THREADLINE_LOG_LEVEL", "verbose", "THREADLINE_LOG_LEVEL must be one of DEBUG, INFO"),
        ("THREADLINE_LOG_FORMAT", "xml", "THREADLINE_LOG_FORMAT must be one of text, json"),
        ("THREADLINE_GITHUB_API_URL", "api.github.com", "must start with http:// or https://"),
        ("THREADLINE_GITLAB_URL", "ftp://gitlab", "THREADLINE_GITLAB_URL must start with"),
        ("THREADLINE_WORKER_POLL_SECONDS", "0.001", "must be at least 0.01"),
        ("THREADLINE_WORKER_LEASE_SECONDS", "soon", "must be a number, got 'soon'"),
        ("THREADLINE_OUTBOX_LEASE_SECONDS", "0.5", "must be at least 1.0"),
        ("THREADLINE_DELIVERY_MAX_ATTEMPTS", "0", "between 1 and 100"),
        ("THREADLINE_DELIVERY_RETRY_SECONDS", "-1", "must be at least 0.0"),
        ("THREADLINE_BOT_NAME", " , ,", "THREADLINE_BOT_NAME must name at least one user"),
        ("THREADLINE_GITHUB_PRIVATE_KEY", "not a key", "does not look like a PEM private key"),
    ],
)
def test_invalid_values(name: str, value: str, message: str) -> None:
    (problem,) = problems_of({name: value})
    assert message in problem


@pytest.mark.parametrize(
    ("name", "value", "attr", "expected"),
    [
        ("THREADLINE_PORT", "0", "port", 0),
        ("THREADLINE_PORT", " 8080 ", "port", 8080),
        ("THREADLINE_AUTO_MIGRATE", "off", "auto_migrate", False),
        ("THREADLINE_AUTO_MIGRATE", "NO", "auto_migrate", False),
        ("THREADLINE_AUTO_MIGRATE", "0", "auto_migrate", False),
        ("THREADLINE_AUTO_MIGRATE", "Yes", "auto_migrate", True),
        ("THREADLINE_AUTO_MIGRATE", "1", "auto_migrate", True),
        ("THREADLINE_LOG_LEVEL", "warning", "log_level", "WARNING"),
        ("THREADLINE_LOG_FORMAT", "Json", "log_format", "json"),
        ("THREADLINE_HOST", "  ::1  ", "host", "::1"),
        ("THREADLINE_WORKER_LEASE_SECONDS", "5", "worker_lease_seconds", 5.0),
        ("THREADLINE_OUTBOX_LEASE_SECONDS", "2.5", "outbox_lease_seconds", 2.5),
        ("THREADLINE_DELIVERY_MAX_ATTEMPTS", "100", "delivery_max_attempts", 100),
        ("THREADLINE_DELIVERY_RETRY_SECONDS", "0", "delivery_retry_seconds", 0.0),
        ("THREADLINE_BOT_NAME", "@threadline", "bot_names", ("threadline",)),
        ("THREADLINE_BOT_NAME", "Threadline, @tl-helper,,", "bot_names", ("Threadline", "tl-helper")),
        ("THREADLINE_GITHUB_API_URL", "https://ghe.example.com/api/v3/", "github_api_url", "https://ghe.example.com/api/v3"),
        ("THREADLINE_GITHUB_API_URL", "http://ghe.internal/api/v3", "github_api_url", "http://ghe.internal/api/v3"),
        ("THREADLINE_GITLAB_URL", "https://gitlab.example.com///", "gitlab_url", "https://gitlab.example.com"),
    ],
)  # fmt: skip
def test_valid_values(name: str, value: str, attr: str, expected: object) -> None:
    assert getattr(load_settings({name: value}), attr) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///threadline.db", "sqlite:///threadline.db"),
        ("sqlite:////var/lib/threadline/db.sqlite", "sqlite:////var/lib/threadline/db.sqlite"),
        ("postgres://u:p@db:5432/tl", "postgresql+psycopg://u:p@db:5432/tl"),
        (
            "postgresql://u:p@db/tl?sslmode=require",
            "postgresql+psycopg://u:p@db/tl?sslmode=require",
        ),
        ("postgresql+psycopg://u@db/tl", "postgresql+psycopg://u@db/tl"),
    ],
)
def test_database_url_is_normalized(url: str, expected: str) -> None:
    assert load_settings({"THREADLINE_DATABASE_URL": url}).database_url == expected
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://tl:hunter2-password@db/tl",
        "mysql+pymysql://tl:hunter2-password@db/tl",
        "postgresql+psycopg2://tl:hunter2-password@db/tl",
        "db.example.com/tl",
    ],
)
def test_database_url_other_than_sqlite_or_postgresql_is_refused(url: str) -> None:
    (problem,) = problems_of({"THREADLINE_DATABASE_URL": url})
    assert problem.startswith("THREADLINE_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    assert "hunter2-password" not in problem


# ---------------------------------------------------------------- the GitHub App key


def _one_line(pem: str) -> str:
    return pem.strip().replace("\n", "\\n")


def test_private_key_inline_with_literal_newlines(pem: str) -> None:
    settings = load_settings(
        {"THREADLINE_GITHUB_APP_ID": "1234", "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem)}
    )
    assert settings.github_app_id == 1234
    assert settings.github_private_key == pem
    assert settings.github_private_key.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert "\\n" not in settings.github_private_key


def test_private_key_inline_from_a_quoted_env_file_line(tmp_path: Path, pem: str) -> None:
    path = tmp_path / "t.env"
    path.write_text(
        f'THREADLINE_GITHUB_APP_ID=1234\nTHREADLINE_GITHUB_PRIVATE_KEY="{_one_line(pem)}"\n',
        encoding="utf-8",
    )
    assert load_settings({}, path).github_private_key == pem


def test_private_key_from_a_file(tmp_path: Path, pem: str) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem, encoding="ascii")
    settings = load_settings(
        {"THREADLINE_GITHUB_APP_ID": "1234", "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(key_file)}
    )
    assert settings.github_private_key == pem
    assert settings.unknown_variables == ()


def test_private_key_from_a_file_in_the_home_directory(
    tmp_path: Path, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "app.pem").write_text(pem, encoding="ascii")
    settings = load_settings(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY_PATH": "~/app.pem"}
    )
    assert settings.github_private_key == pem


def test_private_key_inline_and_path_together_is_an_error(tmp_path: Path, pem: str) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem, encoding="ascii")
    problems = problems_of(
        {
            "THREADLINE_GITHUB_APP_ID": "1234",
            "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem),
            "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(key_file),
        }
    )
    assert problems == [
        "set THREADLINE_GITHUB_PRIVATE_KEY or THREADLINE_GITHUB_PRIVATE_KEY_PATH, not both"
    ]


def test_private_key_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    (problem,) = problems_of(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(missing)}
    )
    assert problem.startswith(f"cannot read THREADLINE_GITHUB_PRIVATE_KEY_PATH {missing}")


def test_private_key_path_to_something_else(tmp_path: Path) -> None:
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text(f"{LEAK}\n", encoding="utf-8")
    (problem,) = problems_of(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(not_a_key)}
    )
    assert problem == (
        f"THREADLINE_GITHUB_PRIVATE_KEY_PATH {not_a_key} does not look like a PEM private key"
    )
    assert LEAK not in problem


def test_app_id_without_a_key_is_an_error() -> None:
    assert problems_of({"THREADLINE_GITHUB_APP_ID": "1234"}) == [
        "a GitHub App needs both THREADLINE_GITHUB_APP_ID and THREADLINE_GITHUB_PRIVATE_KEY"
    ]


def test_key_without_an_app_id_is_an_error(pem: str) -> None:
    (problem,) = problems_of({"THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem)})
    assert "needs both" in problem


def test_invalid_inline_key_does_not_echo_it() -> None:
    (problem,) = problems_of(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY": LEAK}
    )
    assert "does not look like a PEM private key" in problem
    assert LEAK not in problem


# ---------------------------------------------------------------- serving problems and warnings


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"THREADLINE_GITHUB_TOKEN": LONG_SECRET}, "THREADLINE_GITHUB_WEBHOOK_SECRET"),
        ({"THREADLINE_GITLAB_TOKEN": LONG_SECRET}, "THREADLINE_GITLAB_WEBHOOK_TOKEN"),
    ],
)
def test_serving_problems_without_webhook_secret(environ: dict[str, str], needle: str) -> None:
    (problem,) = load_settings(environ).serving_problems()
    assert needle in problem
    assert "forged" in problem
    assert LONG_SECRET not in problem


def test_serving_problems_for_a_github_app_without_webhook_secret(pem: str) -> None:
    settings = load_settings(
        {"THREADLINE_GITHUB_APP_ID": "1234", "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem)}
    )
    assert settings.github_enabled
    (problem,) = settings.serving_problems()
    assert "THREADLINE_GITHUB_WEBHOOK_SECRET" in problem


def test_serving_problems_lists_both_hosts() -> None:
    settings = load_settings(
        {"THREADLINE_GITHUB_TOKEN": LONG_SECRET, "THREADLINE_GITLAB_TOKEN": LONG_SECRET}
    )
    assert len(settings.serving_problems()) == 2


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"THREADLINE_GITHUB_WEBHOOK_SECRET": LONG_SECRET},
        {"THREADLINE_GITHUB_TOKEN": "t", "THREADLINE_GITHUB_WEBHOOK_SECRET": LONG_SECRET},
        {"THREADLINE_GITLAB_TOKEN": "t", "THREADLINE_GITLAB_WEBHOOK_TOKEN": LONG_SECRET},
        {"THREADLINE_GITLAB_WEBHOOK_TOKEN": LONG_SECRET},
    ],
)
def test_no_serving_problems_with_webhook_secrets(environ: dict[str, str]) -> None:
    assert load_settings(environ).serving_problems() == []


def test_serving_problems_with_an_app_and_its_secret(pem: str) -> None:
    settings = load_settings(
        {
            "THREADLINE_GITHUB_APP_ID": "1234",
            "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem),
            "THREADLINE_GITHUB_WEBHOOK_SECRET": LONG_SECRET,
        }
    )
    assert settings.serving_problems() == []
    assert settings.warnings() == []


def test_warning_when_no_host_is_configured() -> None:
    assert load_settings({}).warnings() == [
        "no host is configured: both webhook endpoints answer 404"
    ]


@pytest.mark.parametrize(
    ("environ", "warned"),
    [
        (
            {"THREADLINE_GITHUB_WEBHOOK_SECRET": "s3cr3t", "THREADLINE_GITHUB_TOKEN": "t"},
            "THREADLINE_GITHUB_WEBHOOK_SECRET is shorter than 16 characters",
        ),
        (
            {"THREADLINE_GITLAB_WEBHOOK_TOKEN": "x" * 15, "THREADLINE_GITLAB_TOKEN": "t"},
            "THREADLINE_GITLAB_WEBHOOK_TOKEN is shorter than 16 characters",
        ),
        (
            {"THREADLINE_GITHUB_WEBHOOK_SECRET": LONG_SECRET},
            "GitHub deliveries are accepted but Threadline cannot write back",
        ),
        (
            {"THREADLINE_GITLAB_WEBHOOK_TOKEN": LONG_SECRET},
            "GitLab deliveries are accepted but Threadline cannot write back",
        ),
        (
            {"THREADLINE_GITHUB_TOKEN": "t" * 20, "THREADLINE_GITHUB_POLL_SECONDS": "5"},
            "THREADLINE_GITHUB_POLL_SECONDS is set, but poll mode reads a GitHub App's",
        ),
    ],
)
def test_warnings(environ: dict[str, str], warned: str) -> None:
    (warning,) = load_settings(environ).warnings()
    assert warning.startswith(warned)
    assert all(value not in warning for value in environ.values() if len(value) > 1)


def test_no_short_secret_warning_at_sixteen_characters() -> None:
    settings = load_settings(
        {"THREADLINE_GITLAB_WEBHOOK_TOKEN": "x" * 16, "THREADLINE_GITLAB_TOKEN": "t"}
    )
    assert settings.warnings() == []


def test_unknown_threadline_variables_are_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "t.env"
    path.write_text("THREADLINE_DATABSE_URL=sqlite:///x.db\nDATABASE_URL=x\n", encoding="utf-8")
    settings = load_settings(
        {"THREADLINE_PROT": "3001", "THREADLINE_GITHUB_TOKEN": "t", "HOME": "/root"}, path
    )
    assert settings.port == 3000
    assert settings.unknown_variables == (
        "DATABASE_URL",
        "THREADLINE_DATABSE_URL",
        "THREADLINE_PROT",
    )
    warnings = settings.warnings()
    assert "unknown variable THREADLINE_PROT is ignored" in warnings
    assert "unknown variable THREADLINE_DATABSE_URL is ignored" in warnings
    assert not any("HOME" in w for w in warnings)


# ---------------------------------------------------------------- describe


def _rows(settings: Settings) -> dict[str, tuple[str, str]]:
    return {name: (shown, note) for name, shown, note in describe(settings)}


SECRET_VARIABLES = (
    "THREADLINE_GITHUB_WEBHOOK_SECRET",
    "THREADLINE_GITHUB_TOKEN",
    "THREADLINE_GITLAB_TOKEN",
    "THREADLINE_GITLAB_WEBHOOK_TOKEN",
)


def test_describe_never_shows_a_secret(pem: str) -> None:
    environ = {name: LEAK for name in SECRET_VARIABLES}
    environ |= {"THREADLINE_GITHUB_APP_ID": "1234", "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(pem)}
    settings = load_settings(environ)
    rows = describe(settings)
    text = repr(rows)
    assert LEAK not in text
    assert "PRIVATE KEY" not in text
    assert pem.splitlines()[1] not in text
    by_name = _rows(settings)
    for name in SECRET_VARIABLES:
        assert by_name[name] == (mask(LEAK), "")
    assert by_name["THREADLINE_GITHUB_PRIVATE_KEY"] == (mask(pem), "")
    assert mask(LEAK) == f"set ({len(LEAK)} characters, hidden)"
    assert LEAK not in repr(settings)
    assert pem.splitlines()[1] not in repr(settings)


def test_describe_lists_every_setting_and_marks_unset_and_default_values() -> None:
    rows = describe(load_settings({}))
    by_name = {name: (shown, note) for name, shown, note in rows}
    # Every setting, those read specially (the key's file, the env file) included.
    assert [name for name, _, _ in rows] == [s.env for s in SETTINGS]
    assert "THREADLINE_GITHUB_PRIVATE_KEY_PATH" in by_name
    assert "THREADLINE_ENV_FILE" in by_name
    unset = (
        *SECRET_VARIABLES,
        "THREADLINE_GITHUB_APP_ID",
        "THREADLINE_GITHUB_PRIVATE_KEY",
        "THREADLINE_GITHUB_PRIVATE_KEY_PATH",
        "THREADLINE_ENV_FILE",
    )
    for name in unset:
        assert by_name[name] == ("-", "not set, optional")
    assert "missing" not in repr(rows)
    assert by_name["THREADLINE_DATABASE_URL"] == ("sqlite:///threadline.db", "default")
    assert by_name["THREADLINE_PORT"] == ("3000", "default")
    assert by_name["THREADLINE_AUTO_MIGRATE"] == ("true", "default")
    assert by_name["THREADLINE_BOT_NAME"] == ("threadline", "default")
    assert by_name["THREADLINE_WORKER_POLL_SECONDS"] == ("1.0", "default")
    assert by_name["THREADLINE_GITHUB_API_URL"] == ("https://api.github.com", "default")


def test_describe_shows_changed_values_without_the_default_note() -> None:
    by_name = _rows(
        load_settings(
            {
                "THREADLINE_PORT": "8080",
                "THREADLINE_AUTO_MIGRATE": "no",
                "THREADLINE_BOT_NAME": "threadline,tl-helper",
                "THREADLINE_GITHUB_API_URL": "https://ghe.example.com/api/v3/",
            }
        )
    )
    assert by_name["THREADLINE_PORT"] == ("8080", "")
    assert by_name["THREADLINE_AUTO_MIGRATE"] == ("false", "")
    assert by_name["THREADLINE_BOT_NAME"] == ("threadline,tl-helper", "")
    assert by_name["THREADLINE_GITHUB_API_URL"] == ("https://ghe.example.com/api/v3", "")


def test_describe_shows_the_key_file_and_the_env_file(tmp_path: Path, pem: str) -> None:
    key = tmp_path / "app.pem"
    key.write_text(pem, encoding="utf-8")
    env_file = tmp_path / "t.env"
    env_file.write_text(f"THREADLINE_GITHUB_PRIVATE_KEY_PATH={key}\n", encoding="utf-8")
    by_name = _rows(load_settings({"THREADLINE_GITHUB_APP_ID": "7"}, env_file))
    assert by_name["THREADLINE_GITHUB_PRIVATE_KEY_PATH"] == (str(key), "")
    assert by_name["THREADLINE_ENV_FILE"] == (str(env_file), "")
    assert by_name["THREADLINE_GITHUB_PRIVATE_KEY"] == (mask(pem), "")


def test_describe_hides_the_database_password() -> None:
    settings = load_settings({"THREADLINE_DATABASE_URL": f"postgresql://threadline:{LEAK}@db/tl"})
    assert settings.database_url == f"postgresql+psycopg://threadline:{LEAK}@db/tl"
    assert LEAK not in repr(describe(settings))


def test_env_file_error_does_not_quote_a_line_of_a_private_key(tmp_path: Path, pem: str) -> None:
    path = tmp_path / "t.env"
    path.write_text(
        f'THREADLINE_GITHUB_APP_ID=1234\nTHREADLINE_GITHUB_PRIVATE_KEY="{pem.strip()}"\n',
        encoding="utf-8",
    )
    key_line = pem.splitlines()[1]
    problems = problems_of({}, path)
    assert not any(key_line[:20] in problem for problem in problems)


# A key that looks like PEM but is not a usable GitHub App key: each is found when the
# settings load, named in words of ours, and never quoted.


def broken_keys(pem: str) -> dict[str, tuple[str, str]]:
    """Malformed keys by kind: (the PEM, what the problem says)."""
    lines = pem.strip().splitlines()
    cut = "\n".join([*lines[:4], lines[-1]]) + "\n"
    body = lines[1:-1]
    body[3] = body[3][:10] + ("A" if body[3][10] != "A" else "B") + body[3][11:]
    altered = "\n".join([lines[0], *body, lines[-1]]) + "\n"
    ec = ec_key_pem()
    encrypted = encrypted_key_pem()
    return {
        "cut short": (cut, "cannot be read as a PEM private key"),
        "altered": (altered, "cannot be read as a PEM private key"),
        "not base64": (f"{lines[0]}\n{LEAK}!!\n{lines[-1]}\n", "cannot be read as a PEM"),
        "not RSA": (ec, "is not an RSA key"),
        "encrypted": (encrypted, "is encrypted with a passphrase"),
        "not ASCII": (f"{lines[0]}\n{body[0]}é\n{lines[-1]}\n", "not ASCII"),
    }


def ec_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )


def encrypted_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        .decode("ascii")
    )


KINDS = ("cut short", "altered", "not base64", "not RSA", "encrypted", "not ASCII")


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_private_key_is_refused_when_settings_load(
    kind: str, pem: str, tmp_path: Path
) -> None:
    bad, says = broken_keys(pem)[kind]
    secret_lines = [line for line in bad.splitlines() if "-----" not in line]

    (inline,) = problems_of(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY": _one_line(bad)}
    )
    assert inline.startswith("THREADLINE_GITHUB_PRIVATE_KEY ")
    assert says in inline

    key_file = tmp_path / "app.pem"
    key_file.write_text(bad, encoding="utf-8")
    (from_file,) = problems_of(
        {"THREADLINE_GITHUB_APP_ID": "1", "THREADLINE_GITHUB_PRIVATE_KEY_PATH": str(key_file)}
    )
    assert from_file.startswith(f"THREADLINE_GITHUB_PRIVATE_KEY_PATH {key_file} ")
    assert says in from_file
    for problem in (inline, from_file):
        assert all(line[:12] not in problem for line in secret_lines if len(line) >= 12)
        assert LEAK not in problem


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("127.0.0.1:9100", "127.0.0.1:9100"),
        ("[::1]:9100", "[::1]:9100"),
        (" 0.0.0.0:0 ", "0.0.0.0:0"),
    ],
)
def test_the_metrics_address_is_host_and_port(given: str, kept: str) -> None:
    assert load_settings({"THREADLINE_METRICS_ADDRESS": given}).metrics_address == kept


@pytest.mark.parametrize("given", ["9100", ":9100", "localhost:http", "localhost:70000"])
def test_a_bad_metrics_address_is_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="THREADLINE_METRICS_ADDRESS"):
        load_settings({"THREADLINE_METRICS_ADDRESS": given})
