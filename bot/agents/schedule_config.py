"""`schedules:` in threadline.yml: agent turns started by the clock, checked at load.

```yaml
schedules:
  weekly-triage:
    cron: "0 9 * * mon"          # minute hour day month weekday; 6 fields: seconds first
    timezone: Europe/Paris        # IANA name; default UTC
    agent: triager
    message: Triage the issues opened this week.
    target:                       # exactly one of thread, issue, headless
      issue: {host: github, repo: octo-org/app, installationId: 42, title: "Weekly triage"}
    active_tools: [reply, task_completed]
    tool_choice: auto
    misfireGraceSeconds: 300      # an occurrence this late still fires; older ones do not
    enabled: true
```

A thread target names an existing conversation (`{host, repo, kind: issue|pull, number}`);
an issue target opens a new issue each time and the session lives there; `headless: true`
runs with no host thread (the transcript holds the answers). Only the server's file may
have schedules: a repository's file cannot start work on its own.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from bot.agents import yamlcheck as y
from bot.agents.base import ALL_TOOLS
from bot.agents.names import UNKNOWN_AGENT

SCHEDULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
SCHEDULE_KEYS = (
    "cron",
    "timezone",
    "agent",
    "message",
    "target",
    "active_tools",
    "tool_choice",
    "misfireGraceSeconds",
    "enabled",
)
TARGET_KINDS = ("thread", "issue", "headless")
HOSTS = ("github", "gitlab", "local")
DEFAULT_GRACE_SECONDS = 300.0

EXPECTED_SCHEDULES = "expected a mapping of schedule names to schedules, got {got}"
BAD_NAME = "schedule names are lowercase letters, digits, '.', '_' and '-'; got {got}"
BAD_CRON = "not a cron expression ({reason}); use 5 fields (minute hour day month weekday) or 6 (seconds first)"
BAD_ZONE = "unknown time zone {got}; use an IANA name such as UTC or Europe/Paris"
ONE_TARGET = "give exactly one of thread, issue or headless"
BAD_TOOL = "unknown tool {name!r}; tools are {known}"
BAD_CHOICE = "expected auto, any, none, or {{type: tool, name: <tool>}}; got {got}"
EXPECTED_SECONDS = "expected a positive number of seconds, got {got}"
BAD_KIND = "expected issue or pull, got {got}"
BAD_HOST = "expected one of {hosts}, got {got}"
NEEDS_INSTALLATION = "required for a GitHub target (the App installation of the repository)"


@dataclass(frozen=True)
class ScheduleTarget:
    kind: str  # thread | issue | headless
    host: str | None = None
    repo: str | None = None
    installation_id: int | None = None
    thread_kind: str = "issue"  # a thread target: issue | pull
    number: int | None = None
    title: str | None = None  # an issue target's title


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str
    timezone: str
    agent: str
    message: str
    target: ScheduleTarget
    active_tools: tuple[str, ...] | None = None
    tool_choice: Any = None  # as written (bot.sessions.agents.parse_tool_choice reads it)
    misfire_grace_seconds: float = DEFAULT_GRACE_SECONDS
    enabled: bool = True

    def trigger(self) -> CronTrigger:
        return cron_trigger(self.cron, zoneinfo.ZoneInfo(self.timezone))


def cron_trigger(expression: str, zone: tzinfo) -> CronTrigger:
    """APScheduler's cron trigger for 5 fields (as crontab) or 6 (seconds first);
    ValueError says what is wrong."""
    fields = expression.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expression, timezone=zone)
    if len(fields) == 6:
        second, minute, hour, day, month, weekday = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone=zone,
        )
    raise ValueError(f"{len(fields)} fields")


def schedules(
    report: y.Report, raw: object, path: y.KeyPath, agents: Sequence[str]
) -> tuple[ScheduleSpec, ...]:
    if raw is None:
        return ()
    found: list[ScheduleSpec] = []
    entries = y.named(
        report, raw, path, SCHEDULE_NAME, expected=EXPECTED_SCHEDULES, bad_name=BAD_NAME
    )
    for name, body, where in entries:
        spec = _schedule(report, name, body, where, agents)
        if spec is not None:
            found.append(spec)
    return tuple(found)


def _schedule(
    report: y.Report, name: str, raw: object, path: y.KeyPath, agents: Sequence[str]
) -> ScheduleSpec | None:
    before = len(report)
    found = y.mapping(report, raw, path, SCHEDULE_KEYS)
    for key in ("cron", "agent", "message", "target"):
        if key not in found and isinstance(raw, dict):
            report.add((*path, key), y.REQUIRED)
    zone_name = "UTC"
    if "timezone" in found:
        zone_name = y.text(report, found["timezone"], (*path, "timezone")) or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        report.add((*path, "timezone"), BAD_ZONE.format(got=y.shown(zone_name)))
        zone = zoneinfo.ZoneInfo("UTC")
    cron = y.text(report, found["cron"], (*path, "cron")) if "cron" in found else None
    if cron is not None:
        try:
            cron_trigger(cron, zone)
        except ValueError as exc:
            report.add((*path, "cron"), BAD_CRON.format(reason=exc))
    agent = y.text(report, found["agent"], (*path, "agent")) if "agent" in found else None
    if agent is not None and agent not in agents:
        report.add((*path, "agent"), UNKNOWN_AGENT.format(name=agent, known=y.choices(agents)))
    message = y.text(report, found["message"], (*path, "message")) if "message" in found else None
    target = _target(report, found.get("target"), (*path, "target")) if "target" in found else None
    tools = None
    if "active_tools" in found:
        tools = y.texts(report, found["active_tools"], (*path, "active_tools"))
        for number, tool in enumerate(tools or ()):
            if tool not in ALL_TOOLS:
                reason = BAD_TOOL.format(name=tool, known=y.choices(ALL_TOOLS))
                report.add((*path, "active_tools", number), y.unknown(tool, ALL_TOOLS, reason))
    choice = found.get("tool_choice")
    if "tool_choice" in found and not _choice_ok(choice):
        report.add((*path, "tool_choice"), BAD_CHOICE.format(got=y.shown(choice)))
    grace = DEFAULT_GRACE_SECONDS
    if "misfireGraceSeconds" in found:
        value = y.number(found["misfireGraceSeconds"])
        if value is None or value <= 0:
            got = y.shown(found["misfireGraceSeconds"])
            report.add((*path, "misfireGraceSeconds"), EXPECTED_SECONDS.format(got=got))
        else:
            grace = value
    enabled = True
    if "enabled" in found:
        enabled = bool(y.flag(report, found["enabled"], (*path, "enabled")))
    if len(report) > before or cron is None or agent is None or message is None:
        return None
    if target is None:
        return None
    return ScheduleSpec(
        name=name,
        cron=cron,
        timezone=zone_name,
        agent=agent,
        message=message,
        target=target,
        active_tools=tools,
        tool_choice=choice,
        misfire_grace_seconds=grace,
        enabled=enabled,
    )


def _choice_ok(raw: object) -> bool:
    if isinstance(raw, str):
        return raw in ("auto", "any", "none")
    if isinstance(raw, Mapping):
        kind, name = raw.get("type"), raw.get("name")
        if kind in ("auto", "any", "none"):
            return set(raw) == {"type"}
        return (
            kind == "tool" and isinstance(name, str) and bool(name) and set(raw) == {"type", "name"}
        )
    return False


_THREAD_KEYS = ("host", "repo", "installationId", "kind", "number")
_ISSUE_KEYS = ("host", "repo", "installationId", "title")


def _target(report: y.Report, raw: object, path: y.KeyPath) -> ScheduleTarget | None:
    found = y.mapping(report, raw, path, TARGET_KINDS)
    if len(found) != 1:
        report.add(path, ONE_TARGET)
        return None
    ((kind, body),) = found.items()
    where = (*path, kind)
    if kind == "headless":
        if body is not True:
            report.add(where, "expected true")
            return None
        return ScheduleTarget("headless")
    keys = _THREAD_KEYS if kind == "thread" else _ISSUE_KEYS
    fields = y.mapping(report, body, where, keys)
    before = len(report)
    host = y.text(report, fields.get("host"), (*where, "host"))
    if host is not None and host not in HOSTS:
        report.add((*where, "host"), BAD_HOST.format(hosts=y.choices(HOSTS), got=y.shown(host)))
    repo = y.text(report, fields.get("repo"), (*where, "repo"))
    installation = None
    if "installationId" in fields:
        installation = y.count(report, fields["installationId"], (*where, "installationId"))
    elif host == "github":
        report.add((*where, "installationId"), NEEDS_INSTALLATION)
    if kind == "thread":
        thread_kind = fields.get("kind", "issue")
        if thread_kind not in ("issue", "pull"):
            report.add((*where, "kind"), BAD_KIND.format(got=y.shown(thread_kind)))
        number = y.count(report, fields.get("number"), (*where, "number"))
        if len(report) > before:
            return None
        return ScheduleTarget("thread", host, repo, installation, str(thread_kind), number=number)
    title = y.text(report, fields.get("title"), (*where, "title"))
    if len(report) > before:
        return None
    return ScheduleTarget("issue", host, repo, installation, title=title)
