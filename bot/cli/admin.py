"""Commands that run or check the server: serve, worker, db, config check, retention, doctor."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from bot.config import Settings, describe

if TYPE_CHECKING:
    from bot.server import Services
from bot.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    _with_services,
)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import serve

    asyncio.run(serve(settings, workers=args.workers))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import work

    asyncio.run(work(settings, workers=args.workers))
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import make_engine
    from bot.db.migrate import current_revision, upgrade

    engine = make_engine(settings.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine, args.revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"database already at {after}")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import make_engine
    from bot.db.migrate import current_revision, head_revision

    engine = make_engine(settings.database_url)
    try:
        current, head = current_revision(engine), head_revision(engine)
    finally:
        engine.dispose()
    print(f"current: {current or 'empty'}\nhead:    {head}")
    return 0 if current == head else EXIT_FAILURE


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    print(f"settings file: {settings.source_file or 'none'}")
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, shown, note in rows:
        print(f"  {name:<{width}}  {shown}{f'  ({note})' if note else ''}")
    print(f"GitHub: {'enabled' if settings.github_enabled else 'not configured'}")
    print(f"GitLab: {'enabled' if settings.gitlab_enabled else 'not configured'}")
    for warning in settings.warnings():
        print(f"warning: {warning}")
    from bot.preflight import startup_problems

    print(f"agents file: {settings.config or 'none (the built-in echo agent)'}")
    problems = startup_problems(settings)
    for problem in problems:
        print(f"error: {problem}")
    print(
        "ok: `threadline serve` can start"
        if not problems
        else "not ok: serve would refuse to start"
    )
    return EXIT_CONFIG if problems else 0


def cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.retention import Policy, Retention

    def use(services: Services) -> int:
        report = Retention(services.engine, Policy.from_settings(settings)).run(
            dry_run=args.dry_run
        )
        for line in report.summary():
            print(line)
        if report.freed_pages:
            print(f"the database file gave back {report.freed_pages} pages")
        return 0

    return _with_services(settings, use)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from bot import doctor

    findings = doctor.run(settings)
    for finding in findings:
        print(f"{finding.level:<4}  {finding.what}: {finding.detail}")
    failed = sum(f.level == "fail" for f in findings)
    print(f"{len(findings)} checks, {failed} failed")
    return EXIT_FAILURE if failed else 0
