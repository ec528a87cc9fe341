"""Shared fixtures: a real database of each kind, and the app served over loopback HTTP.

Every test that takes `database_url` (or anything built on it) runs twice: on a SQLite
file and on the PostgreSQL server at 127.0.0.1:5432, in a schema of its own. Without
PostgreSQL those runs are skipped locally and fail in CI (CI=true), where it must be up.

Migrating costs more than most tests, so each test process migrates once per backend and
copies the result into a test's still-empty database (`seed_schema`): the `engine`
fixture and `run_app` start from it. Migrating from empty stays tested where it matters:
`threadline db upgrade` and every test that starts the CLI as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.app import create_app
from bot.config import Settings
from bot.db import is_sqlite, make_engine
from bot.db.migrate import current_revision, head_revision, upgrade
from bot.inbox import Inbox
from bot.runtime import Runtime
from bot.server import background, open_services
from bot.sessions.turns import TurnRunner
from bot.worker import Worker
from bot.workspaces import sandbox as sb
from tests.payloads import GITLAB_TOKEN, SECRET
from tests.procs import Proc

POSTGRES_URL = os.environ.get(
    "THREADLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def end_backends(url: str, application_name: str) -> int:
    """End (pg_terminate_backend) the PostgreSQL connections named `application_name`,
    as a server restart would; how many were ended."""
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": application_name},
                ).scalar_one()
            )
    finally:
        admin.dispose()


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    problem = postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    schema = f"tl_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


class _Template:
    """The migrated schema, made once per test process and per backend, to copy from."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.sqlite_file: Path | None = None
        # What migrating an empty PostgreSQL schema sent, as the driver got it.
        self.postgres_script: list[tuple[str, str, object]] | None = None
        self.head: str | None = None

    def sqlite(self) -> Path:
        if self.sqlite_file is None:
            self.dir = Path(tempfile.mkdtemp(prefix="threadline-template-"))
            path = self.dir / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            try:
                upgrade(engine)
                self.head = current_revision(engine)
            finally:
                engine.dispose()
            self.sqlite_file = path
        return self.sqlite_file

    def postgres(self) -> list[tuple[str, str, object]]:
        if self.postgres_script is None:
            script: list[tuple[str, str, object]] = []
            with postgres_schema() as url:
                schema = url.rsplit("%3D", 1)[1]
                engine = make_engine(url)

                @event.listens_for(engine, "do_execute")
                def _one(cursor: object, statement: str, params: object, _ctx: object) -> None:
                    script.append(("execute", statement, params))

                @event.listens_for(engine, "do_executemany")
                def _many(cursor: object, statement: str, params: object, _ctx: object) -> None:
                    script.append(("executemany", statement, params))

                @event.listens_for(engine, "do_execute_no_params")
                def _bare(cursor: object, statement: str, _ctx: object) -> None:
                    script.append(("bare", statement, None))

                try:
                    upgrade(engine)
                    self.head = current_revision(engine)
                finally:
                    engine.dispose()
            # The advisory lock is `upgrade`'s own; everything else went to the schema
            # by search_path, never by its name (or the copies would write to it).
            script = [s for s in script if "pg_advisory" not in s[1]]
            assert not any(schema in s[1] or schema in repr(s[2]) for s in script)
            self.postgres_script = script
        return self.postgres_script

    def cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


_TEMPLATE = _Template()


@pytest.fixture(scope="session", autouse=True)
def _template_cleanup() -> Iterator[None]:
    yield
    _TEMPLATE.cleanup()


