"""`threadline repos`: pause and resume Threadline per repository; the day's spending."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.agents.models import usd
from bot.cli.common import EXIT_CONFIG, EXIT_FAILURE, _with_services
from bot.config import Settings
from bot.sessions.limits import BAD_NAME, parse_repo

if TYPE_CHECKING:
    from bot.server import Services
    from bot.sessions.limits import Holds


def _holds(services: Services) -> Holds:
    from bot.sessions.limits import Holds

    return Holds(services.engine, services.runtime.config.limits)


def cmd_repos_pause(args: argparse.Namespace, settings: Settings) -> int:
    named = parse_repo(args.repo)
    if named is None:
        print(BAD_NAME.format(name=args.repo), file=sys.stderr)
        return EXIT_CONFIG
    host, repo = named

    def use(services: Services) -> int:
        if _holds(services).pause(host, repo, "operator"):
            print(f"paused {args.repo}: its comments are recorded, nothing starts or runs")
        else:
            print(f"{args.repo} was paused already")
        return 0

    return _with_services(settings, use)


def cmd_repos_resume(args: argparse.Namespace, settings: Settings) -> int:
    named = parse_repo(args.repo)
    if named is None:
        print(BAD_NAME.format(name=args.repo), file=sys.stderr)
        return EXIT_CONFIG
    host, repo = named

    def use(services: Services) -> int:
        if not _holds(services).resume(host, repo):
            print(f"{args.repo} is not paused", file=sys.stderr)
            return EXIT_FAILURE
        print(f"resumed {args.repo}: its waiting sessions go on")
        return 0

    return _with_services(settings, use)


def cmd_repos_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(services: Services) -> int:
        holds = _holds(services)
        pauses, today, held = holds.pauses(), holds.today(), holds.held()
        limits = holds.limits
        if args.json:
            shown: dict[str, Any] = {
                "paused": [
                    {
                        "host": p.host,
                        "repo": p.repo,
                        "by": p.paused_by,
                        "at": p.paused_at.isoformat(),
                    }
                    for p in pauses
                ],
                "today": [
                    {
                        "host": u.host,
                        "repo": u.repo,
                        "tokens": u.tokens,
                        "cost_usd": usd(u.cost_micros),
                        "held": (h := held.for_repo(u.host, u.repo)) is not None
                        and h.kind != "paused",
                    }
                    for u in today
                ],
                "installation_held": held.everything is not None,
            }
            print(json.dumps(shown, indent=2))
            return 0
        if not pauses:
            print("no repository is paused")
        for p in pauses:
            where = "every host" if p.host == "*" else p.host
            print(f"paused  {p.repo} ({where})  by {p.paused_by} at {p.paused_at:%Y-%m-%d %H:%M}")
        total_tokens = sum(u.tokens for u in today)
        total_cost = sum(u.cost_micros for u in today)
        print(f"today (UTC): {total_tokens} tokens, US$ {usd(total_cost)} in all", end="")
        print(" (daily limit reached)" if held.everything is not None else "")
        for u in today:
            limit = limits.for_repo(u.repo)
            hold = held.for_repo(u.host, u.repo)
            over = (
                " (daily limit reached)" if hold is not None and hold.kind == "repository" else ""
            )
            most = "" if not limit.set else f" of {_limit_text(limit.tokens, limit.cost_micros)}"
            print(f"  {u.host}:{u.repo}  {u.tokens} tokens, US$ {usd(u.cost_micros)}{most}{over}")
        return 0

    return _with_services(settings, use)


def _limit_text(tokens: int | None, cost: int | None) -> str:
    parts = ([f"{tokens} tokens"] if tokens else []) + ([f"US$ {usd(cost)}"] if cost else [])
    return " / ".join(parts)


def register(commands: Any) -> None:
    """Add `repos` to the main parser's subcommands."""
    repos = commands.add_parser(
        "repos", help="pause or resume Threadline per repository; today's spending"
    ).add_subparsers(dest="repos_command", metavar="ACTION", required=True)
    what = "OWNER/REPO (on every host) or HOST:OWNER/REPO (github, gitlab or local)"
    pause = repos.add_parser(
        "pause",
        help="record the repository's comments but start nothing and run no turn",
        description="Pause Threadline in a repository: comments are still recorded; a "
        "mention gets one reply saying Threadline is paused, starts no session, and live "
        "sessions finish their turn and then wait until `repos resume`.",
    )
    pause.add_argument("repo", help=what)
    pause.set_defaults(func=cmd_repos_pause)
    resume = repos.add_parser("resume", help="lift a pause; waiting sessions go on")
    resume.add_argument("repo", help=what)
    resume.set_defaults(func=cmd_repos_resume)
    listing = repos.add_parser(
        "list", help="paused repositories, and each repository's spending today (UTC)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_repos_list)
