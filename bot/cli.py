"""The `threadline` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy.exc import DBAPIError

from bot import __version__, cli_api, log
from bot.config import ConfigError, Settings, describe, load_settings, port_number
from bot.db import describe_error
from bot.inbox import STATUSES, DeliveryRow, Inbox
from bot.outbox import STATUSES as OUTBOX_STATUSES

if TYPE_CHECKING:
    from bot.server import Services
    from bot.sessions.store import SessionInfo, SessionStore

EXIT_CONFIG = 2
EXIT_FAILURE = 1

Command = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(env_file=args.env_file)
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "no_migrate", False):
        overrides["auto_migrate"] = False
    if getattr(args, "playground", False):
        overrides["playground"] = True
    return dataclasses.replace(settings, **overrides) if overrides else settings


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


def _with_services(settings: Settings, use: Callable[[Services], int]) -> int:
    """Run `use` with the services; what it prints (transcripts, sessions, deliveries)
    passes the scrubber, so no configured secret reaches the terminal."""
    from bot.server import open_services

    services = open_services(settings, migrate=False)
    try:
        with contextlib.redirect_stdout(_Scrubbed(sys.stdout, services.scrubber.text)):
            return use(services)
    finally:
        services.engine.dispose()


class _Scrubbed(io.TextIOBase):
    """A text stream that writes to `out` with every configured secret replaced."""

    def __init__(self, out: TextIO, clean: Callable[[str], str]) -> None:
        self._out, self._clean = out, clean

    def write(self, text: str) -> int:
        self._out.write(self._clean(text))
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def fileno(self) -> int:
        return self._out.fileno()


def _with_inbox(settings: Settings, use: Callable[[Inbox], int]) -> int:
    return _with_services(settings, lambda services: use(services.inbox))


def cmd_outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(services: Services) -> int:
        rows = services.outbox.recent(status=args.status, limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in rows], indent=2))
            return 0
        if not rows:
            print("no writes" + (f" with status {args.status}" if args.status else ""))
            return 0
        for r in rows:
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            detail = (
                r.last_error if r.status in ("failed", "pending") else (r.result or {}).get("url")
            )
            print(
                f"{r.pk:>7}  {created}  {r.status:<10}  {r.kind:<12}  tries {r.attempts:<2}  "
                f"{r.thread.key}  {detail or ''}"
            )
        return 0

    return _with_services(settings, use)


def cmd_outbox_retry(args: argparse.Namespace, settings: Settings) -> int:
    def use(services: Services) -> int:
        if not services.outbox.retry(args.id):
            row = services.outbox.get(args.id)
            state = f"is {row.status}" if row else "does not exist"
            print(f"write {args.id} {state}; only failed writes can be retried", file=sys.stderr)
            return EXIT_FAILURE
        print(f"write {args.id} queued again; a running sender will send it")
        return 0

    return _with_services(settings, use)


def cmd_deliveries_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(inbox: Inbox) -> int:
        rows = inbox.list(status=args.status, limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in rows], indent=2))
            return 0
        if not rows:
            print("no deliveries" + (f" with status {args.status}" if args.status else ""))
            return 0
        for r in rows:
            received = r.received_at.strftime("%Y-%m-%d %H:%M:%S")
            what = f"{r.event}.{r.action}" if r.action else r.event
            detail = r.last_error if r.status == "failed" else r.note
            print(
                f"{r.pk:>7}  {received}  {r.host:<6}  {r.status:<10}  {what:<36}  "
                f"{r.delivery_id}  {detail or ''}"
            )
        return 0

    return _with_inbox(settings, use)


def _show(row: DeliveryRow, as_json: bool) -> None:
    body_text = row.body.decode("utf-8", errors="replace")
    if as_json:
        print(json.dumps({**row.summary(), "headers": row.headers, "body": body_text}, indent=2))
        return
    for key, value in row.summary().items():
        print(f"{key:>16}: {value if value is not None else '-'}")
    print("         headers:")
    for name, value in row.headers.items():
        print(f"                  {name}: {value}")
    print("            body:")
    try:
        print(json.dumps(json.loads(body_text), indent=2))
    except ValueError:
        print(body_text)


def cmd_deliveries_show(args: argparse.Namespace, settings: Settings) -> int:
    def use(inbox: Inbox) -> int:
        row = inbox.get(args.id)
        if row is None:
            print(f"no delivery {args.id}", file=sys.stderr)
            return EXIT_FAILURE
        _show(row, args.json)
        return 0

    return _with_inbox(settings, use)


def cmd_deliveries_replay(args: argparse.Namespace, settings: Settings) -> int:
    def use(inbox: Inbox) -> int:
        row = inbox.get(args.id)
        if row is None:
            print(f"no delivery {args.id}", file=sys.stderr)
            return EXIT_FAILURE
        if not inbox.replay(row.pk):
            print(
                f"delivery {row.pk} is being processed right now; try again later", file=sys.stderr
            )
            return EXIT_FAILURE
        print(
            f"delivery {row.pk} ({row.host} {row.delivery_id}) queued again; a running worker will process it"
        )
        return 0

    return _with_inbox(settings, use)


def cmd_webhook_send(args: argparse.Namespace, settings: Settings) -> int:
    from bot.send import SendError, delivery_headers, send

    try:
        with open(args.payload, "rb") as handle:
            body = handle.read()
        json.loads(body)
    except OSError as exc:
        print(f"cannot read {args.payload}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError:
        print(f"{args.payload} is not JSON", file=sys.stderr)
        return EXIT_FAILURE
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    url = args.url or f"http://{host}:{settings.port}/webhooks/{args.target}"
    try:
        headers = delivery_headers(settings, args.target, args.event, body)
        status, answer = asyncio.run(send(url, headers, body))
    except SendError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{status} {answer}")
    return 0 if 200 <= status < 300 else EXIT_FAILURE


def _with_sessions(settings: Settings, use: Callable[[SessionStore, Services], int]) -> int:
    from bot.sessions.store import SessionStore

    return _with_services(settings, lambda services: use(SessionStore(services.engine), services))


def cmd_sessions_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        rows = store.recent(state=args.state, repo=args.repo, limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in rows], indent=2))
            return 0
        if not rows:
            print("no sessions")
            return 0
        for r in rows:
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            state = r.state if r.live else f"{r.state}:{r.close_reason}"
            print(
                f"{r.id}  {created}  {state:<22}  {r.agent_id:<12}  turns {r.turns:<3}  {r.thread.key}"
            )
        return 0

    return _with_sessions(settings, use)


def _session_or_complain(store: SessionStore, session_id: str) -> SessionInfo | None:
    found = store.get(session_id)
    if found is None:
        print(f"no session {session_id}", file=sys.stderr)
    return found


def cmd_sessions_show(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        inputs = [i.__dict__ for i in store.inputs(found.id)]
        children = [
            {"id": c.id, "agent": c.agent_id, "state": c.state, "output": c.output}
            for c in store.children(found.id)
        ]
        if args.json:
            shown = {**found.summary(), "spec": found.spec, "inputs": inputs, "children": children}
            print(json.dumps(shown, indent=2))
            return 0
        for key, value in found.summary().items():
            print(f"{key:>17}: {value if value is not None else '-'}")
        print("           inputs:")
        for i in inputs:
            print(
                f"                   #{i['id']} {i['status']:<9} {i['kind']:<8} @{i['author']}: {i['body'][:80]}"
            )
        if children:
            print("      delegations:")
            for c in children:
                output = (c["output"] or "").replace("\n", " ")[:60]
                print(f"                   {c['id']} {c['agent']:<12} {c['state']:<7} {output}")
        _print_gates(services, found.id)
        return 0

    return _with_sessions(settings, use)


def _gate_rows(services: Services, session_id: str) -> tuple[list[Any], list[Any]]:
    from bot.sessions.approvals import ApprovalStore

    approvals = ApprovalStore(services.engine)
    return approvals.gates(session_id), approvals.change_sets(session_id)


def _print_gates(services: Services, session_id: str) -> None:
    gates, changes = _gate_rows(services, session_id)
    if gates:
        print("            gates:")
        for g in gates:
            who = f" by @{g.decided_by}" if g.decided_by else ""
            sha = f" on {g.decided_sha[:12]}" if g.decided_sha else ""
            print(f"                   #{g.id} {g.status:<17}{who}{sha}  {g.subject}")
    if changes:
        print("      change sets:")
        for c in changes:
            where = c.pull_url or c.branch or c.error or ""
            print(f"                   #{c.id} {c.status:<9} {c.title}  {where}")


def _workflow_ids(services: Services) -> list[str]:
    from bot.agents.chain import CHAIN_ENGINE

    config = services.runtime.config
    return [a.id for a in config.agents.values() if a.engine == CHAIN_ENGINE]


def cmd_runs_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        runs = store.recent(agents=_workflow_ids(services), limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in runs], indent=2))
            return 0
        if not runs:
            print("no workflow runs")
            return 0
        for r in runs:
            steps = store.children(r.id)
            state = r.state if r.live else f"{r.state}:{r.close_reason}"
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{r.id}  {created}  {state:<22}  {r.agent_id:<12}  "
                f"{len(steps)} step session(s)  {r.thread.key}"
            )
        return 0

    return _with_sessions(settings, use)


def cmd_runs_show(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        run = _session_or_complain(store, args.id)
        if run is None:
            return EXIT_FAILURE
        steps = store.children(run.id)
        gates, changes = _gate_rows(services, run.id)
        if args.json:
            shown = {
                **run.summary(),
                "steps": [s.summary() for s in steps],
                "gates": [g.__dict__ for g in gates],
                "change_sets": [c.__dict__ for c in changes],
            }
            print(json.dumps(shown, indent=2, default=str))
            return 0
        state = run.state if run.live else f"{run.state} ({run.close_reason})"
        print(f"run {run.id} of {run.agent_id} in {run.thread.key}: {state}")
        print(f"task: {run.task}")
        for number, step in enumerate(steps, 1):
            output = (step.output or "").replace("\n", " ")[:70]
            print(f"  {number}. {step.id} {step.agent_id:<12} {step.state:<7} {output}")
        _print_gates(services, run.id)
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_transcript(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        events = store.transcript(found.id)
        if args.format == "jsonl":
            for e in events:
                print(
                    json.dumps({"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "data": e.data})
                )
            return 0
        print(f"# Session {found.id} · {found.agent_id} · {found.thread.key}\n")
        for e in events:
            detail = ", ".join(f"{k}={json.dumps(v)}" for k, v in e.data.items())
            print(f"- `{e.at.strftime('%H:%M:%S.%f')[:-3]}` **{e.kind}** {detail}")
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_send(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        if store.add_input(found.id, kind="operator", author="operator", body=args.text) is None:
            print(f"session {found.id} is {found.state}: it takes no input", file=sys.stderr)
            return EXIT_FAILURE
        print(f"queued for session {found.id}; its next turn will read it")
        return 0

    return _with_sessions(settings, use)


def _closed_status(services: Services, closed: SessionInfo, public_url: str | None) -> None:
    from bot import outbox as ob
    from bot.clock import utcnow
    from bot.sessions import status
    from bot.sessions.store import SessionStore

    store = SessionStore(services.engine)
    seq, fresh = store.status_snapshot(closed.id)
    body = status.render(fresh, utcnow(), public_url=public_url)
    services.outbox.enqueue(
        ob.upsert(status.status_key(closed.id), seq, closed.thread, body, closed.installation_id)
    )


def cmd_sessions_close(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        closed = store.close(found.id, "operator", by="operator")
        if closed is None:
            print(f"session {found.id} is already {found.state}", file=sys.stderr)
            return EXIT_FAILURE
        _closed_status(services, closed, settings.public_url)
        print(f"session {found.id} closed")
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_purge(args: argparse.Namespace, settings: Settings) -> int:
    if not args.yes:
        print(
            "purge deletes the session's transcript for good; add --yes to do it", file=sys.stderr
        )
        return EXIT_FAILURE

    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        store.purge(found.id)
        purged = store.get(found.id)
        if found.live and purged is not None:
            _closed_status(services, purged, settings.public_url)
        print(f"session {found.id} purged: transcript and inputs deleted")
        return 0

    return _with_sessions(settings, use)


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
    cli_api.register(commands)  # tokens, audit (bot/cli_api.py)
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


if __name__ == "__main__":
    sys.exit(main())
