"""`threadline schedules list`: the configured schedules with their last and next run.

Registered on the main parser by `register` (bot/cli/__init__.py calls it once).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.config import Settings


def cmd_schedules_list(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.common import _with_services
    from bot.clock import utcnow
    from bot.schedules import FireLog, overview
    from bot.server import Services

    def use(services: Services) -> int:
        shown = overview(services.runtime.config.schedules, FireLog(services.engine), utcnow())
        if args.json:
            print(json.dumps(shown, indent=2))
            return 0
        if not shown:
            print("no schedules (add `schedules:` to the agents file)")
        for item in shown:
            last = item["last_run"]
            ran = "never" if last is None else f"{last['due_at']} {last['status']}"
            if last is not None and last["session"]:
                ran += f" {last['session']}"
            nxt = item["next_run"] or ("disabled" if not item["enabled"] else "none")
            print(
                f"{item['name']}  {item['cron']} ({item['timezone']})  agent {item['agent']}  "
                f"target {item['target']}\n  last: {ran}\n  next: {nxt}"
            )
        return 0

    return _with_services(settings, use)


def register(commands: Any) -> None:
    """Add `schedules` to the main parser's subcommands."""
    schedules = commands.add_parser(
        "schedules", help="scheduled agent turns (`schedules:` in the agents file)"
    ).add_subparsers(dest="schedules_command", metavar="ACTION", required=True)
    listing = schedules.add_parser(
        "list", help="each schedule with its cron, agent, target, last and next run"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_schedules_list)
