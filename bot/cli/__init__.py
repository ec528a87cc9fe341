"""The `threadline` command: its argument parser and `main`; the commands live in the
modules beside this one (admin, queues, sessions), their shared helpers in `common`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from bot import __version__, log
from bot.cli import mcp, repos, schedules, tokens
from bot.cli.admin import (
    cmd_config_check,
    cmd_db_current,
    cmd_db_upgrade,
    cmd_doctor,
    cmd_retention_run,
    cmd_serve,
    cmd_worker,
)
from bot.cli.common import EXIT_CONFIG, EXIT_FAILURE, Command, _settings
from bot.cli.queues import (
    cmd_deliveries_list,
    cmd_deliveries_replay,
    cmd_deliveries_show,
    cmd_outbox_list,
    cmd_outbox_retry,
    cmd_webhook_send,
)
from bot.cli.sessions import (
    cmd_runs_list,
    cmd_runs_show,
    cmd_sessions_close,
    cmd_sessions_list,
    cmd_sessions_purge,
    cmd_sessions_restart,
    cmd_sessions_send,
    cmd_sessions_show,
    cmd_sessions_transcript,
)
from bot.config import ConfigError, port_number
from bot.db import describe_error
from bot.inbox import STATUSES
from bot.outbox import STATUSES as OUTBOX_STATUSES


def _port(text: str) -> int:
    """--port, checked as THREADLINE_PORT is."""
    try:
        return port_number(text, "--port")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--port ")) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


ENV_FILE_HELP = (
    "read settings from this KEY=VALUE file (default: ./threadline.env when present); "
    "environment variables win over it"
)


class _Parser(argparse.ArgumentParser):
    """Every (sub)command also takes --env-file, so it works before or after the command."""

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser sets it only when given there, so the value
        # given before the command is not overwritten with None.
        default = None if top else argparse.SUPPRESS
        self.add_argument("--env-file", metavar="PATH", default=default, help=ENV_FILE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        top=True,
        prog="threadline",
        description="Self-hosted chat-ops bot: AI agent sessions bound to GitHub and GitLab comment threads.",
        epilog="Settings come from THREADLINE_* environment variables and an optional env file; "
        "see `threadline config check`.",
    )
    parser.add_argument("--version", action="version", version=f"threadline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="receive webhooks and process them (web server and workers in one process)",
        description="Listen for GitHub and GitLab webhooks, store each delivery before answering, "
        "and process stored deliveries with in-process workers. Stops cleanly on SIGINT/SIGTERM.",
    )
    serve.add_argument("--host", help="listen address (default: THREADLINE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="listen port (default: THREADLINE_PORT, 3000)")
    serve.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="in-process workers (default 1; 0 = only receive, let `threadline worker` process)",
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not upgrade the schema at start; refuse to start if it is not current",
    )
    serve.add_argument(
        "--playground",
        action="store_true",
        help="serve the playground (/playground): a pull request in Threadline's own database "
        "to try sessions on, no host account needed (same as THREADLINE_PLAYGROUND=true)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="process stored deliveries without serving HTTP",
        description="Claim stored deliveries from the shared database and process them. "
        "Run several (on PostgreSQL, on several machines) to share the work.",
    )
    worker.add_argument(
        "--workers", type=_count, default=1, metavar="N", help="workers in this process (default 1)"
    )
    worker.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the schema at start"
    )
    worker.set_defaults(func=cmd_worker)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", metavar="ACTION", required=True
    )
    upgrade = db.add_parser("upgrade", help="bring the schema up to date (safe to run repeatedly)")
    upgrade.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    upgrade.set_defaults(func=cmd_db_upgrade)
    current = db.add_parser("current", help="show the schema revision; exit 1 if not up to date")
    current.set_defaults(func=cmd_db_current)

    config = commands.add_parser("config", help="settings").add_subparsers(
        dest="config_command", metavar="ACTION", required=True
    )
    check = config.add_parser(
        "check",
        help="print every setting (secrets hidden), check the agents file, and say whether "
        "serve can start (exit 2 if not)",
    )
    check.set_defaults(func=cmd_config_check)

    deliveries = commands.add_parser("deliveries", help="stored webhook deliveries").add_subparsers(
        dest="deliveries_command", metavar="ACTION", required=True
    )
    listing = deliveries.add_parser("list", help="newest deliveries first")
    listing.add_argument("--status", choices=STATUSES, help="only deliveries with this status")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_deliveries_list)
    show = deliveries.add_parser("show", help="one delivery with its headers and body")
    show.add_argument("id", help="Threadline's delivery number or the host's delivery id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_deliveries_show)
    replay = deliveries.add_parser(
        "replay", help="process a delivery again (failed, ignored or done ones alike)"
    )
    replay.add_argument("id", help="Threadline's delivery number or the host's delivery id")
    replay.set_defaults(func=cmd_deliveries_replay)

    webhook = commands.add_parser("webhook", help="webhook tools").add_subparsers(
        dest="webhook_command", metavar="ACTION", required=True
    )
    send = webhook.add_parser(
        "send",
        help="sign a JSON payload with this server's secret and POST it, as the host would",
        description="Send one delivery to a running Threadline (default: this server's "
        "THREADLINE_HOST:THREADLINE_PORT), signed with THREADLINE_GITHUB_WEBHOOK_SECRET or "
        "carrying THREADLINE_GITLAB_WEBHOOK_TOKEN. It takes the same path as a real one.",
    )
    send.add_argument(
        "target", metavar="HOST", choices=("github", "gitlab"), help="which host to impersonate"
    )
    send.add_argument("event", help="event name: e.g. issue_comment, or 'Note Hook' on GitLab")
    send.add_argument("payload", help="file holding the JSON payload")
    send.add_argument("--url", help="webhook URL (default: this server's /webhooks/HOST)")
    send.set_defaults(func=cmd_webhook_send)

    outbox = commands.add_parser("outbox", help="writes to the hosts").add_subparsers(
        dest="outbox_command", metavar="ACTION", required=True
    )
    olist = outbox.add_parser("list", help="newest writes first, with their status and errors")
    olist.add_argument("--status", choices=OUTBOX_STATUSES, help="only writes with this status")
    olist.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    olist.add_argument("--json", action="store_true", help="print JSON")
    olist.set_defaults(func=cmd_outbox_list)
    oretry = outbox.add_parser("retry", help="send a failed write again")
    oretry.add_argument("id", type=int, help="the write's number (from outbox list)")
    oretry.set_defaults(func=cmd_outbox_retry)

    sessions = commands.add_parser("sessions", help="agent sessions").add_subparsers(
        dest="sessions_command", metavar="ACTION", required=True
    )
    slist = sessions.add_parser("list", help="newest sessions first")
    slist.add_argument(
        "--state",
        choices=("live", "active", "busy", "idle", "awaiting_approval", "closed", "failed"),
        help="only sessions in this state (live: active, busy, idle or awaiting_approval)",
    )
    slist.add_argument(
        "--repo", help="only sessions in this repository (owner/name or group/project)"
    )
    slist.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    slist.add_argument("--json", action="store_true", help="print JSON")
    slist.set_defaults(func=cmd_sessions_list)
    sshow = sessions.add_parser("show", help="one session: state, deadlines, progress, inputs")
    sshow.add_argument("id", help="session id (s-...)")
    sshow.add_argument("--json", action="store_true", help="print JSON")
    sshow.set_defaults(func=cmd_sessions_show)
    stranscript = sessions.add_parser("transcript", help="every event of a session, in order")
    stranscript.add_argument("id", help="session id (s-...)")
    stranscript.add_argument("--format", choices=("markdown", "jsonl"), default="markdown")
    stranscript.set_defaults(func=cmd_sessions_transcript)
    ssend = sessions.add_parser("send", help="give a live session input as the operator")
    ssend.add_argument("id", help="session id (s-...)")
    ssend.add_argument("text", help="what to say")
    ssend.set_defaults(func=cmd_sessions_send)
    sclose = sessions.add_parser("close", help="close a live session (reason: operator)")
    sclose.add_argument("id", help="session id (s-...)")
    sclose.set_defaults(func=cmd_sessions_close)
    srestart = sessions.add_parser(
        "restart",
        help="restart a failed session from its last completed turn",
        description="A failed session goes live again: the failed turn's input is queued "
        "again and its messages and workspace changes are passed over; its time limits "
        "start afresh.",
    )
    srestart.add_argument("id", help="session id (s-...)")
    srestart.set_defaults(func=cmd_sessions_restart)
    spurge = sessions.add_parser(
        "purge", help="close a session and delete its transcript and inputs for good"
    )
    spurge.add_argument("id", help="session id (s-...)")
    spurge.add_argument("--yes", action="store_true", help="yes, delete them")
    spurge.set_defaults(func=cmd_sessions_purge)

    runs = commands.add_parser("runs", help="workflow runs (chains of agent sessions)")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    rlist = runs_sub.add_parser("list", help="newest workflow runs first")
    rlist.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    rlist.add_argument("--json", action="store_true", help="print JSON")
    rlist.set_defaults(func=cmd_runs_list)
    rshow = runs_sub.add_parser("show", help="one run: its steps, gates and change sets")
    rshow.add_argument("id", help="the run's session id (s-...)")
    rshow.add_argument("--json", action="store_true", help="print JSON")
    rshow.set_defaults(func=cmd_runs_show)

    retention = commands.add_parser("retention", help="remove old data").add_subparsers(
        dest="retention_command", metavar="ACTION", required=True
    )
    rrun = retention.add_parser(
        "run",
        help="remove what is past keeping now (serve and worker also do it once a day)",
        description="Clear settled deliveries' bodies, then remove their rows, sent writes and "
        "closed sessions' transcripts older than the THREADLINE_RETENTION_* settings, in "
        "small batches. Transcripts a session may still resume from are kept.",
    )
    rrun.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    rrun.set_defaults(func=cmd_retention_run)

    doctor = commands.add_parser(
        "doctor",
        help="check settings, database and host credentials against the real APIs",
        description="Reach the database and each configured host: the GitHub App and its "
        "installations (and whether each granted what app.yml asks), or the token; the "
        "GitLab token and its scopes. Exits 1 when a check fails.",
    )
    doctor.set_defaults(func=cmd_doctor)
    tokens.register(commands)  # tokens, audit (bot/cli/tokens.py)
    repos.register(commands)  # repos pause|resume|list (bot/cli/repos.py)
    mcp.register(commands)  # mcp: MCP over stdio (bot/cli/mcp.py)
    schedules.register(commands)  # schedules list (bot/cli/schedules.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot.server import StartupError

    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        # No command at all: the whole help, not argparse's one-line usage error. The exit
        # status stays argparse's 2 for a missing command, so a script still sees a failure.
        parser.print_help()
        return EXIT_CONFIG
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print("threadline: the settings are not usable:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    log.configure(settings.log_level, settings.log_format)
    func: Command = args.func
    try:
        return func(args, settings)
    except ConfigError as exc:
        print("threadline: the configuration is not usable:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except DBAPIError as exc:  # the commands that open the database themselves (db ...)
        detail = describe_error(settings.database_url, exc)
        print(f"threadline: cannot use the database: {detail}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`threadline deliveries show 1 | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
