"""The deployment files (Dockerfile, compose.yaml) and the declared dependencies agree with
the code: checked without a container engine, by reading the files."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine

from bot.app import create_app
from bot.cli import build_parser
from bot.config import SETTINGS, Settings, load_settings
from bot.inbox import Inbox

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
KNOWN_VARIABLES = {s.env for s in SETTINGS}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        assert word.isupper(), f"not an instruction: {whole!r}"
        instructions.append((word, rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def args_of(text: str) -> list[str]:
    """An instruction's arguments: exec form (a JSON array) or shell form."""
    if text.startswith("["):
        parsed = yaml.safe_load(text)  # a JSON array is YAML too
        assert isinstance(parsed, list)
        return [str(a) for a in parsed]
    return shlex.split(text)


def env_of(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(text))


def test_the_dockerfile_builds_a_slim_non_root_image_like_the_readme_installs() -> None:
    steps = dockerfile()
    words = [w for w, _ in steps]
    assert words[0] == "FROM"
    image = steps[0][1]
    assert re.fullmatch(r"python:3\.1[1-9]-slim", image), image
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert image.split(":")[1].removesuffix("-slim") >= minimum

    runs = [rest for w, rest in steps if w == "RUN"]
    assert "pip install ." in runs  # the README's production install
    # Every copied source exists.
    for word, rest in steps:
        if word == "COPY":
            *sources, _ = args_of(rest)
            for source in sources:
                assert (ROOT / source).exists(), source

    users = [rest for w, rest in steps if w == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    # The user is set before the command runs and after anything that needs root.
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert words.index("USER") < words.index("CMD")


def test_the_dockerfile_names_what_the_code_has() -> None:
    steps = dockerfile()
    env: dict[str, str] = {}
    for word, rest in steps:
        if word == "ENV":
            env |= env_of(rest)
    threadline = {k: v for k, v in env.items() if k.startswith("THREADLINE_")}
    assert set(threadline) <= KNOWN_VARIABLES
    assert threadline["THREADLINE_HOST"] == "0.0.0.0"  # noqa: S104 (a container's listen address)
    settings = load_settings(threadline)  # the values are valid settings
    assert settings.port == Settings().port

    [exposed] = [rest for w, rest in steps if w == "EXPOSE"]
    assert int(exposed) == settings.port

    [command] = [args_of(rest) for w, rest in steps if w == "CMD"]
    assert command[0] in PYPROJECT["project"]["scripts"]
    assert command[1:] == ["serve"]
    build_parser().parse_args(command[1:])

    [check] = [rest for w, rest in steps if w == "HEALTHCHECK"]
    assert "CMD" in check
    assert "/healthz" in check
    assert "THREADLINE_PORT" in check
    # The probe is valid Python.
    probe = args_of(check.split("CMD", 1)[1].strip())
    assert probe[:2] == ["python", "-c"]
    ast.parse(probe[2])


def test_the_probed_route_exists() -> None:
    engine = create_engine("sqlite://")  # never connected: building the app reads nothing
    try:
        app = create_app(Settings(), inbox=Inbox(engine))
        paths = {r.get_info().get("path") for r in app.router.resources()}
    finally:
        engine.dispose()
    assert "/healthz" in paths


# ---------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services(compose: dict[str, object]) -> dict[str, dict[str, object]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def test_compose_has_postgresql_a_web_service_and_scalable_workers(
    compose: dict[str, object],
) -> None:
    found = services(compose)
    assert str(found["db"]["image"]).startswith("postgres:")
    assert found["web"]["command"] == ["threadline", "serve", "--workers", "0", "--no-migrate"]
    assert found["worker"]["command"] == ["threadline", "worker", "--no-migrate"]
    assert found["migrate"]["command"] == ["threadline", "db", "upgrade"]
    # Scalable: no fixed name or published port that a second copy would collide on.
    worker = found["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}  # the image probes HTTP; workers serve none
    # Web and workers start after the schema upgrade finished.
    for name in ("web", "worker"):
        assert found[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }


def test_compose_commands_and_settings_match_the_code(compose: dict[str, object]) -> None:
    parser = build_parser()
    for name, service in services(compose).items():
        if name == "db":
            continue
        command = service["command"]
        assert isinstance(command, list)
        assert command[0] in PYPROJECT["project"]["scripts"]
        parser.parse_args(command[1:])
        environment = service["environment"]
        assert isinstance(environment, dict)
        assert set(environment) <= KNOWN_VARIABLES, name
        url = str(environment["THREADLINE_DATABASE_URL"])
        resolved = url.replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "pw")
        settings = load_settings(
            {k: str(v) for k, v in environment.items()} | {"THREADLINE_DATABASE_URL": resolved}
        )
        assert settings.database_url.startswith("postgresql+psycopg://threadline:pw@db:5432/")
        assert settings.auto_migrate is False
    [published] = services(compose)["web"]["ports"]
    host_port, container_port = str(published).split(":")
    assert int(container_port) == Settings().port
    assert host_port.isdigit()


# ---------------------------------------------------------------- dependencies and the README

# Distribution name -> the module our code imports it as; psycopg is SQLAlchemy's driver,
# named in the database URL rather than imported.
IMPORTED_AS = {
    "aiohttp": "aiohttp",
    "gidgethub": "gidgethub",
    "uritemplate": "uritemplate",
    "python-gitlab": "gitlab",
    "SQLAlchemy": "sqlalchemy",
    "alembic": "alembic",
    "APScheduler": "apscheduler",
    "psycopg": None,
    "PyJWT": "jwt",
    "cryptography": "cryptography",
    "PyYAML": "yaml",
    "openai": "openai",
    "anthropic": "anthropic",
    "Jinja2": "jinja2",
    "orjson": "orjson",
    "prometheus_client": "prometheus_client",
    "mcp": "mcp",
}


def imported_modules() -> set[str]:
    found: set[str] = set()
    for folder in ("bot", "handlers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def test_every_declared_dependency_is_used_and_pygithub_is_gone() -> None:
    declared = [
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0]
        for spec in PYPROJECT["project"]["dependencies"]
    ]
    assert "PyGithub" not in declared
    assert set(declared) == set(IMPORTED_AS)  # a new dependency gets a line above
    used = imported_modules()
    unused = [name for name in declared if IMPORTED_AS[name] and IMPORTED_AS[name] not in used]
    assert unused == []
    assert "github" not in used  # PyGithub's module: nothing imports it
    assert "postgresql+psycopg://" in (ROOT / "bot" / "config.py").read_text(encoding="utf-8")
    assert "gidgethub" in README


def test_the_readme_explains_running_in_production() -> None:
    section = README.split("## Running in production", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "PostgreSQL",
        "docker compose up",
        "--scale worker=",
        "threadline db upgrade",
        "THREADLINE_OPERATOR_TOKEN",
        "THREADLINE_GITHUB_PRIVATE_KEY_PATH",
        "pg_dump",
        "/healthz",
        "pip install .",
    ):
        assert needed in section, needed


def test_the_production_env_example_names_only_real_settings() -> None:
    text = (ROOT / "examples" / "production.env").read_text(encoding="utf-8")
    names = re.findall(r"^#?\s*(THREADLINE_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert names
    assert set(names) <= KNOWN_VARIABLES
    assert "THREADLINE_DATABASE_URL" not in names  # compose.yaml sets it
