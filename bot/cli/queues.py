"""Commands on the queues: outbox writes, stored deliveries, and sending a signed test webhook."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.inbox import DeliveryRow, Inbox

if TYPE_CHECKING:
    from bot.server import Services
from bot.cli.common import (
    EXIT_FAILURE,
    _with_inbox,
    _with_services,
)


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
