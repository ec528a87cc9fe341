"""Shared fixtures: a real database of each kind, and the app served over loopback HTTP.

Every test that takes `database_url` (or anything built on it) runs twice: on a SQLite
file and on the PostgreSQL server at 127.0.0.1:5432, in a schema of its own. Without
PostgreSQL those runs are skipped locally and fail in CI (CI=true), where it must be up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine, create_engine, text

from bot.config import Settings
from bot.db import make_engine
from bot.db.migrate import upgrade
from bot.inbox import Inbox
from bot.runtime import Runtime
from bot.server import background, open_services
from bot.web import create_app
from bot.worker import Worker
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'threadline.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
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
async def run_app(settings: Settings, *, workers: int = 1) -> AsyncIterator[Running]:
    """The app as `threadline serve` runs it, on a loopback port, in this event loop."""
    services = await asyncio.to_thread(open_services, settings, migrate=True)
    stop = asyncio.Event()
    try:
        async with background(settings, services, workers) as crew:
            runner = web.AppRunner(
                create_app(settings, inbox=services.inbox, on_stored=crew.wake_workers)
            )
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
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