def seed_schema(url: str) -> None:
    """Give a still-empty test database the migrated schema, copied from the template;
    a database that has anything in it already is left alone."""
    if is_sqlite(url):
        database = make_url(url).database
        assert database, url
        target = Path(database)
        if target.exists() and target.stat().st_size:
            return
        source = sqlite3.connect(_TEMPLATE.sqlite())
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
        return
    script = _TEMPLATE.postgres()
    engine = create_engine(url, poolclass=NullPool)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            )
            row = cursor.fetchone()
            if row is None or row[0]:
                raw.rollback()
                return
            for kind, statement, params in script:
                if kind == "execute":
                    cursor.execute(statement, params)
                elif kind == "executemany":
                    cursor.executemany(statement, params)
                else:
                    cursor.execute(statement)
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


def assert_current(engine: Engine) -> None:
    assert current_revision(engine) == (_TEMPLATE.head or head_revision(engine))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'threadline.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    seed_schema(database_url)
    engine = make_engine(database_url)
    assert_current(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        port=0,
        github_webhook_secret=SECRET,
        gitlab_webhook_token=GITLAB_TOKEN,
        bot_names=("threadline",),
        worker_poll_seconds=0.05,
        worker_lease_seconds=5.0,
        delivery_retry_seconds=0.0,
        order_hold_seconds=0.0,
    )


@dataclass
class Running:
    """The app on a loopback port, its services, and a client session to talk to it."""

    url: str
    http: aiohttp.ClientSession
    inbox: Inbox
    runtime: Runtime
    engine: Engine
    workers: list[Worker]
    runner: TurnRunner | None = None  # the session turn runner (None without workers)

    async def drain(self, within: float = 10.0) -> None:
        """Wait until no delivery is pending or being processed."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            counts = await asyncio.to_thread(self.inbox.counts)
            if not counts.get("pending") and not counts.get("processing"):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"deliveries still in progress: {counts}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def run_app(settings: Settings, *, workers: int = 1, port: int = 0) -> AsyncIterator[Running]:
    """The app as `threadline serve` runs it, on a loopback port (`port`, or any free
    one), in this event loop (on a new database, from the migrated template; serve's own
    migration then finds nothing to do)."""
    await asyncio.to_thread(seed_schema, settings.database_url)
    services = await asyncio.to_thread(open_services, settings, migrate=True)
    stop = asyncio.Event()
    try:
        async with background(settings, services, workers) as crew:
            runner = web.AppRunner(
                create_app(
                    settings,
                    inbox=services.inbox,
                    on_stored=crew.wake_workers,
                    scrubber=services.scrubber,
                    runtime=services.runtime,
                )
            )
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            host, port = runner.addresses[0][:2]
            tasks = crew.start(stop)
            try:
                async with aiohttp.ClientSession() as http:
                    yield Running(
                        f"http://{host}:{port}",
                        http,
                        services.inbox,
                        services.runtime,
                        services.engine,
                        crew.workers,
                        crew.runner,
                    )
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                await runner.cleanup()
    finally:
        services.engine.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with run_app(settings) as running:
        yield running


@pytest.fixture
async def ingress_only(settings: Settings) -> AsyncIterator[Running]:
    """The app with no worker, so stored deliveries stay pending."""
    async with run_app(settings, workers=0) as running:
        yield running


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            proc.stop(signal.SIGKILL)


def with_settings(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow run first: they mostly wait (on subprocesses, a browser, a
    time limit), so in parallel runs they wait alongside the rest, not after it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Tests of the sandbox and of workspaces run wherever bubblewrap is; without it they are
# skipped, except in CI, where they must run (.ci/run installs it).
BWRAP_MISSING = sb.bwrap_path() is None and not os.environ.get("CI")
needs_bwrap = pytest.mark.skipif(BWRAP_MISSING, reason="bubblewrap is not installed")


@pytest.fixture
def workspace_dir() -> Iterator[Path]:
    """THREADLINE_WORKSPACE_DIR for one test: outside tmp_path, whose parents the sandbox
    user cannot reach."""
    folder = Path(tempfile.mkdtemp(prefix="tl-ws-"))
    os.chmod(folder, 0o755)  # noqa: S103 (the sandbox user must reach the worktrees)
    yield folder
    shutil.rmtree(folder)
