"""Scheduled agent turns: `schedules:` fire by cron, each occurrence once across processes.

Every process with workers runs a `ScheduleRunner`. APScheduler's `CronTrigger` says when
each schedule's occurrences are; the database says who fires one: the process whose
INSERT of the (schedule, occurrence) row succeeds fires it, the others' inserts find the
row and do nothing. An occurrence is fired while it is at most `misfireGraceSeconds`
old; occurrences missed while no process ran coalesce into the latest one inside that
window, and older ones are skipped.

Firing goes through the session service like an API launch (`Trigger`, the repository's
configuration, the same capacity and transcript): into the target thread (a live session
there gets the message as operator input instead), into a new issue the host opens for
it, or headless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from bot.agents.schedule_config import ScheduleSpec
from bot.clock import utcnow, worker_name
from bot.db import insert_ignoring_conflicts
from bot.db.models import ScheduleFire
from bot.events import HEADLESS, ThreadRef
from bot.hosts.base import HostClient
from bot.loops import nap
from bot.runtime import Runtime
from bot.sessions.agents import narrowed, parse_tool_choice, session_options
from bot.sessions.service import Trigger

log = logging.getLogger(__name__)

FIRING, LAUNCHED, FED, FAILED = "firing", "launched", "fed", "failed"
HEADLESS_REPO = "headless"
MAX_NAP_SECONDS = 30.0
ISSUE_MARKER = "<!-- threadline:schedule {name} {due} -->"

# fire(schedule, occurrence) -> (status, session id): what `ScheduleRunner` calls
Fire = Callable[[ScheduleSpec, datetime], Awaitable[tuple[str, str]]]
HostClientFor = Callable[[str, int | None], HostClient]


class ScheduleError(Exception):
    """The occurrence cannot fire (its agent is gone, the host refused the issue)."""


@dataclass(frozen=True)
class LastRun:
    due_at: datetime
    fired_at: datetime
    status: str
    session_id: str | None
    detail: str | None
    runner: str


def occurrence(trigger: CronTrigger, now: datetime, grace: float) -> datetime | None:
    """The latest occurrence at or before `now` and no older than `grace` seconds."""
    found = None
    moment = trigger.get_next_fire_time(None, now - timedelta(seconds=grace))
    while moment is not None and moment <= now:
        found = moment
        moment = trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
    return None if found is None else found.astimezone(UTC)


def next_occurrence(spec: ScheduleSpec, now: datetime) -> datetime | None:
    moment = spec.trigger().get_next_fire_time(None, now + timedelta(microseconds=1))
    return None if moment is None else moment.astimezone(UTC)


class FireLog:
    """The schedule_fires rows: claiming an occurrence, settling it, the last runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, schedule: str, due_at: datetime, now: datetime, runner: str) -> int | None:
        """The new row's id if this process is the first to fire the occurrence."""
        insert = insert_ignoring_conflicts(self.engine)
        with Session(self.engine) as session, session.begin():
            return session.execute(
                insert(ScheduleFire)
                .values(
                    schedule=schedule, due_at=due_at, fired_at=now, runner=runner, status=FIRING
                )
                .on_conflict_do_nothing(index_elements=["schedule", "due_at"])
                .returning(ScheduleFire.id)
            ).scalar_one_or_none()

    def settle(self, fire_id: int, status: str, session_id: str | None, detail: str | None) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ScheduleFire)
                .where(ScheduleFire.id == fire_id)
                .values(status=status, session_id=session_id, detail=detail)
                .execution_options(synchronize_session=False)
            )

    def last(self) -> dict[str, LastRun]:
        """Each schedule's most recent fired occurrence."""
        with Session(self.engine) as session:
            rows = session.execute(select(ScheduleFire).order_by(ScheduleFire.due_at)).scalars()
            return {
                row.schedule: LastRun(
                    row.due_at, row.fired_at, row.status, row.session_id, row.detail, row.runner
                )
                for row in rows
            }

    def fires(self, schedule: str | None = None) -> list[LastRun]:
        query = select(ScheduleFire).order_by(ScheduleFire.due_at)
        if schedule is not None:
            query = query.where(ScheduleFire.schedule == schedule)
        with Session(self.engine) as session:
            return [
                LastRun(r.due_at, r.fired_at, r.status, r.session_id, r.detail, r.runner)
                for r in session.execute(query).scalars()
            ]


def overview(specs: Sequence[ScheduleSpec], fires: FireLog, now: datetime) -> list[dict[str, Any]]:
    """Each schedule with its last run and next occurrence (CLI and inspector)."""
    last = fires.last()
    shown = []
    for spec in specs:
        run = last.get(spec.name)
        upcoming = next_occurrence(spec, now) if spec.enabled else None
        shown.append(
            {
                "name": spec.name,
                "cron": spec.cron,
                "timezone": spec.timezone,
                "agent": spec.agent,
                "target": spec.target.kind,
                "enabled": spec.enabled,
                "next_run": upcoming.isoformat() if upcoming else None,
                "last_run": None
                if run is None
                else {
                    "due_at": run.due_at.isoformat(),
                    "status": run.status,
                    "session": run.session_id,
                    "detail": run.detail,
                },
            }
        )
    return shown


