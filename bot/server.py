"""Process wiring: one engine, the web app and the workers, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Engine

from bot import outbox as ob
from bot.app import create_app
from bot.config import Settings
from bot.db import describe_error, make_engine
from bot.db.migrate import current_revision, head_revision, upgrade
from bot.history import CommentHistory
from bot.hosts import Hosts
from bot.hosts.github import GitHubApp
from bot.inbox import Inbox
from bot.installations import InstallationStore
from bot.loops import every
from bot.metrics import host_api_tracing
from bot.outbox import Outbox
from bot.poll import Poller
from bot.preflight import load_agents, startup_problems
from bot.redeliver import Reconciler
from bot.repo_configs import RepoConfigs
from bot.retention import DAY, Policy, Retention, RetentionJob
from bot.runtime import Runtime
from bot.schedules import Launcher, ScheduleRunner
from bot.sender import Sender
from bot.sessions.agents import Agents, session_options
from bot.sessions.service import SessionService, Timekeeper, TurnRunner
from bot.sessions.spawns import Spawner
from bot.sessions.store import SessionStore
from bot.slots import Slots
from bot.web.metrics import serve_metrics
from bot.web.playground import playground_link
from bot.web.redact import Scrubber
from bot.web.run_token import print_login_link, settle_operator_token
from bot.worker import Dispatcher, Worker
from bot.workspaces.runtime import from_settings as workspace_runtime
from handlers import build_router

log = logging.getLogger(__name__)

RETENTION_FIRST_SECONDS = 300.0  # the first daily retention run, after start-up has settled
SPAWN_SWEEP_SECONDS = 5.0  # how often spawns whose child ended unsettled are looked for


class StartupError(Exception):
    """The process cannot start; the message says what to do."""


@dataclass
class Services:
    engine: Engine
    inbox: Inbox
    outbox: Outbox
    runtime: Runtime
    # Every configured secret (settings and the agents file's provider keys), built once:
    # every output surface (web answers, CLI transcripts) passes it.
    scrubber: Scrubber


def open_services(settings: Settings, *, migrate: bool) -> Services:
    """Read the agents file, connect to the database and check (or update) its schema.

    A broken agents file raises ConfigError with every problem and its line.
    """
    config = load_agents(settings)
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
        raise StartupError(
            f"cannot use the database: {describe_error(settings.database_url, exc)}"
        ) from exc
    outbox = Outbox(engine)
    runtime = Runtime(
        history=CommentHistory(engine),
        installations=InstallationStore(engine),
        outbox=outbox,
        config=config,
        bot_names=settings.bot_names,
    )
    return Services(engine, Inbox(engine), outbox, runtime, Scrubber.configured(settings, config))


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
            hold_seconds=settings.order_hold_seconds,
        )
        for _ in range(count)
    ]


@dataclass
class Crew:
    """The background work of one process: delivery workers, the outbox sender, the
    session turn runner and timers."""

    workers: list[Worker]
    sender: Sender | None = None
    runner: TurnRunner | None = None
    timekeeper: Timekeeper | None = None
    periodic: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(
        default_factory=list
    )

    def wake_workers(self) -> None:
        """Ingress calls this after each commit, so new deliveries are picked up at once."""
        for worker in self.workers:
            worker.wakeup.set()

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        loops = [w.run(stop) for w in self.workers]
        parts = (self.sender, self.runner, self.timekeeper)
        loops += [part.run(stop) for part in parts if part is not None]
        loops += [job(stop) for job in self.periodic]
        return [asyncio.create_task(loop) for loop in loops]


def make_sessions(
    settings: Settings, services: Services, hosts: Hosts, sender: Sender
) -> tuple[SessionService, TurnRunner, Timekeeper]:
    """The session runtime of this process, writing through the outbox."""
    config = services.runtime.config

    async def permission(host: str, installation_id: int | None, repo: str, login: str) -> str:
        return await hosts.client(host, installation_id).permission(repo, login)

    service = SessionService(
        SessionStore(services.engine),
        agents=Agents(config),
        options=session_options(config.sessions),
        max_live=config.sessions.max_live_sessions,
        enqueue=services.outbox.enqueue,
        wake_sender=sender.wakeup.set,
        permission=permission,
        host_for=lambda session: hosts.client(session.thread.host, session.installation_id),
    )
    runner = TurnRunner(
        service,
        lease_seconds=settings.worker_lease_seconds,
        poll_seconds=settings.worker_poll_seconds,
    )
    service.branch_template = config.sessions.branch_template
    service.host_client = hosts.client
    service.public_url = settings.public_url
    service.holds.limits = config.limits
    service.show_cost = config.status.show_cost
    service.workspaces = workspace_runtime(
        settings, hosts, branch_template=config.sessions.branch_template
    )
    service.exclude_starter = config.sessions.approval_excludes_starter
    timekeeper = Timekeeper(service)
    service.wake_runner = runner.wakeup.set
    service.seat_turn, service.adopt_turn = runner.seat, runner.adopt
    runner.spawns = Spawner(runner)
    service.deadline_changed = timekeeper.poke

    async def write_failed(row: ob.OutboxRow, error: str) -> None:
        await service.write_failed(row.key, row.kind, error)

    sender.on_failed = write_failed
    return service, runner, timekeeper


@contextlib.asynccontextmanager
async def background(settings: Settings, services: Services, workers: int) -> AsyncIterator[Crew]:
    """Workers and, where there are workers, the sender, sessions and timers, with host
    clients on one HTTP session."""
    timeout = aiohttp.ClientTimeout(total=settings.host_timeout_seconds)
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_address:
            url = await stack.enter_async_context(
                serve_metrics(settings.metrics_address, services.engine)
            )
            log.info("metrics at %s", url)
        # GitHub's API answers on the shared session, counted by status (bot.metrics).
        tracing = host_api_tracing(
            [("github", settings.github_api_url), ("github", settings.github_graphql_endpoint)]
        )
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=timeout, trace_configs=[tracing])
        )
        hosts = Hosts.from_settings(settings, http, engine=services.engine)
        crew = Crew(make_workers(settings, services, workers))
        try:
            if workers:
                crew.sender = Sender(
                    services.outbox,
                    hosts.client,
                    min_interval=settings.outbox_min_interval_seconds,
                    max_attempts=settings.outbox_max_attempts,
                    retry_seconds=settings.outbox_retry_seconds,
                    lease_seconds=settings.outbox_lease_seconds,
                    poll_seconds=settings.worker_poll_seconds,
                    ambiguous_wait=2 * settings.host_timeout_seconds,
                    # One send is a few host calls (token, marker lookup, write), each
                    # bounded by the host timeout; the lease is renewed meanwhile.
                    send_timeout=4 * settings.host_timeout_seconds,
                )
                sessions, crew.runner, crew.timekeeper = make_sessions(
                    settings, services, hosts, crew.sender
                )
                services.runtime.connect(
                    forget_installation=hosts.forget,
                    sessions=sessions,
                    repo_configs=RepoConfigs(
                        services.engine,
                        services.runtime.config,
                        lambda host, installation, repo, path: hosts.client(
                            host, installation
                        ).read_file(repo, path),
                    ),
                )
                await crew.timekeeper.start()
                if services.runtime.config.schedules:
                    schedules = ScheduleRunner(
                        services.engine,
                        services.runtime.config.schedules,
                        Launcher(services.runtime, hosts.client),
                    )
                    crew.periodic.append(schedules.run)
                if isinstance(crew.runner.spawns, Spawner):
                    sweep = crew.runner.spawns.sweep
                    crew.periodic.append(
                        functools.partial(every, SPAWN_SWEEP_SECONDS, job=sweep, first=1.0)
                    )
                retention = RetentionJob(
                    Retention(services.engine, Policy.from_settings(settings)),
                    Slots(services.engine).take,
                )
                # Soon after start, then daily; one process a day wins the slot and runs it.
                crew.periodic.append(
                    functools.partial(
                        every,
                        DAY,
                        job=functools.partial(asyncio.to_thread, retention.tick),
                        first=RETENTION_FIRST_SECONDS,
                    )
                )
                if sessions.workspaces is not None:
                    await sessions.workspaces.clean_orphans(sessions.store)
                polling = settings.github_poll_seconds
                if polling > 0 and isinstance(hosts.github, GitHubApp):
                    # Poll mode (bot.poll): GitHub cannot reach us, so asking it to
                    # redeliver would only fail again; the poller reads them all instead.
                    poller = Poller(
                        hosts.github, services.inbox, interval=polling, on_stored=crew.wake_workers
                    )
                    crew.periodic.append(
                        functools.partial(every, polling, job=poller.tick, first=0.0)
                    )
                minutes = settings.github_redelivery_minutes
                if minutes > 0 and isinstance(hosts.github, GitHubApp) and polling <= 0:
                    reconciler = Reconciler(hosts.github, services.engine, interval=minutes * 60)
                    # The first round soon after start: deliveries missed while we were down.
                    crew.periodic.append(
                        functools.partial(
                            every, minutes * 60, job=reconciler.tick, first=min(30, minutes * 60)
                        )
                    )
            yield crew
        finally:
            if crew.timekeeper is not None:
                await crew.timekeeper.stop()
            if crew.runner is not None:
                await crew.runner.service.agents.close()
            hosts.close()


def _awaiting(coro: object) -> str:
    """Where a suspended coroutine waits: each coroutine it awaits, outermost first."""
    found: list[str] = []
    while coro is not None and len(found) < 16:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            found.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(found) or repr(coro)


async def finish(tasks: list[asyncio.Task[None]], *, report_every: float = 5.0) -> None:
    """Wait for the background loops to end, naming every few seconds those still busy
    (and where), so a stop that hangs says why."""
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=report_every)
        for task in pending:
            log.warning("still finishing: %s", _awaiting(task.get_coro()))
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


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
    """Run ingress, `workers` workers and the outbox sender until SIGINT/SIGTERM (or `stop`).

    The listening socket is bound first, so a port another process holds is found before
    the database is migrated or timers are rebuilt on a database that process may share.
    """
    problems = startup_problems(settings)
    if problems:
        raise StartupError("refusing to start:\n" + "\n".join(f"  - {p}" for p in problems))
    socks = bind(settings.host, settings.port)
    try:
        run_token = await asyncio.to_thread(settle_operator_token, settings)
        settings, generated_token = run_token.settings, run_token.token
        services = await asyncio.to_thread(open_services, settings, migrate=settings.auto_migrate)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    try:
        async with background(settings, services, workers) as work_crew:
            app = create_app(
                settings,
                inbox=services.inbox,
                on_stored=work_crew.wake_workers,
                scrubber=services.scrubber,
                runtime=services.runtime,
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                freeze_startup_objects()
                url = await _listen(runner, settings, socks)
                for warning in settings.warnings():
                    log.warning("%s", warning)
                print_login_link(url, generated_token)
                if settings.playground:
                    print(f"Playground: {playground_link(url, generated_token)}", flush=True)
                if on_listening:
                    on_listening(url)
                tasks = work_crew.start(stop)
                await stop.wait()
                log.info("stopping: finishing the deliveries and writes in hand")
                await finish(tasks)
            finally:
                await runner.cleanup()
    finally:
        for sock in socks:
            sock.close()  # already closed when the site ran; not when start-up failed before
        services.engine.dispose()


def freeze_startup_objects() -> None:
    """Leave what exists once the process is set up out of later garbage collections.

    Imports and start-up leave well over 100,000 objects that live as long as the
    process. Every collection of the oldest generation walks all of them again, which
    made about a quarter of ingress's CPU per delivery (bench/README.md). Frozen, they
    are never collected; what requests create is collected as before.
    """
    gc.collect()
    gc.freeze()


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets on host:port, one per address the name resolves to (as
    asyncio's own servers do), or StartupError saying why not (the port is taken, the
    address is not this machine's)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, OverflowError) as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from exc
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in found))
    socks: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            # As asyncio does: a restart may rebind while old connections linger, and an
            # IPv6 socket beside an IPv4 one must not claim the IPv4 port as well.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(addresses) > 1:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return socks


async def _listen(runner: web.AppRunner, settings: Settings, socks: list[socket.socket]) -> str:
    for sock in socks:
        await web.SockSite(runner, sock).start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    hooks = "/webhooks/github, /webhooks/gitlab" + (
        ", /webhooks/local" if settings.playground else ""
    )
    log.info("listening on %s (webhooks at %s)", url, hooks)
    return url


async def work(settings: Settings, *, workers: int = 1, stop: asyncio.Event | None = None) -> None:
    """Run workers and the outbox sender (no web server) until SIGINT/SIGTERM (or `stop`)."""
    services = await asyncio.to_thread(open_services, settings, migrate=settings.auto_migrate)
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    try:
        async with background(settings, services, max(workers, 1)) as work_crew:
            freeze_startup_objects()
            await finish(work_crew.start(stop))
    finally:
        services.engine.dispose()
