"""Process wiring: one engine, the web app and the workers, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import Engine

from bot.config import Settings
from bot.db import make_engine
from bot.db.migrate import current_revision, head_revision, upgrade
from bot.history import CommentHistory
from bot.inbox import Inbox
from bot.installations import InstallationStore
from bot.outbox import Outbox
from bot.runtime import Runtime
from bot.web import create_app
from bot.worker import Dispatcher, Worker
from handlers import build_router

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The process cannot start; the message says what to do."""


@dataclass
class Services:
    engine: Engine
    inbox: Inbox
    outbox: Outbox
    runtime: Runtime


def open_services(settings: Settings, *, migrate: bool) -> Services:
    """Connect to the database and check (or bring up to date) its schema."""
    engine = make_engine(settings.database_url)
    try:
        if migrate:
            upgrade(engine)
        else:
            current, head = current_revision(engine), head_revision(engine)
            if current != head:
                raise StartupError(
                    f"the database schema is at {current or 'nothing'}, this release needs {head}: "
                    "run `threadline db upgrade` first"
                )
    except StartupError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        raise StartupError(f"cannot use the database: {type(exc).__name__}: {exc}") from exc
    outbox = Outbox(engine)
    runtime = Runtime(
        history=CommentHistory(engine), installations=InstallationStore(engine), outbox=outbox
    )
    return Services(engine, Inbox(engine), outbox, runtime)


def make_workers(settings: Settings, services: Services, count: int) -> list[Worker]:
    dispatcher = Dispatcher(build_router(), services.runtime, settings.bot_names)
    return [
        Worker(
            services.inbox,
            dispatcher,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
            max_attempts=settings.delivery_max_attempts,
            retry_seconds=settings.delivery_retry_seconds,
        )
        for _ in range(count)
    ]


def waker(workers: list[Worker]) -> Callable[[], None]:
    """A callback that wakes every worker at once (ingress calls it after each commit)."""

    def wake() -> None:
        for worker in workers:
            worker.wakeup.set()

    return wake


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve(
    settings: Settings,
    *,
    workers: int = 1,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run ingress and `workers` workers until SIGINT/SIGTERM (or `stop`)."""
    problems = settings.serving_problems()
    if problems:
        raise StartupError("refusing to start: " + " ".join(problems))
    services = await asyncio.to_thread(open_services, settings, migrate=settings.auto_migrate)
    crew = make_workers(settings, services, workers)
    app = create_app(settings, inbox=services.inbox, on_stored=waker(crew))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
            ) from exc
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        log.info("listening on %s (webhooks at %s/webhooks/github and /webhooks/gitlab)", url, url)
        for warning in settings.warnings():
            log.warning("%s", warning)
        if on_listening:
            on_listening(url)
        tasks = [asyncio.create_task(w.run(stop)) for w in crew]
        await stop.wait()
        log.info("stopping: finishing deliveries in hand")
        await asyncio.gather(*tasks)
    finally:
        await runner.cleanup()
        services.engine.dispose()


async def work(settings: Settings, *, workers: int = 1, stop: asyncio.Event | None = None) -> None:
    """Run workers only (no web server) until SIGINT/SIGTERM (or `stop`)."""
    services = await asyncio.to_thread(open_services, settings, migrate=settings.auto_migrate)
    crew = make_workers(settings, services, workers)
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    try:
        await asyncio.gather(*(w.run(stop) for w in crew))
    finally:
        services.engine.dispose()