class ScheduleRunner:
    """Fires this process's share of the schedules' occurrences (see the module's doc)."""

    def __init__(
        self,
        engine: Engine,
        specs: Sequence[ScheduleSpec],
        fire: Fire,
        *,
        clock: Callable[[], datetime] = utcnow,
        name: str | None = None,
        max_nap: float = MAX_NAP_SECONDS,
    ) -> None:
        self.specs = [spec for spec in specs if spec.enabled]
        self.triggers = {spec.name: spec.trigger() for spec in self.specs}
        self.fires = FireLog(engine)
        self.fire = fire
        self.clock = clock
        self.name = name or "schedules-" + worker_name()
        self.max_nap = max_nap
        self.wakeup = asyncio.Event()
        self._tried: dict[str, datetime] = {}  # the last occurrence this process claimed

    async def tick(self) -> list[tuple[str, datetime, str]]:
        """Fire every occurrence that is due and that no process fired yet; what this
        process fired: (schedule, occurrence, status)."""
        now = self.clock()
        fired = []
        for spec in self.specs:
            due = occurrence(self.triggers[spec.name], now, spec.misfire_grace_seconds)
            if due is None or self._tried.get(spec.name) == due:
                continue
            self._tried[spec.name] = due
            fire_id = await asyncio.to_thread(self.fires.claim, spec.name, due, now, self.name)
            if fire_id is None:
                continue  # another process fired it
            try:
                status, session_id = await self.fire(spec, due)
                detail = None
            except Exception as exc:  # recorded and shown; the next occurrence still comes
                log.warning("schedule %s at %s failed: %s", spec.name, due.isoformat(), exc)
                status, session_id, detail = FAILED, None, f"{type(exc).__name__}: {exc}"
            await asyncio.to_thread(self.fires.settle, fire_id, status, session_id, detail)
            log.info(
                "schedule %s fired for %s: %s %s",
                spec.name,
                due.isoformat(),
                status,
                session_id or "",
            )
            fired.append((spec.name, due, status))
        return fired

    def seconds_to_next(self) -> float:
        now = self.clock()
        upcoming = [
            moment for spec in self.specs if (moment := next_occurrence(spec, now)) is not None
        ]
        if not upcoming:
            return self.max_nap
        wait = (min(upcoming) - now).total_seconds()
        return min(max(wait, 0.0), self.max_nap)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.specs:
            return
        log.info("schedules: %s", ", ".join(spec.name for spec in self.specs))
        while not stop.is_set():
            self.wakeup.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("schedule check failed")
            await nap(self.wakeup, stop, self.seconds_to_next() + 0.01)


class Launcher:
    """Fires one occurrence through the session service, as an API launch does."""

    def __init__(self, runtime: Runtime, host_client: HostClientFor) -> None:
        self.runtime = runtime
        self.host_client = host_client

    async def __call__(self, spec: ScheduleSpec, due: datetime) -> tuple[str, str]:
        target = spec.target
        installation = target.installation_id
        if target.kind == "headless":
            thread = ThreadRef(
                HEADLESS, HEADLESS_REPO, "issue", 0, f"{spec.name}@{due:%Y%m%dT%H%M%S}"
            )
            config = self.runtime.config
        else:
            assert target.host is not None
            assert target.repo is not None
            answer = await self.runtime.repo_config(target.host, installation, target.repo)
            config = answer.config
            thread = await self._thread(spec, due)
        try:
            agent = config.agent(spec.agent)
        except KeyError as exc:
            raise ScheduleError(f"no agent {spec.agent!r} is configured") from exc
        choice = None if spec.tool_choice is None else parse_tool_choice(spec.tool_choice)
        agent = narrowed(agent, spec.active_tools, choice)
        service = self.runtime.sessions
        who = f"schedule:{spec.name}"
        trigger = Trigger(
            client_request_id=f"{who}:{due.isoformat()}",
            thread=thread,
            installation_id=installation,
            login=who,
            task=spec.message,
            agent_id=agent.id,
            agent=agent,
            options=session_options(config.sessions),
            tool_choice=choice,
        )
        result = await service.launch(trigger)
        if result.created:
            return LAUNCHED, result.session.id
        live = await service.live_for(thread)
        if live is not None and await service.feed(
            live, kind="operator", author=who, body=spec.message
        ):
            return FED, live.id
        raise ScheduleError(f"{thread.key} has a session that took no input: {result.session.id}")

    async def _thread(self, spec: ScheduleSpec, due: datetime) -> ThreadRef:
        target = spec.target
        assert target.host is not None
        assert target.repo is not None
        if target.kind == "thread":
            assert target.number is not None
            return ThreadRef(target.host, target.repo, target.thread_kind, target.number)  # type: ignore[arg-type]
        title = (target.title or spec.name).replace("{date}", f"{due:%Y-%m-%d}")
        body = spec.message + "\n\n" + ISSUE_MARKER.format(name=spec.name, due=due.isoformat())
        client = self.host_client(target.host, target.installation_id)
        opened = await client.create_issue(target.repo, title=title, body=body)
        return ThreadRef(target.host, target.repo, "issue", opened.number)  # type: ignore[arg-type]
